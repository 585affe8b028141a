"""Rows of the store as flat records: the summary columns, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: what every JSON / CSV row carries first (the issue's minimum, then the useful rest)
SUMMARY_COLUMNS = [
    "model",
    "target",
    "precision",
    "threads",
    "delegate",
    "device",
    "img_size",
    "status",
    "median_ms",
    "mean_ms",
    "p90_ms",
    "p99_ms",
    "std_ms",
    "min_ms",
    "trimmed_mean_ms",
    "init_ms",
    "first_ms",
    "peak_memory_mb",
    "model_size_bytes",
    "energy_mj",
    "power_w",
    "throttled",
    "published_top1",
    "efficiency",
    "runtime",
    "reason",
]
#: left out of exports: the runner's raw stdout (kept in the store for debugging)
EXCLUDED = {"raw_output"}


def export_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    rest = sorted({k for r in rows for k in r} - set(SUMMARY_COLUMNS) - EXCLUDED)
    return [*SUMMARY_COLUMNS, *rest]


def with_efficiency(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` plus the architecture's published top-1 and the EdgeViT paper's efficiency metric
    (top-1 % per mJ per inference) where an energy reading exists."""
    from .reference import published_top1

    top1 = published_top1(str(row["model"]))
    energy = row.get("energy_mj")
    return {
        **row,
        "published_top1": top1,
        "efficiency": round(top1 / energy, 4) if top1 is not None and energy else None,
    }


def parity_summary(parity: dict[str, Any] | None) -> str:
    """A row's parity as one export cell: "pass 1.2e-06" / "FAIL 3.4e-02" (max abs error vs PyTorch), "not run",
    or "-" when unknown; ``parity["source"]`` says where the figures came from (report.json or on-device)."""
    if not parity:
        return "-"
    if not parity.get("executed"):
        return "not run"
    max_abs = parity.get("max_abs")
    figure = f" {max_abs:.1e}" if isinstance(max_abs, (int, float)) else ""
    return ("pass" if parity.get("passed") else "FAIL") + figure


def export_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    full = [{**with_efficiency(r), "parity_summary": parity_summary(r.get("parity"))} for r in rows]
    cols = export_columns(full)
    return [{c: r.get(c) for c in cols} for r in full]


def to_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(export_rows(rows), indent=1)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = export_rows(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=export_columns(out), lineterminator="\n")
    writer.writeheader()
    for r in out:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    return buf.getvalue()


def write(rows: Sequence[dict[str, Any]], path: Path, fmt: str) -> Path:
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown export format {fmt!r}; use csv or json")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, to_csv(rows) if fmt == "csv" else to_json(rows))
    return path


def write_atomic(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temp file and a rename: a reader never sees half a file."""
    from ..._atomic import write_text

    write_text(path, text)


def label(row: dict[str, Any], with_device: bool = False) -> str:
    """Short series name of a row's configuration, e.g. ``tflite fp32 1t``."""
    text = f"{row['target']} {row['precision']} {row['threads']}t"
    if row.get("delegate") not in (None, "cpu", "xnnpack", "default"):
        text += f" {row['delegate']}"
    return f"{text} @{row['device']}" if with_device else text
