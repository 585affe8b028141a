"""docs/errors.md is the contract for bad input: every row's example runs, exits with the documented code,
says the documented fragment, shows no traceback, and creates no output folder. The rows fail at
validation time, so the commands run in-process (click's CliRunner) in well under a second each."""
from __future__ import annotations

import re
import shlex
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
COMMANDS = ("edgevit-export", "edgevit-verify", "edgevit-bench")
WALKED_HERE = COMMANDS[:2]  # the edgevit-bench rows run in their own folder layout: tests/cli/test_errors_bench_doc.py


@dataclass(frozen=True)
class Row:
    command: str
    input: str
    example: str
    fragment: str
    exit: int


def _code(cell: str) -> str:
    m = re.search(r"`([^`]+)`", cell)
    if not m:
        raise ValueError(f"no `...` in {cell!r}")
    return m.group(1)


def parse_doc(text: str) -> list[Row]:
    rows: list[Row] = []
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if section not in WALKED_HERE or not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "input":  # header
            assert cells == ["input", "example", "message (what it says)", "exit"], line
            continue
        assert len(cells) == 4, f"a row of docs/errors.md needs 4 cells: {line}"
        example = _code(cells[1])
        assert example.split()[0] == section, f"row under ## {section} runs another command: {line}"
        rows.append(Row(section, cells[0], example, _code(cells[2]), int(cells[3])))
    return rows


ROWS = parse_doc(DOC.read_text())


def test_doc_has_a_section_per_command_and_the_rows_of_the_issue():
    text = DOC.read_text()
    for command in COMMANDS:
        assert f"\n## {command}\n" in text
    inputs = " ".join(r.example for r in ROWS if r.command == "edgevit-export")
    for flag in ("--img-size 0", "--img-size 100000", "--num-classes 0", "--num-classes -5", "empty.pth",
                 "text.pth", "notorch.pth", "list.pth", "--calib-data {tmp}/broken", "--calib-data {tmp}/bomb",
                 "--calib-size 0", "--opset 11", "--opset 99", "--analyze", "{tmp}/afile/out"):
        assert flag in inputs, flag


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (PIL refuses it as a decompression bomb on open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def make_fixtures(tmp: Path) -> None:
    (tmp / "empty.pth").write_bytes(b"")
    (tmp / "text.pth").write_text("these are not weights\n")
    torch.save({"a": [1, "x"]}, tmp / "list.pth")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp / "module.pth")
    with zipfile.ZipFile(tmp / "notorch.pth", "w") as z:
        z.writestr("readme.txt", "not a torch file")
    torch.save({"conv.weight": torch.zeros(2, 3, 1, 1)}, tmp / "other_arch.pth")
    (tmp / "afile").write_text("")
    (tmp / "noimg").mkdir()
    (tmp / "noimg" / "notes.txt").write_text("no images here")
    (tmp / "broken").mkdir()
    (tmp / "broken" / "photo.jpg").write_text("not a jpeg")
    (tmp / "bomb").mkdir()
    (tmp / "bomb" / "huge.png").write_bytes(_png_header(100_000, 100_000))
    rng = np.random.default_rng(0)
    (tmp / "random.onnx").write_bytes(rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    (tmp / "text.onnx").write_text("this is not a model\n")
    (tmp / "truncated.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + rng.integers(0, 256, 4_000, dtype=np.uint8).tobytes())
    (tmp / "empty.tflite").write_bytes(b"")
    (tmp / "empty.mlpackage").mkdir()


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory) -> Path:
    import edgevit_deploy

    out = tmp_path_factory.mktemp("errors_doc_onnx")
    res = edgevit_deploy.export("edgevit_xxs", "onnx", out, img_size=64, verify=False)
    assert res.ok
    return res.artifacts[0].path


def _command(name: str):
    if name == "edgevit-export":
        from edgevit_deploy.cli.export_cmd import main
    elif name == "edgevit-verify":
        from edgevit_deploy.cli.verify_cmd import main
    else:
        from edgevit_deploy.cli.bench_cmd import main
    return main


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.command}: {r.input}" for r in ROWS])
def test_documented_bad_input(row: Row, tmp_path, request, restore_logging):
    make_fixtures(tmp_path)
    values = {"tmp": str(tmp_path)}
    if "{onnx}" in row.example:
        values["onnx"] = str(request.getfixturevalue("onnx_artifact"))
    if "{tmp}/truncated.onnx" in row.example:  # the first third of a real export
        data = request.getfixturevalue("onnx_artifact").read_bytes()
        (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 3])
    argv = shlex.split(row.example.format(**values))
    result = CliRunner().invoke(_command(argv[0]), argv[1:], catch_exceptions=True)
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    assert result.exit_code == row.exit, output
    assert row.fragment in output, output
    if "Usage:" not in result.stderr:  # ours (not click's usage errors): the error is the first line on stderr
        assert result.stderr.splitlines()[0].startswith("error: "), result.stderr
        assert "weights_only=False" not in output
    assert not (tmp_path / "out").exists(), "an output folder was created before the inputs were validated"
