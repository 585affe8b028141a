"""Adding a target is adding one row of the table (and its modules): a dummy target registered in a fixture is a
choice of ``edgevit-export --target``, validated by the table, exported and checked for parity, timed by the host
bench, and a column of the support matrix; nothing else in the package names it."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgevit_deploy.converters.base import ExportOptions, Precision, QuantMode, Target, Variant
from edgevit_deploy.converters.table import (
    TARGETS,
    TargetSpec,
    get_spec,
    register_target,
    target_names,
    unregister_target,
)
from edgevit_deploy.errors import UnsupportedOptionError, first_line
from edgevit_deploy.verify.contents import ArtifactContents

MODULE = "edgevit_deploy_dummy_target"  # the dummy's modules, put in sys.modules by the fixture


class DummyConverter:
    """A TorchScript file with its metadata in a JSON sidecar."""

    def convert(self, model, example, out_path, options, metadata):
        with torch.no_grad():
            torch.jit.trace(model.eval(), example).save(str(out_path))
        Path(f"{out_path}.json").write_text(json.dumps(metadata.as_strings()))
        return Path(out_path)

    def read_metadata(self, path):
        return json.loads(Path(f"{path}.json").read_text())


class _Session:
    def __init__(self, path: Path, threads: int):
        torch.set_num_threads(threads)
        self.module = torch.jit.load(str(path))
        self.executor = "dummy-torchscript"

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


class DummyRuntime:
    name = "dummy"
    loads: ClassVar[list[dict[str, str]]] = []

    def unavailable_reason(self):
        return None

    def load(self, path, threads=1, **options):
        DummyRuntime.loads.append(dict(options))
        return _Session(Path(path), threads)

    def inspect(self, path):
        return ArtifactContents(frozenset({Variant.FP32}), "a TorchScript program")


DUMMY = TargetSpec(
    target="dummy",
    suffix=".dummy",
    runtime="TorchScript (dummy)",
    extra="test",
    converter=f"{MODULE}:DummyConverter",
    host_runtime=f"{MODULE}:DummyRuntime",
    precisions=(Precision.FP32,),
    quant_modes=(),
    quantizer=MODULE,
    formulation="dummy",
    supports_nhwc=False,
    supports_image_input=False,
    supports_dynamic_batch=False,
    verified_where="executed by torch.jit on every OS",
)


@pytest.fixture
def dummy_target(monkeypatch):
    module = types.ModuleType(MODULE)
    module.DummyConverter = DummyConverter
    module.DummyRuntime = DummyRuntime
    monkeypatch.setitem(sys.modules, MODULE, module)
    DummyRuntime.loads.clear()
    register_target(DUMMY)
    yield DUMMY
    unregister_target("dummy")


def test_the_fixture_adds_one_row_and_takes_it_away(dummy_target):
    assert get_spec("dummy") is DUMMY and target_names()[-1] == "dummy"
    assert str(DUMMY.target) == "dummy" and DUMMY.variants == (Variant.FP32,)
    unregister_target("dummy")
    assert "dummy" not in TARGETS and target_names() == [t.value for t in Target]
    register_target(DUMMY)  # for the fixture's own teardown


def test_the_table_refuses_a_second_row_of_a_name_and_keeps_its_own_rows(dummy_target):
    with pytest.raises(ValueError, match="already"):
        register_target(DUMMY)
    with pytest.raises(ValueError, match="package's own"):
        unregister_target("onnx")


def test_cli_takes_the_registered_target_and_validates_it_by_its_row(dummy_target, tmp_path):
    from edgevit_deploy.cli.export_cmd import main

    bad = CliRunner().invoke(main, ["-m", "edgevit_xxs", "-t", "bogus", "-o", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "dummy" in bad.output  # listed among the choices
    for flags, problem in ((["--nhwc"], "--nhwc"), (["--quantize", "int8"], "--quantize int8 (has: none)")):
        r = CliRunner().invoke(main, ["-m", "edgevit_xxs", "-t", "dummy", *flags, "-o", str(tmp_path / "b")])
        assert r.exit_code == 2 and "target dummy does not support" in r.output and problem in r.output
        assert "Traceback" not in r.output and not (tmp_path / "b").exists()  # rejected before --out is made


def test_export_converts_and_verifies_the_registered_target(dummy_target, tmp_path):
    from edgevit_deploy.cli.export_cmd import main

    r = CliRunner().invoke(main, ["-m", "edgevit_xxs", "-t", "dummy", "--img-size", "64", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (row,) = json.loads((tmp_path / "report.json").read_text())["artifacts"]
    assert row["target"] == "dummy" and row["file"] == "edgevit_xxs-fp32.dummy" and row["precision"] == "fp32"
    assert row["parity"]["executed"] and row["parity"]["passed"]
    assert row["parity"]["executor"] == "dummy-torchscript" and row["parity"]["max_abs"] < 1e-4
    assert row["formulation"].get("drop_path_off", 0) >= 0  # the rewrites meant for every target apply
    assert DummyRuntime.loads == [{}]  # one executor: no --coreml-executor option passed to its runtime

    from edgevit_deploy.verify.artifact import verify_artifact

    checked = verify_artifact(tmp_path / "edgevit_xxs-fp32.dummy", "edgevit_xxs")  # the target from its suffix
    assert checked.target == "dummy" and checked.parity.passed


def test_host_bench_times_the_registered_target(dummy_target, tmp_path):
    from edgevit_deploy.device_bench.host_worker import measure
    from edgevit_deploy.device_bench.sweep_config import known_targets

    assert "dummy" in known_targets()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    path = tmp_path / "m.dummy"
    torch.jit.trace(model.eval(), torch.zeros(1, 3, 16, 16)).save(str(path))
    result = measure("dummy", path, (1, 3, 16, 16), threads=1, warmup=1, iterations=3)
    assert result["ok"] and result["executor"] == "dummy-torchscript" and len(result["latencies_ms"]) == 3
    assert DummyRuntime.loads == [{}]  # no bench executor in its row: the runtime's own


def test_core_ml_executor_options_come_from_its_row():
    coreml = get_spec("coreml")
    assert coreml.runtime_options("reference") == {"executor": "reference"}
    assert coreml.bench_options() == {"executor": "native"}
    for name in ("onnx", "tflite", "executorch"):
        assert get_spec(name).runtime_options("reference") == {} and get_spec(name).bench_options() == {}


def test_the_matrix_has_a_column_for_the_registered_target_and_runs_its_cell(dummy_target, tmp_path):
    from edgevit_deploy import matrix
    from edgevit_deploy.models import get_model_config

    args = matrix.parse_args(["--targets", "dummy", "--precisions", "fp32"])
    assert args.targets == ["dummy"]
    cell = matrix.run_cell(matrix.Cell("edgevit_xxs", "dummy", "fp32", 64), tmp_path)
    assert cell.status == "passed" and cell.executor == "dummy-torchscript", cell.reason
    payload = {"generated_at": "2026-01-01T00:00:00+00:00", "commands": ["x"], "environment": {},
               "cells": [json.loads(json.dumps(matrix.asdict(cell)))]}
    text = matrix.render_markdown(payload, get_model_config)
    assert "| dummy fp32 | dummy int8 |" in text and "| edgevit_xxs | edgevit | 64 |" in text
    int8 = matrix.run_cell(matrix.Cell("edgevit_xxs", "dummy", "int8", 64), tmp_path)
    assert int8.status == "export-failed" and "--quantize int8 (has: none)" in int8.reason


def test_without_the_row_the_target_is_unknown():
    with pytest.raises(UnsupportedOptionError, match="unknown target 'dummy'"):
        get_spec("dummy")


# ------------------------------------------------------------------------------ the other table facts
@pytest.mark.parametrize("target, flag", [("tflite", "nhwc"), ("coreml", "image_input")])
def test_a_layout_option_with_quantize_is_refused_by_the_table(target, flag):
    with pytest.raises(UnsupportedOptionError, match="with --quantize"):
        get_spec(target).validate(ExportOptions(quantize=QuantMode.INT8, **{flag: True}))
    get_spec(target).validate(ExportOptions(**{flag: True}))  # alone it is the target's option


def test_variant_is_one_parser_for_precisions_and_modes():
    assert {str(v) for v in Variant} == {p.value for p in Precision} | {q.value for q in QuantMode}
    for v in Variant:
        options = ExportOptions.for_variant(v)
        assert options.artifact_variant() is v and Variant.parse(str(v).upper()) is v
    with pytest.raises(UnsupportedOptionError, match="is not a known precision"):
        Variant.parse("int4")


@pytest.mark.parametrize("model", ["path/to/m.py:factory", "../../escape", "timm:vit_tiny_patch16_224"])
def test_artifact_names_never_leave_the_output_folder(model):
    for spec in TARGETS.values():
        for options in (ExportOptions(precision=spec.default_precision), ExportOptions(quantize=QuantMode.INT8)):
            name = spec.artifact_name(model, options)
            assert "/" not in name and not name.startswith(".") and name.endswith(spec.suffix)


def test_first_line_is_the_one_way_to_quote_an_exception():
    assert first_line(RuntimeError("\n  first\nsecond")) == "first"
    assert first_line(RuntimeError()) == "RuntimeError()"
    assert first_line(ValueError(""), "ValueError") == "ValueError"


def test_a_quantized_export_of_a_file_model_stays_in_out(tmp_path):
    """The quantization path names its files with the one naming function: ``path/to/m.py:factory`` used to
    become ``OUT/path/to/m.py:factory-int8.onnx``, outside --out."""
    from edgevit_deploy.export_api import export

    src = tmp_path / "src" / "sub"
    src.mkdir(parents=True)
    (src / "m.py").write_text(
        "import torch\n"
        "def factory(**kw):\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),\n"
        "                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))\n"
    )
    out = tmp_path / "out"
    name = f"{src / 'm.py'}:factory"
    result = export(name, "onnx", out, options=ExportOptions(quantize=QuantMode.INT8_DYNAMIC), img_size=32,
                    calib_size=4)
    (art,) = result.artifacts
    assert art.error is None and art.path is not None and art.path.parent == out, art.error
    assert art.precision is Variant.INT8_DYNAMIC and art.file == "m.py_factory-int8-dynamic.onnx"
    written = {p.name for p in out.iterdir()}
    assert {"m.py_factory-int8-dynamic.onnx", "m.py_factory-fp32.onnx", "report.json"} <= written
    assert not list((tmp_path / "src").rglob("*.onnx")) and not (out / str(src)[1:]).exists()
