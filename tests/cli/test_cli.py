"""The CLI end to end, in subprocesses, as a user (or a user's CI) runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "out"
    r = run(BIN / "edgevit-export", "--model", "edgevit_xxs", "--target", "onnx", "--img-size", "64", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pass" in r.stdout and "onnx" in r.stdout
    return out


def test_export_writes_artifact_and_report(exported):
    report = json.loads((exported / "report.json").read_text())
    art = report["artifacts"][0]
    assert art["target"] == "onnx" and Path(art["path"]).is_file()
    assert art["parity"]["passed"] and art["parity"]["executed"]


def test_verify_existing_artifact_json(exported):
    onnx_file = next(exported.glob("*.onnx"))
    r = run(BIN / "edgevit-verify", onnx_file, "--model", "edgevit_xxs", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["artifacts"][0]["parity"]["passed"] is True
    assert data["artifacts"][0]["parity"]["max_abs"] < 1e-4


def test_verify_fails_with_exit_code_on_wrong_model(exported):
    """The same artifact checked against a different checkpoint (other weights) must fail, exit 1."""
    import torch

    from edgevit_deploy.models import create_model

    state = create_model("edgevit_xxs", img_size=64).state_dict()
    g = torch.Generator().manual_seed(123)
    state["head.weight"] = state["head.weight"] + 0.05 * torch.randn(state["head.weight"].shape, generator=g)
    ck = exported / "other.pth"
    torch.save(state, ck)
    onnx_file = next(exported.glob("*.onnx"))
    r = run(BIN / "edgevit-verify", onnx_file, "--model", "edgevit_xxs", "--checkpoint", ck)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout and "max abs error" in r.stdout


def test_unknown_model_suggests_names(tmp_path):
    r = run(BIN / "edgevit-export", "--model", "edgevit_xss", "--target", "onnx", "--out", tmp_path)
    assert r.returncode == 2
    assert "Unknown model 'edgevit_xss'" in r.stderr and "edgevit_xs" in r.stderr


def test_bad_img_size(tmp_path):
    r = run(BIN / "edgevit-export", "-m", "edgevit_xxs", "-t", "onnx", "--img-size", "100", "--out", tmp_path)
    assert r.returncode == 2 and "not a multiple of 32" in r.stderr


def test_bad_checkpoint_lists_keys(tmp_path):
    import torch

    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "bad.pth")
    r = run(BIN / "edgevit-export", "-m", "edgevit_xxs", "-t", "onnx", "--checkpoint", tmp_path / "bad.pth",
            "--out", tmp_path / "o")
    assert r.returncode == 2
    assert "missing keys" in r.stderr and "unexpected keys: foo" in r.stderr


def test_unwritable_out(tmp_path):
    (tmp_path / "f").write_text("")
    r = run(BIN / "edgevit-export", "-m", "edgevit_xxs", "-t", "onnx", "--out", tmp_path / "f" / "x")
    assert r.returncode == 2 and "cannot write to output folder" in r.stderr


def test_unsupported_mode_for_target(tmp_path):
    r = run(BIN / "edgevit-export", "-m", "edgevit_xxs", "-t", "onnx", "--quantize", "palettize4", "--out", tmp_path)
    assert r.returncode == 2
    assert "onnx does not support" in r.stderr and "int8" in r.stderr


def test_list_models():
    r = run(BIN / "edgevit-export", "--list-models")
    assert r.returncode == 0
    for name in ("edgevit_xxs", "edgevit_xs", "edgevit_s"):
        assert name in r.stdout
    assert "74.4" in r.stdout  # the paper's top-1 for XXS, reference data


def test_missing_model_option():
    r = run(BIN / "edgevit-export", "--target", "onnx")
    assert r.returncode == 2 and "--model is required" in r.stderr
