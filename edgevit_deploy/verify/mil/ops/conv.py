"""Convolution and pooling MIL ops (1-3 spatial dims), with MIL's pad types."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._args import OpArgs
from ._registry import register
from .shape import channel_view

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
# mixed signatures (only avg_pool2d / 3d take divisor_override): typed as plain callables
_AVG: dict[int, Callable[..., torch.Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def spatial_pads(pad_type: str, in_sizes, kernel, strides, dilations, custom) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim, as MIL defines ``valid`` / ``same`` / ``same_lower`` /
    ``custom`` (same: output = ceil(in / stride); the odd pixel goes after, or before for same_lower)."""
    pads = []
    for d, size in enumerate(in_sizes):
        if pad_type == "valid":
            pads.append((0, 0))
        elif pad_type in ("same", "same_lower"):
            k_eff = (kernel[d] - 1) * dilations[d] + 1
            s = strides[d]
            total = max(0, s * math.ceil(size / s) - size + k_eff - s)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if pad_type == "same" else (big, small))
        elif pad_type == "custom":
            pads.append((custom[2 * d], custom[2 * d + 1]))
        else:
            raise ValueError(f"unknown pad_type {pad_type!r}")
    return pads


def _torch_pad(pads: list[tuple[int, int]]) -> list[int]:
    out: list[int] = []
    for b, e in reversed(pads):
        out += [b, e]
    return out


def _geometry(a: OpArgs, x: torch.Tensor, kernel) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int]]]:
    nd = x.dim() - 2
    strides = a.ints("strides", (1,) * nd)
    dilations = a.ints("dilations", (1,) * nd)
    pads = spatial_pads(
        a.str("pad_type", "valid"), x.shape[2:], kernel, strides, dilations, a.ints("pad", (0,) * (2 * nd))
    )
    return strides, dilations, pads


@register("conv")
def _conv(a: OpArgs) -> torch.Tensor:
    x, w = a.t("x"), a.t("weight")
    nd = x.dim() - 2
    strides, dilations, pads = _geometry(a, x, w.shape[2:])
    if all(b == e for b, e in pads):
        padding = tuple(b for b, _ in pads)
    else:
        x = F.pad(x, _torch_pad(pads))
        padding = (0,) * nd
    return _CONV[nd](x, w, a.opt_t("bias"), strides, padding, dilations, a.int("groups", 1))


@register("conv_transpose")
def _conv_transpose(a: OpArgs) -> torch.Tensor:
    x, w = a.t("x"), a.t("weight")  # weight: (C_in, C_out / groups, *K)
    nd = x.dim() - 2
    strides = a.ints("strides", (1,) * nd)
    dilations = a.ints("dilations", (1,) * nd)
    full = _CONV_T[nd](x, w, a.opt_t("bias"), strides, 0, 0, a.int("groups", 1), dilations)
    pad_type = a.str("pad_type", "valid")
    custom = a.ints("pad", (0,) * (2 * nd))
    out_shape = a.ints("output_shape")
    for d in range(nd):
        size = full.shape[2 + d]
        if pad_type == "same":
            crop = size - x.shape[2 + d] * strides[d]
            begin, end = crop // 2, crop - crop // 2
        elif pad_type == "custom":
            begin, end = custom[2 * d], custom[2 * d + 1]
        else:
            begin, end = 0, 0
        want = out_shape[2 + d] if out_shape is not None else size - begin - end
        full = full.narrow(2 + d, begin, min(want, size - begin))
        if full.shape[2 + d] < want:  # output_shape larger than the full result: zeros after
            extra = [0, 0] * (nd - 1 - d) + [0, want - full.shape[2 + d]]
            full = F.pad(full, extra)
    return full


def _pool_pads(a: OpArgs, x: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int]], list[int]]:
    """kernel, strides, explicit pads and the extra right padding ceil_mode needs, per spatial dim."""
    nd = x.dim() - 2
    kernel = a.ints("kernel_sizes")
    strides = a.ints("strides", (1,) * nd)
    pads = spatial_pads(
        a.str("pad_type", "valid"), x.shape[2:], kernel, strides, (1,) * nd, a.ints("pad", (0,) * (2 * nd))
    )
    ceil_mode = a.bool("ceil_mode")
    extra = []
    for d in range(nd):
        size, (b, e), k, s = x.shape[2 + d], pads[d], kernel[d], strides[d]
        total = size + b + e
        if ceil_mode:
            out = math.floor((total - k + s - 1) / s + 1)
            if (out - 1) * s >= size + (b + e) / 2 and (b + e) > 0:
                out -= 1
        else:
            out = math.floor((total - k) / s + 1)
        extra.append(max(0, (out - 1) * s + k - total))
    return kernel, strides, pads, extra


@register("avg_pool")
def _avg_pool(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    nd = x.dim() - 2
    kernel, strides, pads, extra = _pool_pads(a, x)
    if not any(extra) and all(b == 0 and e == 0 for b, e in pads):
        return _AVG[nd](x, kernel, strides)
    full = [(b, e + x_) for (b, e), x_ in zip(pads, extra)]
    xp = F.pad(x, _torch_pad(full))
    summed = _AVG[nd](xp, kernel, strides, divisor_override=1) if nd > 1 else _AVG[nd](xp, kernel, strides) * kernel[0]
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    if a.bool("exclude_padding_from_average"):
        mask = F.pad(ones, _torch_pad(full))
    else:  # padding counts, but not the extra cells ceil_mode hangs past it
        mask = F.pad(F.pad(ones, _torch_pad(pads), value=1.0), _torch_pad([(0, x_) for x_ in extra]))
    counts = (
        _AVG[nd](mask, kernel, strides, divisor_override=1) if nd > 1 else _AVG[nd](mask, kernel, strides) * kernel[0]
    )
    return summed / counts


@register("max_pool")
def _max_pool(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    nd = x.dim() - 2
    kernel, strides, pads, extra = _pool_pads(a, x)
    full = [(b, e + x_) for (b, e), x_ in zip(pads, extra)]
    xp = F.pad(x, _torch_pad(full), value=float("-inf")) if any(sum(p) for p in full) else x
    return _MAX[nd](xp, kernel, strides)


@register("l2_pool")
def _l2_pool(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    nd = x.dim() - 2
    kernel, strides, pads, extra = _pool_pads(a, x)
    full = [(b, e + x_) for (b, e), x_ in zip(pads, extra)]
    xp = F.pad(x * x, _torch_pad(full))
    summed = _AVG[nd](xp, kernel, strides) * math.prod(kernel)
    return torch.sqrt(summed)


@register("batch_norm")
def _batch_norm(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    r = x.dim()
    inv = torch.rsqrt(channel_view(a.t("variance"), r) + a.float("epsilon", 1e-5))
    y = (x - channel_view(a.t("mean"), r)) * inv
    if a.has("gamma"):
        y = y * channel_view(a.t("gamma"), r)
    if a.has("beta"):
        y = y + channel_view(a.t("beta"), r)
    return y


@register("instance_norm")
def _instance_norm(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    r = x.dim()
    dims = tuple(range(2, r))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    y = (x - mean) * torch.rsqrt(var + a.float("epsilon", 1e-5))
    if a.has("gamma"):
        y = y * channel_view(a.t("gamma"), r)
    if a.has("beta"):
        y = y + channel_view(a.t("beta"), r)
    return y
