"""reduce_* ops (``axes`` None reduces every axis; ``keep_dims`` keeps them as size 1)."""

from __future__ import annotations

import torch

from ._args import OpArgs
from ._registry import register


def _reducer(fn):
    def run(a: OpArgs) -> torch.Tensor:
        x = a.t("x")
        axes = a.ints("axes")
        dims = tuple(range(x.dim())) if axes is None else tuple(ax % x.dim() for ax in axes)
        return fn(x, dims, a.bool("keep_dims"))

    return run


def _amax(x, d, k):
    return torch.amax(x, dim=d, keepdim=k)


def _amin(x, d, k):
    return torch.amin(x, dim=d, keepdim=k)


def _prod(x, d, k):
    for ax in sorted(d, reverse=True):
        x = torch.prod(x, dim=ax, keepdim=k)
    return x


_REDUCERS = {
    "reduce_mean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "reduce_sum": lambda x, d, k: torch.sum(x, dim=d, keepdim=k),
    "reduce_max": _amax,
    "reduce_min": _amin,
    "reduce_prod": _prod,
    "reduce_l1_norm": lambda x, d, k: torch.sum(torch.abs(x), dim=d, keepdim=k),
    "reduce_l2_norm": lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k)),
    "reduce_sum_square": lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k),
    "reduce_log_sum": lambda x, d, k: torch.log(torch.sum(x, dim=d, keepdim=k)),
    "reduce_log_sum_exp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
}
for _name, _fn in _REDUCERS.items():
    register(_name)(_reducer(_fn))


def _arg(fn):
    def run(a: OpArgs) -> torch.Tensor:
        return fn(a.t("x"), dim=a.int("axis", -1), keepdim=a.bool("keep_dims")).to(torch.int32)

    return run


register("reduce_argmax")(_arg(torch.argmax))
register("reduce_argmin")(_arg(torch.argmin))
