"""Shared helpers of the tests of the models written from their papers (tests/*/test_zoo_papers_*.py):
MobileViG, EfficientMod, FcaFormer, VCMamba.

Randomly initialised models of these families have degenerate outputs (layer scales of 1e-5 / 1e-6 and
identity BatchNorm statistics make FcaFormer's logits ~1e-20), so parity checks use the library's
:func:`edgevit_deploy.models.well_conditioned` (what ``edgevit-export --random-init conditioned`` does):
random norm affine terms and layer scales, BatchNorm statistics measured on a random batch, and a head
rescaled so that the logits have unit spread. Models are built once per session (small input, eval mode)
and shared.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from edgevit_deploy.models import create_model, resolve, well_conditioned

SMALL = 64  # the small input size of the fast tests
FAMILIES: dict[str, list[str]] = {
    "mobilevig": ["mobilevig_ti", "mobilevig_s", "mobilevig_m", "mobilevig_b"],
    "efficientmod": ["efficientmod_xxs", "efficientmod_xs", "efficientmod_s"],
    "fcaformer": ["fcaformer_l1", "fcaformer_l2"],
    "vcmamba": ["vcmamba_s", "vcmamba_m", "vcmamba_b"],
}
ALL_MODELS = [name for names in FAMILIES.values() for name in names]
SMALLEST = [names[0] for names in FAMILIES.values()]


def meta_model(name: str, img_size: int = 224) -> nn.Module:
    """The registered model with 1000 classes built on the meta device: shapes without storage, so that
    parameter counts and FLOP counts of full-size models cost no memory and almost no time."""
    with torch.device("meta"):
        return resolve(name).factory(num_classes=1000, img_size=img_size).eval()


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
