"""Reports of a result store: rich table, CSV / JSON, PNG plots and a self-contained HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .rows import SUMMARY_COLUMNS, to_csv, to_json


def write_report(rows: Sequence[dict[str, Any]], out_dir: str | Path, store: str = "") -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, every PNG plot and ``report.html`` into ``out_dir``."""
    from . import html, plots
    from . import rows as rows_mod

    if store:  # top-1 measured by `edgevit-eval --store` on the same file, where it exists
        from ...evaluate.store import with_measured_top1

        rows = with_measured_top1(rows, store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "csv": rows_mod.write(rows, out / "results.csv", "csv"),
        "json": rows_mod.write(rows, out / "results.json", "json"),
    }
    pngs = plots.write_all(rows, out)
    written.update(pngs)
    page = out / "report.html"
    rows_mod.write_atomic(page, html.render(rows, pngs, store))
    written["html"] = page
    return written


__all__ = ["SUMMARY_COLUMNS", "to_csv", "to_json", "write_report"]
