"""A self-contained HTML report: tables and PNG plots inlined as base64 (no external files or scripts)."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..._version import __version__
from ..profiles import by_op_type, coverage_label, top
from .reference import paper_table
from .rows import SUMMARY_COLUMNS, label

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px;
margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}
td.l{text-align:left}tr.failed td{color:#a00}img{max-width:100%;margin:1em 0;border:1px solid #eee}
h2{margin-top:1.6em}.muted{color:#777;font-size:12px}"""
_TEXT_COLS = {"model", "target", "precision", "delegate", "device", "status", "runtime", "reason", "coverage"}
_TEXT_COLS |= {"row", "op types (top 5: ms, %)"}


def _cell(col: str, v: Any) -> str:
    if v is None:
        text = ""
    elif isinstance(v, float):
        text = f"{v:.3f}"
    else:
        text = str(v)
    cls = ' class="l"' if col in _TEXT_COLS else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def _table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = ' class="failed"' if r.get("status") not in (None, "ok") else ""
        body.append(f"<tr{cls}>" + "".join(_cell(c, r.get(c)) for c in cols) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _devices(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        info = r.get("device_info") or {}
        if r["device"] not in seen and info:
            seen[r["device"]] = {
                "device": r["device"],
                "model": info.get("model"),
                "soc": info.get("soc"),
                "os": info.get("os_version"),
                "abi": info.get("abi"),
                "governor": info.get("cpu_governor"),
                "max_freqs_khz": ",".join(map(str, sorted(set(info.get("cpu_max_freqs_khz") or [])))),
            }
    return list(seen.values())


def _ops_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per profiled row: its five heaviest op types."""
    out = []
    for r in rows:
        if r.get("status") == "ok" and r.get("op_profile"):
            types = top(by_op_type(r["op_profile"]), 5)
            out.append(
                {
                    "row": f"{r['model']} {label(dict(r), True)}",
                    "op types (top 5: ms, %)": "; ".join(f"{t['op']} {t['ms']:.3f} ({t['pct']:.0f}%)" for t in types),
                }
            )
    return out


def render(rows: Sequence[Mapping[str, Any]], plots: Mapping[str, Path], store: str = "") -> str:
    cols = [c for c in SUMMARY_COLUMNS if c not in ("reason",)]
    if any(r.get("delegate_coverage") for r in rows):  # nodes the delegate took: "partial (N/M, K partitions)"
        rows = [{**r, "coverage": coverage_label(r.get("delegate_coverage"))} for r in rows]
        cols.insert(cols.index("delegate") + 1, "coverage")
    ok = [r for r in rows if r.get("status") == "ok"]
    bad = [r for r in rows if r.get("status") != "ok"]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgevit-bench report</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>edgevit-bench report</h1>",
        f"<p class='muted'>{len(rows)} rows ({len(ok)} ok, {len(bad)} failed) from {html.escape(store)}; "
        f"edgevit-deploy {__version__}; generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p>",
        "<h2>Measurements</h2>",
        _table(ok, cols),
    ]
    if bad:
        parts += [
            "<h2>Failed rows</h2>",
            _table(bad, ["model", "target", "precision", "threads", "delegate", "device", "reason"]),
        ]
    devices = _devices(rows)
    if devices:
        parts += ["<h2>Devices</h2>", _table(devices, list(devices[0]))]
    parts.append("<h2>Plots</h2>")
    parts += [_img(p, name) for name, p in plots.items() if name != "op_breakdown"]
    if "op_breakdown" in plots:
        parts += ["<h2>Per-op breakdown</h2>", _img(plots["op_breakdown"], "op_breakdown")]
        parts.append(_table(_ops_rows(rows), ["row", "op types (top 5: ms, %)"]))
    ref = paper_table()
    parts += [
        "<h2>Reference: published on-device rows</h2>",
        f"<p class='muted'>{html.escape(ref['source'])}</p>",
        _table(ref["rows"], ["model", "top1", "cpu_ms", "energy_mj", "power_w", "efficiency"]),
        "</body></html>",
    ]
    return "\n".join(parts)
