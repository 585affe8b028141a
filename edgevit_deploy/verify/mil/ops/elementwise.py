"""Element-wise MIL ops (numpy-style broadcasting) and ``cast``."""

from __future__ import annotations

import torch

from ._args import OpArgs
from ._registry import register
from .dtypes import torch_dtype


def _binary(fn):
    return lambda a: fn(a.t("x"), a.t("y"))


def _div(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if not x.is_floating_point() and not y.is_floating_point():
        return torch.div(x, y, rounding_mode="trunc")
    return x / y


_BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "real_div": _div,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "floor_div": lambda x, y: torch.div(x, y, rounding_mode="floor"),
    "mod": torch.remainder,  # MIL mod follows the sign of the divisor (Python / numpy semantics)
    "equal": torch.eq,
    "not_equal": torch.ne,
    "less": torch.lt,
    "less_equal": torch.le,
    "greater": torch.gt,
    "greater_equal": torch.ge,
    "logical_and": torch.logical_and,
    "logical_or": torch.logical_or,
    "logical_xor": torch.logical_xor,
}
for _name, _fn in _BINARY.items():
    register(_name)(_binary(_fn))


def _unary(fn):
    return lambda a: fn(a.t("x"))


_UNARY = {
    "abs": torch.abs,
    "acos": torch.acos,
    "asin": torch.asin,
    "atan": torch.atan,
    "atanh": torch.atanh,
    "ceil": torch.ceil,
    "cos": torch.cos,
    "cosh": torch.cosh,
    "erf": torch.erf,
    "exp": torch.exp,
    "exp2": torch.exp2,
    "floor": torch.floor,
    "logical_not": torch.logical_not,
    "sign": torch.sign,
    "sin": torch.sin,
    "sinh": torch.sinh,
    "sqrt": torch.sqrt,
    "square": torch.square,
    "tan": torch.tan,
    "tanh": torch.tanh,
    "identity": lambda x: x,
    "round": torch.round,  # MIL round: half to even, like torch.round
}
for _name, _fn in _UNARY.items():
    register(_name)(_unary(_fn))


@register("inverse")
def _inverse(a: OpArgs) -> torch.Tensor:
    return 1.0 / (a.t("x") + a.float("epsilon", 1e-4))


@register("log")
def _log(a: OpArgs) -> torch.Tensor:
    return torch.log(a.t("x") + a.float("epsilon", 1e-45))


@register("rsqrt")
def _rsqrt(a: OpArgs) -> torch.Tensor:
    return torch.rsqrt(a.t("x") + a.float("epsilon", 1e-12))


@register("clip")
def _clip(a: OpArgs) -> torch.Tensor:
    return torch.clamp(a.t("x"), min=a.t("alpha"), max=a.t("beta"))


@register("threshold")
def _threshold(a: OpArgs) -> torch.Tensor:
    return torch.clamp(a.t("x"), min=a.float("alpha"))


@register("select")
def _select(a: OpArgs) -> torch.Tensor:
    return torch.where(a.t("cond").bool(), a.t("a"), a.t("b"))


@register("cast")
def _cast(a: OpArgs) -> torch.Tensor:
    # the executor rounds / converts every output to its declared dtype; a float -> int cast truncates
    # toward zero in MIL, as in torch
    dtype = a.str("dtype")
    x = a.t("x")
    target = torch_dtype(dtype)
    return x.to(target) if target is not torch.float32 else x.float()
