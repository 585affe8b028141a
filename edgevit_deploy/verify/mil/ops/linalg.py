"""linear, matmul, einsum."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._args import OpArgs
from ._registry import register


@register("linear")
def _linear(a: OpArgs) -> torch.Tensor:
    return F.linear(a.t("x"), a.t("weight"), a.opt_t("bias"))


@register("matmul")
def _matmul(a: OpArgs) -> torch.Tensor:
    x, y = a.t("x"), a.t("y")
    if a.bool("transpose_x") and x.dim() > 1:
        x = x.transpose(-1, -2)
    if a.bool("transpose_y") and y.dim() > 1:
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


@register("einsum")
def _einsum(a: OpArgs) -> torch.Tensor:
    return torch.einsum(a.str("equation"), *a.ts("values"))
