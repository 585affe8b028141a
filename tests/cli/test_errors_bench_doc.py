"""docs/errors.md's edgevit-bench section is true: every row's example, run in a folder with the files the page describes,
prints one ``error:`` line holding the row's message, exits with the row's code, shows no traceback and
creates nothing (no store, no cache folder, no output folder)."""
from __future__ import annotations

import os
import re
import shlex
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.artifact_fixtures import parity, tiny_onnx, toolkit_metadata, write_report

from edgevit_deploy.cli.bench_cmd import main as bench_main
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.types import BenchJob, Measurement

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _rows() -> list[tuple[str, str, str, int]]:
    rows = []
    text = DOC.read_text()
    section = text[text.index("\n## edgevit-bench\n"):]  # the bench section (the others: tests/cli/test_errors_doc.py)
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 4 or cells[0] in ("input", "---") or set(cells[0]) <= {"-"}:
            continue
        example = re.fullmatch(r"`(edgevit-bench .+)`", cells[1])
        message = re.search(r"`(.+)`", cells[2])
        assert example and message and cells[3].isdigit(), f"malformed row in {DOC.name}: {line}"
        rows.append((cells[0], example[1], message[1], int(cells[3])))
    return rows


ROWS = _rows()


def test_the_page_has_the_rows_the_issue_asks_for():
    inputs = " ".join(r[0] for r in ROWS)
    for needed in ("binary", "does not parse", "--store", "--out", "-o", "empty file", "another program"):
        assert needed in inputs, needed
    assert len(ROWS) >= 20


def _workdir(tmp: Path) -> None:
    (tmp / "notes.txt").write_text("not a folder\n")
    (tmp / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp / "broken.yaml").write_text("models: [edgevit_xxs\n  targets: {onnx\n")
    (tmp / "typo.yaml").write_text("model_names: [edgevit_xxs]\n")
    (tmp / "empty.sqlite").touch()
    with sqlite3.connect(tmp / "foreign.sqlite") as c:
        c.execute("CREATE TABLE measurements (id INTEGER PRIMARY KEY, sensor TEXT, value REAL)")
    c.close()
    tiny_onnx(tmp / "plain.onnx")
    tiny_onnx(tmp / "tagged.onnx", metadata=toolkit_metadata())
    tiny_onnx(tmp / "failed" / "tagged.onnx", metadata=toolkit_metadata())
    write_report(tmp / "failed", {"tagged.onnx": {"parity": parity(passed=False, max_abs=0.25)}})
    with ResultStore(tmp / "store.sqlite") as store:
        store.put(Measurement(job=BenchJob("edgevit_xxs", "onnx", "fp32", img_size=64), status="ok", median_ms=2.0))


def _snapshot(tmp: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(tmp)): (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp.rglob("*")}


@pytest.mark.parametrize("what,example,message,code", ROWS, ids=[r[0] for r in ROWS])
def test_each_documented_error(tmp_path, monkeypatch, what, example, message, code):
    _workdir(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))   # the default cache dir, watched too
    before = _snapshot(tmp_path)
    argv = shlex.split(example)[1:]
    result = CliRunner().invoke(bench_main, argv)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), result.stderr
    assert message in err[0], err[0]
    assert "Traceback" not in result.output
    assert _snapshot(tmp_path) == before, "bad input created or changed files"
    assert not os.path.exists(tmp_path / "xdg-cache")


def test_help_and_a_bare_command_still_show_the_usage():
    runner = CliRunner()
    assert runner.invoke(bench_main, ["--help"]).exit_code == 0
    bare = runner.invoke(bench_main, [])
    assert "Usage: " in bare.output and "error:" not in bare.output
