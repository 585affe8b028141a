"""Normalisation over axes: layer_norm, l2_norm, local_response_norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._args import OpArgs
from ._registry import register


@register("layer_norm")
def _layer_norm(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    r = x.dim()
    axes = a.ints("axes")
    axes = tuple(range(r)) if axes is None else tuple(sorted(ax % r for ax in axes))
    eps = a.float("epsilon", 1e-5)
    gamma, beta = a.opt_t("gamma"), a.opt_t("beta")
    if axes == tuple(range(r - len(axes), r)):  # trailing axes: the fused kernel
        return F.layer_norm(x, tuple(x.shape[r - len(axes) :]), gamma, beta, eps)
    mean = x.mean(dim=axes, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
    y = (x - mean) * torch.rsqrt(var + eps)
    shape = [x.shape[i] if i in axes else 1 for i in range(r)]
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y


@register("l2_norm")
def _l2_norm(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    dims = tuple(range(max(x.dim() - 3, 0), x.dim()))  # the last three dims (MIL's definition)
    return x / torch.sqrt(torch.sum(x * x, dim=dims, keepdim=True) + a.float("epsilon", 1e-6))


@register("local_response_norm")
def _lrn(a: OpArgs) -> torch.Tensor:
    return F.local_response_norm(
        a.t("x"), a.int("size"), a.float("alpha", 1e-4), a.float("beta", 0.75), a.float("k", 1.0)
    )
