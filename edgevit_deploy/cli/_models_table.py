"""The ``--list-models`` table."""

from __future__ import annotations

from rich.table import Table

from ..models import get_model_config, list_models
from ._common import fmt


def models_table(pattern: str = "*") -> Table:
    table = Table(title="Registered models (paper figures are reference data, not measured here)")
    for col in ("name", "family", "params M", "GMACs", "input", "paper top-1", "paper latency ms", "source"):
        table.add_column(col, justify="right" if col not in ("name", "family", "source") else "left")
    for name in list_models(pattern):
        cfg = get_model_config(name)
        paper = cfg.paper
        latency = None
        if paper and paper.mobile_latency_ms is not None:
            latency = f"{paper.mobile_latency_ms:g}" + (f" ({paper.latency_device})" if paper.latency_device else "")
        table.add_row(
            name,
            cfg.family,
            fmt(cfg.num_params / 1e6 if cfg.num_params else None, ".2f"),
            fmt(cfg.gmacs, ".3f"),
            "x".join(map(str, cfg.input_size[1:])),
            fmt(paper.top1 if paper else None, ".1f"),
            latency or "-",
            (paper.source if paper else "-"),
        )
    return table
