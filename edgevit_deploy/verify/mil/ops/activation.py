"""Activation MIL ops."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._args import OpArgs
from ._registry import register
from .shape import channel_view


@register("relu")
def _relu(a: OpArgs) -> torch.Tensor:
    return torch.relu(a.t("x"))


@register("relu6")
def _relu6(a: OpArgs) -> torch.Tensor:
    return torch.clamp(a.t("x"), 0.0, 6.0)


@register("sigmoid")
def _sigmoid(a: OpArgs) -> torch.Tensor:
    return torch.sigmoid(a.t("x"))


@register("sigmoid_hard")
def _sigmoid_hard(a: OpArgs) -> torch.Tensor:
    return torch.clamp(a.float("alpha", 0.2) * a.t("x") + a.float("beta", 0.5), 0.0, 1.0)


@register("silu")
def _silu(a: OpArgs) -> torch.Tensor:
    return F.silu(a.t("x"))


@register("gelu")
def _gelu(a: OpArgs) -> torch.Tensor:
    x, mode = a.t("x"), a.str("mode", "EXACT")
    if mode == "EXACT":
        return F.gelu(x)
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    raise ValueError(f"gelu: unknown mode {mode!r}")


@register("leaky_relu")
def _leaky_relu(a: OpArgs) -> torch.Tensor:
    return F.leaky_relu(a.t("x"), a.float("alpha", 0.01))


@register("elu")
def _elu(a: OpArgs) -> torch.Tensor:
    return F.elu(a.t("x"), a.float("alpha", 1.0))


@register("prelu")
def _prelu(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    alpha = channel_view(a.t("alpha"), x.dim())
    return torch.where(x >= 0, x, x * alpha)


@register("softplus")
def _softplus(a: OpArgs) -> torch.Tensor:
    return F.softplus(a.t("x"))


@register("softplus_parametric")
def _softplus_parametric(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    alpha, beta = channel_view(a.t("alpha"), x.dim()), channel_view(a.t("beta"), x.dim())
    return alpha * F.softplus(beta * x)


@register("softsign")
def _softsign(a: OpArgs) -> torch.Tensor:
    return F.softsign(a.t("x"))


@register("scaled_tanh")
def _scaled_tanh(a: OpArgs) -> torch.Tensor:
    return a.float("alpha", 1.0) * torch.tanh(a.float("beta", 1.0) * a.t("x"))


@register("linear_activation")
def _linear_activation(a: OpArgs) -> torch.Tensor:
    return a.float("alpha", 1.0) * a.t("x") + a.float("beta", 0.0)


@register("clamped_relu")
def _clamped_relu(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    return torch.clamp(torch.where(x >= 0, x, a.float("alpha") * x), max=a.float("beta"))


@register("thresholded_relu")
def _thresholded_relu(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    return torch.where(x >= a.float("alpha", 1.0), x, torch.zeros_like(x))


@register("softmax")
def _softmax(a: OpArgs) -> torch.Tensor:
    return torch.softmax(a.t("x"), dim=a.int("axis", -1))


@register("scaled_dot_product_attention")
def _sdpa(a: OpArgs) -> torch.Tensor:
    q, k, v = a.t("query"), a.t("key"), a.t("value")
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if a.has("attn_mask"):
        mask = a.t("attn_mask")
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype is torch.bool else scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)
