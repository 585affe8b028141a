"""Tables for the quantization fidelity report (when ``--quantize`` was used)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def quant_tables(result: Any) -> list[Table]:
    tables: list[Table] = []
    for art in result.artifacts:
        if art.fidelity is None:
            continue
        t = Table(title=f"{art.target} {art.precision}: fidelity vs fp32 PyTorch on held-out images")
        t.add_column("metric")
        t.add_column("value")
        for key, value in art.fidelity.table_rows():
            t.add_row(key, value)
        tables.append(t)
    return tables
