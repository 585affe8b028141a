"""Shared helpers of the tests of the models written from their papers (tests/test_zoo_papers_*.py):
MobileViG, EfficientMod, FcaFormer, VCMamba.

Randomly initialised models of these families have degenerate outputs (layer scales of 1e-5 / 1e-6 and
identity BatchNorm statistics make FcaFormer's logits ~1e-20), so parity checks use
:func:`well_conditioned`: random BatchNorm statistics and layer scales, and a head rescaled so that the
logits have unit spread. Models are built once per session (small input, eval mode) and shared.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from edgevit_deploy.models import create_model, resolve

SMALL = 64  # the small input size of the fast tests
FAMILIES: dict[str, list[str]] = {
    "mobilevig": ["mobilevig_ti", "mobilevig_s", "mobilevig_m", "mobilevig_b"],
    "efficientmod": ["efficientmod_xxs", "efficientmod_xs", "efficientmod_s"],
    "fcaformer": ["fcaformer_l1", "fcaformer_l2"],
    "vcmamba": ["vcmamba_s", "vcmamba_m", "vcmamba_b"],
}
ALL_MODELS = [name for names in FAMILIES.values() for name in names]
SMALLEST = [names[0] for names in FAMILIES.values()]

_SCALE_NAMES = ("gamma", "layer_scale", "s_scale_factors")


def meta_model(name: str, img_size: int = 224) -> nn.Module:
    """The registered model with 1000 classes built on the meta device: shapes without storage, so that
    parameter counts and FLOP counts of full-size models cost no memory and almost no time."""
    with torch.device("meta"):
        return resolve(name).factory(num_classes=1000, img_size=img_size).eval()


@torch.no_grad()
def well_conditioned(model: nn.Module, img_size: int, seed: int = 0) -> nn.Module:
    """Give ``model`` (in place) random BN statistics / affine terms and O(0.1-1) layer scales, then rescale
    its classifier(s) so that logits on a random batch have standard deviation ~1."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            uniform(m.running_var, 0.5, 2.0)
            uniform(m.weight, 0.5, 1.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[-1].startswith(_SCALE_NAMES):
            uniform(p, 0.1, 0.5)
    model.eval()
    x = torch.randn(2, 3, img_size, img_size, generator=g)
    std = model(x).std().item()
    heads = [m for n, m in model.named_modules() if n in ("head", "dist_head")]
    for h in heads:
        h.weight.div_(std)
        h.bias.div_(std)
    return model


@pytest.fixture(scope="session")
def small_model() -> Iterator[Callable[[str], nn.Module]]:
    """``small_model(name)``: the registered model at ``SMALL`` x ``SMALL``, well conditioned, cached."""
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = well_conditioned(create_model(name, img_size=SMALL), SMALL)
        return cache[name]

    yield get
    cache.clear()
