"""Shared helpers and session fixtures of the model-zoo tests (imported by tests/*/test_zoo_*.py)."""
from __future__ import annotations

import copy
from functools import cache

import torch
from torch import nn

from edgevit_deploy.analysis import small_img_size
from edgevit_deploy.models import count_params, create_model, get_model_config, list_models, resolve

from .zoo_expectations import expected_to_pass, random_init

ALL_MODELS = list_models()
#: the input side of the ONNX group export of tests/converters/test_zoo_export.py
GROUP_SIZE = 64
#: families whose exports have their own tests (tests/converters/test_export*.py, the quantization tests)
TESTED_ELSEWHERE = {"edgevit", "efficientnet_lite"}


def small_size(name: str) -> int:
    """The input side the zoo tests use: the smallest valid size of at least 64."""
    return small_img_size(get_model_config(name), 64)


@cache
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
    return count_params(model)


def _in_group(name: str) -> bool:
    return get_model_config(name).family not in TESTED_ELSEWHERE and small_size(name) == GROUP_SIZE


def onnx_members() -> list[str]:
    """The models of the ONNX group: those whose ONNX fp32 cell is expected to pass, at the group size."""
    return [n for n in expected_to_pass("onnx") if _in_group(n)]


def member(name: str) -> nn.Module:
    """``name`` at :func:`small_size` with the random init its cells use (see zoo_expectations)."""
    model = small_model(name)
    if random_init(name) == "default":
        return model
    from edgevit_deploy.export_api import apply_random_init

    model = copy.deepcopy(model)
    apply_random_init(model, model.deploy_cfg, "random-init", "conditioned")
    return model


class ModelGroup(nn.Module):
    """Several classifiers fed the same image, logits concatenated: one conversion covers them all."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.names = list(models)
        self.members = nn.ModuleList(models.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.members], dim=1)
