"""Small artifact files for the tests of given artifacts (imported by tests/device_bench/test_bench_artifacts.py
and tests/cli/test_errors_bench_doc.py): a one-node ONNX graph (Identity on a 1x3xNxN float input) with or
without the toolkit's metadata, and an edgevit-export style report.json describing files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgevit_deploy.device_bench.artifacts import sha256_of


def toolkit_metadata(model: str = "edgevit_xxs", precision: str = "fp32", img: int = 64) -> dict[str, str]:
    """What edgevit-export stamps into an artifact (``ArtifactMetadata.as_strings``)."""
    from edgevit_deploy.converters.base import ArtifactMetadata

    return ArtifactMetadata(
        model=model,
        input_shape=(1, 3, img, img),
        layout="NCHW",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        toolkit_version="test",
        checkpoint_sha256="random-init",
        precision=precision,
        num_classes=3 * img * img,
    ).as_strings()


def tiny_onnx(path: Path, img: int = 64, metadata: dict[str, str] | None = None, doc: str = "") -> Path:
    """A valid ONNX model that onnxruntime runs in microseconds; ``doc`` changes the bytes, not the graph."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, img, img])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, img, img])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string=doc)
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def parity(passed: bool = True, max_abs: float = 1.2e-6) -> dict[str, Any]:
    """A ParityReport.to_dict() as edgevit-export writes it (fp32 bars)."""
    return {
        "executed": True,
        "passed": passed,
        "executor": "onnxruntime test",
        "reason": None,
        "max_abs": max_abs,
        "mean_abs": max_abs / 4,
        "cosine": 1.0 if passed else 0.9,
        "sqnr_db": 120.0 if passed else 9.0,
        "top1_agreement": 1.0,
        "top5_agreement": 1.0,
        "num_inputs": 4,
        "failures": [] if passed else [f"max_abs {max_abs} > 1e-4"],
        "thresholds": {"max_abs": 1e-4, "cosine": 0.9999, "top1_agreement": 1.0, "sqnr_db": None},
        "variant": "fp32",
        "loosened": [],
        "metadata_mismatch": [],
    }


def write_report(folder: Path, files: dict[str, dict[str, Any]], model: str = "edgevit_xxs", img: int = 64) -> Path:
    """``folder/report.json`` with one row per file name: ``files[name]`` holds the row's overrides (e.g.
    ``{"parity": parity(False)}``, ``{"sha256": "0" * 64}``); the sha256 is the file's unless overridden."""
    rows = []
    for name, extra in files.items():
        path = folder / name
        rows.append(
            {
                "target": "onnx",
                "path": str(path),
                "precision": "fp32",
                "size_bytes": path.stat().st_size,
                "export_s": 0.1,
                "parity": parity(),
                "error": None,
                "file": name,
                "variant": "fp32",
                "sha256": sha256_of(path),
                **extra,
            }
        )
    report = folder / "report.json"
    report.write_text(
        json.dumps(
            {
                "model": model,
                "toolkit_version": "test",
                "checkpoint_sha256": "random-init",
                "input_size": [3, img, img],
                "artifacts": rows,
            },
            indent=1,
        )
    )
    return report


def tiny_mlpackage(path: Path, img: int = 64, metadata: dict[str, str] | None = None) -> Path:
    """A one-op ML Program (relu on a 1x3xNxN float input) saved as an .mlpackage, with ``metadata`` in its
    user_defined metadata (where edgevit-export writes the toolkit's); built without compiling or loading it."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, img, img))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.relu(x=x, name="y")

    model = ct.convert(
        prog,
        convert_to="mlprogram",
        pass_pipeline=ct.PassPipeline.EMPTY,
        minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT32,
        skip_model_load=True,
    )
    model.user_defined_metadata.update(metadata or {})
    model.save(str(path))
    return Path(path)
