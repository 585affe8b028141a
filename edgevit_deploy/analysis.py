"""Model cost figures: parameter count and multiply-accumulates (MACs) of one forward pass.

MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of matrix
products and convolutions (the convention of the papers' "FLOPs" columns, which are really MACs):
MACs = FLOPs / 2. Element-wise operations, normalisations and activations are not counted, as in fvcore /
thop, the counters the papers used. Fused attention (``scaled_dot_product_attention``) is forced onto its
math backend while counting: the fused CPU kernels are invisible to the counter, so timm's attention
matmuls would otherwise be missed (DeiT-Tiny would count 1.07 instead of 1.25 GMACs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .models import count_params  # re-exported: the one definition lives with the registry
from .models._config import ModelConfig

log = logging.getLogger(__name__)

__all__ = ["ModelCost", "count_macs", "count_params", "measure_cost", "small_img_size", "smallest_img_size"]


@dataclass(frozen=True)
class ModelCost:
    num_params: int
    gmacs: float
    img_size: int


def count_macs(model: nn.Module, img_size: int | tuple[int, int] = 224, in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass of a batch of one ``in_chans x H x W`` image.

    The model is run in eval mode under ``torch.no_grad``; its training flag is restored afterwards.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    if h <= 0 or w <= 0 or in_chans <= 0:
        raise ValueError(f"count_macs needs a positive input size, got {in_chans}x{h}x{w}")
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_chans, h, w)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def measure_cost(model: nn.Module, img_size: int = 224, in_chans: int = 3) -> ModelCost:
    """Parameter count and GMACs (10^9 MACs) of ``model`` at ``img_size``."""
    macs = count_macs(model, img_size, in_chans)
    return ModelCost(num_params=count_params(model), gmacs=macs / 1e9, img_size=img_size)


def smallest_img_size(size_divisor: int, floor: int = 64) -> int:
    """The smallest input side that is a multiple of ``size_divisor`` and at least ``floor``: the size
    the zoo's tests and the support matrix use to keep conversions affordable."""
    if size_divisor <= 0 or floor <= 0:
        raise ValueError(f"size_divisor and floor must be positive, got {size_divisor} and {floor}")
    return -(-floor // size_divisor) * size_divisor


def small_img_size(cfg: ModelConfig, floor: int = 64) -> int:
    """The smallest input side ``cfg``'s model accepts that is at least ``floor`` (its one size when the model
    has a fixed input size)."""
    if cfg.fixed_input_size:
        return cfg.img_size
    return smallest_img_size(cfg.size_divisor, floor)
