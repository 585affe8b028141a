"""``edgevit-verify`` as a CI gate (issue #18, part 1): the bars come from the acceptance policy, never from the
artifact; unreadable files are bad input; export and re-verification agree.

Artifacts: EdgeViT-XXS at 64 px (seeded random weights), ONNX fp32 and int8-dynamic, exported once per module.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgevit_deploy
from edgevit_deploy.cli.verify_cmd import main as verify_main
from edgevit_deploy.converters.base import ExportOptions, QuantMode

MODEL, SIZE = "edgevit_xxs", 64


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("verify-cli")
    fp32 = edgevit_deploy.export(MODEL, "onnx", out / "fp32", img_size=SIZE)
    dyn = edgevit_deploy.export(MODEL, "onnx", out / "dyn", img_size=SIZE, calib_size=4,
                                options=ExportOptions(quantize=QuantMode.INT8_DYNAMIC))
    return {"fp32": fp32.artifacts[0], "int8-dynamic": dyn.artifacts[0], "dir": out}


def verify(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(verify_main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _mutated(src: Path, dst: Path, negate_largest_matmul: bool = False, **meta: str) -> Path:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    if negate_largest_matmul:
        inits = {i.name: i for i in proto.graph.initializer}
        weights = [inits[n.input[1]] for n in proto.graph.node
                   if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits]
        big = max(weights, key=lambda i: numpy_helper.to_array(i).size)
        big.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(big), big.name))
    for p in proto.metadata_props:
        key = p.key.removeprefix("edgevit_deploy.")
        if key in meta:
            p.value = meta[key]
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("variant", ["fp32", "int8-dynamic"])
def test_export_and_verify_give_the_same_verdict_and_numbers(exports, variant):
    art = exports[variant]
    code, out, err = verify(art.path, "--model", MODEL, "--json")
    p = json.loads(out)["artifacts"][0]["parity"]
    assert art.parity.executed and p["executed"]
    assert p["passed"] == art.parity.passed and code == (0 if art.parity.passed else 1), err
    assert p["variant"] == variant and p["thresholds"] == art.parity.thresholds
    assert p["num_inputs"] == art.parity.num_inputs   # the same batch (held-out views for a quantized variant)
    assert p["sqnr_db"] == pytest.approx(art.parity.sqnr_db, rel=1e-6)
    assert p["cosine"] == pytest.approx(art.parity.cosine, rel=1e-9)


def test_metadata_cannot_relax_the_bar(exports, tmp_path):
    """Negating the largest MatMul weight fails as fp32; relabelled int8 in its metadata it must still fail,
    and the report must say why. Today the relabelled file passes with exit 0."""
    src = exports["fp32"].path
    broken = _mutated(src, tmp_path / "negated.onnx", negate_largest_matmul=True)
    code, out, _ = verify(broken, "--model", MODEL, "--json")
    assert code == 1 and json.loads(out)["artifacts"][0]["parity"]["passed"] is False
    relabelled = _mutated(src, tmp_path / "negated-int8.onnx", negate_largest_matmul=True, precision="int8")
    code, out, _ = verify(relabelled, "--model", MODEL)
    assert code == 1, out
    assert "claims int8" in out and "no quantize ops" in out
    # the override accepts the claim, but says so
    code, out, _ = verify(relabelled, "--model", MODEL, "--allow-metadata-mismatch", "--json")
    p = json.loads(out)["artifacts"][0]["parity"]
    assert p["metadata_mismatch"] and p["variant"] == "int8"


def test_the_command_line_precision_cannot_claim_looser_than_the_contents(exports):
    code, out, _ = verify(exports["fp32"].path, "--model", MODEL, "--precision", "int8")
    assert code == 1 and "--precision claims int8" in out
    # stricter than the contents is allowed: an int8-dynamic artifact judged by w8's bars
    code, out, _ = verify(exports["int8-dynamic"].path, "--model", MODEL, "--precision", "w8", "--json")
    p = json.loads(out)["artifacts"][0]["parity"]
    assert p["variant"] == "w8" and not p["metadata_mismatch"]


@pytest.mark.parametrize("precision", ["bogus", "int4", "FP64"])
def test_unknown_precision_is_bad_input(exports, precision):
    code, out, err = verify(exports["fp32"].path, "--model", MODEL, "--precision", precision)
    assert code == 2 and "not a known precision" in err and "int8-dynamic" in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("field,value,word", [("model", "edgevit_s", "names model 'edgevit_s'"),
                                              ("checkpoint_sha256", "ab" * 32, "checkpoint sha256 abab")])
def test_metadata_naming_another_model_or_checkpoint_fails(exports, tmp_path, field, value, word):
    art = _mutated(exports["fp32"].path, tmp_path / "other.onnx", **{field: value})
    code, out, _ = verify(art, "--model", MODEL)
    assert code == 1 and word in out and "--allow-metadata-mismatch" in out
    code, out, _ = verify(art, "--model", MODEL, "--allow-metadata-mismatch")
    assert code == 0 and "metadata mismatch accepted" in out


def test_own_bars_tighten_and_a_looser_one_is_never_silent(exports):
    path = exports["fp32"].path
    code, out, _ = verify(path, "--model", MODEL, "--min-sqnr", "500", "--json")
    p = json.loads(out)["artifacts"][0]["parity"]
    assert code == 1 and any("SQNR" in f for f in p["failures"]) and p["loosened"] == []
    code, out, _ = verify(path, "--model", MODEL, "--max-abs", "0.5")
    assert code == 0 and "--max-abs 0.5 is looser than the fp32 policy's 0.0001" in out
    code, out, _ = verify(path, "--model", MODEL, "--max-abs", "0.5", "--json")
    assert json.loads(out)["artifacts"][0]["parity"]["loosened"]
    code, _, err = verify(path, "--model", MODEL, "--min-top1", "90")
    assert code == 2 and "--min-top1" in err


def _garbage(kind: str, src: Path, d: Path) -> Path:
    data = src.read_bytes()
    if kind == "truncated.onnx":
        (d / kind).write_bytes(data[: len(data) // 3])
    elif kind == "random.onnx":
        import numpy as np

        (d / kind).write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    elif kind == "text.onnx":
        (d / kind).write_text("this is not a model\n")
    elif kind == "truncated.tflite":
        (d / kind).write_bytes(b"\x1c\x00\x00\x00TFL3" + data[8:4096])
    elif kind == "empty.tflite":
        (d / kind).write_bytes(b"")
    elif kind == "empty.mlpackage":
        (d / kind).mkdir()
    return d / kind   # "missing.onnx", "missing.mlpackage": never written


GARBAGE = ["truncated.onnx", "random.onnx", "text.onnx", "truncated.tflite", "empty.tflite", "empty.mlpackage",
           "missing.onnx", "missing.mlpackage"]


@pytest.mark.parametrize("kind", GARBAGE)
def test_an_unreadable_artifact_is_one_line_exit_2(exports, tmp_path, kind):
    path = _garbage(kind, exports["fp32"].path, tmp_path)
    code, out, err = verify(path, "--model", MODEL)
    assert code == 2, out + err
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and kind in lines[0], err
