"""Reference data beside the measurements: the EdgeViT paper's published on-device rows, published
top-1 accuracies and parameter counts of the measured models."""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def paper_table() -> dict[str, Any]:
    """``edgevit_deploy/data/edgevit_paper_table.json`` (EdgeViTs, ECCV 2022: top-1, CPU ms, mJ, W)."""
    return json.loads(resources.files("edgevit_deploy").joinpath("data/edgevit_paper_table.json").read_text())


def _arch(model: str) -> str:
    return model.split(":", 1)[1] if model.startswith("timm:") else model


def published_top1(model: str) -> float | None:
    """The published ImageNet-1K top-1 (%) of ``model``'s architecture, or None when unknown."""
    try:
        from ...models import get_model_config

        cfg = get_model_config(model)
        if cfg.paper and cfg.paper.top1 is not None:
            return float(cfg.paper.top1)
    except Exception:
        pass
    for row in paper_table()["rows"]:
        if row.get("timm_name") and row["timm_name"] == _arch(model):
            return float(row["top1"])
    return None


@functools.lru_cache(maxsize=64)
def param_count(model: str) -> int | None:
    """Parameters of ``model`` (the registry's recorded figure, else counted on a built model)."""
    try:
        from ...models import count_params, create_model, get_model_config

        recorded = get_model_config(model).num_params
        return int(recorded) if recorded else count_params(create_model(model))
    except Exception as exc:
        log.info("no parameter count for %s: %s", model, exc)
        return None
