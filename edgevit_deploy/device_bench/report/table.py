"""The terminal table (rich)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from ..profiles import delegate_cell


def _ms(v: Any) -> str:
    return "" if v is None else f"{v:.2f}"


def _mb(v: Any, scale: float = 1.0) -> str:
    return "" if v is None else f"{v / scale:.1f}"


def busy_note(row: dict[str, Any]) -> str:
    """ "busy (load X on N cores)" when the host's 1-minute load exceeded its core count before the run:
    its timings then measure the other work as much as the model."""
    load = (row.get("thermal_before") or {}).get("loadavg_1m")
    cores = ((row.get("device_info") or {}).get("extra") or {}).get("cpu_count")
    if load is not None and cores and load > cores:
        return f"busy (load {load:.1f} on {cores} cores)"
    return ""


def parity_cell(parity: dict[str, Any] | None) -> str:
    """The file's outputs vs PyTorch: pass / FAIL with max abs and cosine, from an on-device check (app and tool
    rows) or, marked "(export)", from the report.json of a given artifact's folder; "-" when not known."""
    if not parity:
        return "-"
    if not parity.get("executed"):
        return "not run"
    figures = f"max {parity.get('max_abs', float('nan')):.1e} cos {parity.get('cosine', float('nan')):.4f}"
    if parity.get("source") == "report.json":
        figures += " (export)"
    return f"[green]pass[/] {figures}" if parity.get("passed") else f"[red]FAIL[/] {figures}"


def rich_table(rows: Sequence[dict[str, Any]], title: str = "edgevit-bench results") -> Table:
    """The rows; a ``#`` column first when they carry a ``row`` number (``show``: what ``show --ops`` takes)."""
    table = Table(title=title, show_lines=False)
    numbered = any("row" in r for r in rows)
    if numbered:
        table.add_column("#", justify="right")
    for name, justify in (
        ("model", "left"),
        ("target", "left"),
        ("prec", "left"),
        ("thr", "right"),
        ("delegate", "left"),
        ("device", "left"),
        ("img", "right"),
        ("runner", "left"),
        ("status", "left"),
        ("parity", "left"),
        ("median ms", "right"),
        ("p90 ms", "right"),
        ("mean ms", "right"),
        ("init ms", "right"),
        ("peak MB", "right"),
        ("size MB", "right"),
        ("mJ/inf", "right"),
        ("note", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        ok = r.get("status") == "ok"
        note = "" if ok else (r.get("reason") or "")[:80]
        if ok:
            note = ", ".join(n for n in ("throttled" if r.get("throttled") else "", busy_note(r)) if n)
        table.add_row(
            *([str(r.get("row", ""))] if numbered else []),
            str(r["model"]),
            str(r["target"]),
            str(r["precision"]),
            str(r["threads"]),
            delegate_cell(str(r["delegate"]), r.get("delegate_coverage")),
            str(r["device"]),
            str(r["img_size"]),
            str(r.get("runner") or "default"),
            "[green]ok[/]" if ok else f"[red]{r.get('status')}[/]",
            parity_cell(r.get("parity")),
            _ms(r.get("median_ms")),
            _ms(r.get("p90_ms")),
            _ms(r.get("mean_ms")),
            _ms(r.get("init_ms")),
            _mb(r.get("peak_memory_mb")),
            _mb(r.get("model_size_bytes"), 1e6),
            _ms(r.get("energy_mj")),
            note,
        )
    return table
