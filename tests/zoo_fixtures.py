"""Shared helpers and session fixtures of the model-zoo tests (imported by tests/test_zoo_*.py)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from torch import nn

from edgevit_deploy.analysis import small_img_size
from edgevit_deploy.models import create_model, get_model_config, list_models, resolve

ROOT = Path(__file__).resolve().parents[1]
MATRIX_JSON = ROOT / "docs" / "support_matrix.json"

ALL_MODELS = list_models()


def small_size(name: str) -> int:
    """The input side the zoo tests use: the smallest valid size of at least 64."""
    return small_img_size(get_model_config(name), 64)


@lru_cache(maxsize=None)
def small_model(name: str) -> nn.Module:
    """``name`` built once per session at :func:`small_size`, eval mode, seeded random weights."""
    torch.manual_seed(0)
    return create_model(name, img_size=small_size(name))


def default_size_params(name: str) -> int:
    """Parameter count at the default config (224 / 256 px, 1000 classes), built on the meta device when
    the architecture allows it (no memory, no init cost), else on the CPU."""
    entry = resolve(name)
    cfg = entry.config
    try:
        with torch.device("meta"):
            model = entry.factory(num_classes=cfg.num_classes, img_size=cfg.img_size)
    except (NotImplementedError, RuntimeError):  # init that reads tensor values (e.g. linspace().tolist())
        model = entry.factory(num_classes=cfg.num_classes, img_size=cfg.img_size)
    return sum(p.numel() for p in model.parameters())


def matrix_cells() -> list[dict]:
    if not MATRIX_JSON.is_file():
        pytest.fail(f"{MATRIX_JSON} is missing: run scripts/support_matrix.py (it is committed with the repo)")
    return json.loads(MATRIX_JSON.read_text())["cells"]


def matrix_passed(target: str, precision: str = "fp32") -> list[str]:
    """Registered models whose ``target`` x ``precision`` cell of the committed matrix passed."""
    return sorted(c["model"] for c in matrix_cells()
                  if c["target"] == target and c["precision"] == precision and c["status"] == "passed"
                  and c["model"] in ALL_MODELS)


class ModelGroup(nn.Module):
    """Several classifiers fed the same image, logits concatenated: one conversion covers them all."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.names = list(models)
        self.members = nn.ModuleList(models.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.members], dim=1)
