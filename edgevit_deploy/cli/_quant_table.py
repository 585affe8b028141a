"""Tables for the quantization fidelity report (when ``--quantize`` was used)."""
from __future__ import annotations

from typing import Any

from rich.table import Table

from ._common import fmt


def quant_tables(result: Any) -> list[Table]:
    tables: list[Table] = []
    for art in result.artifacts:
        q = art.quantization
        if not q:
            continue
        t = Table(title=f"{art.target} {art.precision}: fidelity vs fp32 PyTorch (held-out images)")
        t.add_column("metric")
        t.add_column("value", justify="right")
        for key, value in _flatten(q):
            t.add_row(key, value)
        tables.append(t)
    return tables


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flatten(v, key + "."))
        elif isinstance(v, list):
            if v and isinstance(v[0], dict):
                continue  # per-layer lists are in report.json
            rows.append((key, ", ".join(map(str, v)) or "-"))
        elif isinstance(v, float):
            rows.append((key, fmt(v, ".4g")))
        else:
            rows.append((key, "-" if v is None else str(v)))
    return rows
