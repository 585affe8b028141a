"""Nothing lost, nothing half-written claimed as good: atomic artifacts and report.json, merged reports.

The exports here are ONNX at 64 px without the parity check (a few seconds each): what is tested is what
lands on disk, not the numbers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import edgevit_deploy
from edgevit_deploy._atomic import atomic_path, sha256_of, stale_temporaries, write_text
from edgevit_deploy.converters import ExportOptions

ROOT = Path(__file__).resolve().parents[2]
FP32, DYN = "edgevit_xxs-fp32.onnx", "edgevit_xxs-fp32-dynbatch.onnx"


def _export(out: Path, dynamic_batch: bool = False):
    return edgevit_deploy.export("edgevit_xxs", "onnx", out, img_size=64, verify=False,
                                 options=ExportOptions(dynamic_batch=dynamic_batch))


def _rows(out: Path) -> dict[str, dict]:
    rows = json.loads((out / "report.json").read_text())["artifacts"]
    by_file = {r["file"]: r for r in rows}
    assert len(by_file) == len(rows), "one row per artifact file"
    return by_file


@pytest.fixture(scope="module")
def two_exports(tmp_path_factory) -> Path:
    """fp32 and fp32-dynbatch ONNX exports, one after the other, into one folder."""
    out = tmp_path_factory.mktemp("two_exports")
    _export(out)
    _export(out, dynamic_batch=True)
    return out


# ------------------------------------------------------------------------------------------- helpers
def test_atomic_path_moves_a_finished_file_and_removes_an_unfinished_one(tmp_path):
    final = tmp_path / "a.onnx"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(final) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".onnx" and tmp.name.startswith(".")
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert final.read_bytes() == b"old" and stale_temporaries(tmp_path) == []
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"new")
        assert final.read_bytes() == b"old"  # nothing under the final name changes before the rename
    assert final.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [final]


def test_atomic_path_replaces_a_package_directory_whole(tmp_path):
    final = tmp_path / "m.mlpackage"
    (final / "Data").mkdir(parents=True)
    (final / "Data" / "old.bin").write_bytes(b"old")
    with pytest.raises(OSError):
        with atomic_path(final) as tmp:
            (tmp / "Data").mkdir(parents=True)
            (tmp / "Data" / "new.bin").write_bytes(b"ha")
            raise OSError(28, "No space left on device")
    assert [p.name for p in final.rglob("*.bin")] == ["old.bin"]
    with atomic_path(final) as tmp:
        (tmp / "Data").mkdir(parents=True)
        (tmp / "Data" / "new.bin").write_bytes(b"new")
    assert [p.name for p in final.rglob("*.bin")] == ["new.bin"]  # no mix of old and new files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
    before = sha256_of(final)
    (final / "Data" / "new.bin").write_bytes(b"changed")
    assert sha256_of(final) != before


def test_write_text_never_leaves_half_a_report(tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    write_text(report, '{"artifacts": []}')

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_text(report, '{"artifacts": [{"target": "onnx"}]}')
    assert json.loads(report.read_text()) == {"artifacts": []} and stale_temporaries(tmp_path) == []


def test_a_report_that_cannot_be_written_is_one_clear_error_and_the_old_report_stays(tmp_path, monkeypatch):
    from edgevit_deploy.errors import OutputDirError
    from edgevit_deploy.export_api import ExportResult
    from edgevit_deploy.models import get_model_config

    (tmp_path / "report.json").write_text('{"artifacts": []}')
    result = ExportResult("edgevit_xxs", get_model_config("edgevit_xxs"), "random-init", tmp_path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputDirError, match="No space left on device.*choose another folder with --out"):
        result.write_report()
    assert (tmp_path / "report.json").read_text() == '{"artifacts": []}' and stale_temporaries(tmp_path) == []


# -------------------------------------------------------------------------------------- the pipeline
def test_second_export_into_the_same_out_keeps_the_other_rows(two_exports):
    rows = _rows(two_exports)
    assert set(rows) == {FP32, DYN}
    for name, row in rows.items():
        assert row["target"] == "onnx" and row["error"] is None and row["model"] == "edgevit_xxs"
        assert row["sha256"] == sha256_of(two_exports / name)  # each row names the bytes it checked
    assert rows[DYN]["variant"] == "fp32-dynbatch" and rows[FP32]["variant"] == "fp32"
    assert json.loads((two_exports / "report.json").read_text())["artifacts"][0]["file"] == DYN  # latest first


def test_re_export_replaces_its_own_row_only(two_exports, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_exports, out)
    _export(out)
    rows = _rows(out)
    assert set(rows) == {FP32, DYN}
    assert rows[FP32]["sha256"] == sha256_of(out / FP32)
    assert json.loads((out / "report.json").read_text())["artifacts"][0]["file"] == FP32


def test_crash_mid_save_keeps_the_old_file_and_no_row_vouches_for_the_new_one(two_exports, tmp_path,
                                                                                monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(two_exports, out)
    old = {name: sha256_of(out / name) for name in (FP32, DYN)}

    def half_then_fail(model, args, f, *a, **kw):
        Path(f).write_bytes((out / FP32).read_bytes()[:1000])  # half a file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", half_then_fail)
    res = _export(out)
    assert not res.ok and "No space left" in res.artifacts[0].error
    assert sha256_of(out / FP32) == old[FP32]  # the old artifact is untouched
    assert stale_temporaries(out) == []  # the half-written temporary is gone
    rows = _rows(out)
    assert rows[FP32]["error"] and rows[FP32]["sha256"] is None and rows[FP32]["path"] is None
    assert rows[DYN]["error"] is None and rows[DYN]["sha256"] == old[DYN]  # the other artifact's row stays


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
import torch
import edgevit_deploy

out = Path(sys.argv[1])

def half_then_die(model, args, f, *a, **kw):
    Path(f).write_bytes(b"\\x08\\x07" * 500)  # half an ONNX file, then kill -9
    os.kill(os.getpid(), signal.SIGKILL)

torch.onnx.export = half_then_die
edgevit_deploy.export("edgevit_xxs", "onnx", out, img_size=64, verify=False)
"""


def test_kill_9_during_export_leaves_no_truncated_artifact_and_no_stale_row(two_exports, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_exports, out)
    old = {name: sha256_of(out / name) for name in (FP32, DYN)}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(KILL_SCRIPT), str(out)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr
    assert sha256_of(out / FP32) == old[FP32] and sha256_of(out / DYN) == old[DYN]
    rows = _rows(out)  # still a complete JSON document
    # the row that vouched for FP32 was dropped before the file was going to be replaced
    assert FP32 not in rows and rows[DYN]["sha256"] == old[DYN]
    leftovers = stale_temporaries(out)  # what kill -9 leaves: a hidden temporary, never the final name
    assert all(p.name.startswith(f".{FP32}.tmp-") for p in leftovers)
