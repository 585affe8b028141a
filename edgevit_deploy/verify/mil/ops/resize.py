"""Spatial resampling of the last two axes: upsample_* / resize_* (nearest and bilinear)."""

from __future__ import annotations

import math

import torch

from ._args import OpArgs
from ._registry import register


def _nearest(x: torch.Tensor, dim: int, out: int, scale: float) -> torch.Tensor:
    size = x.shape[dim]
    idx = torch.clamp(torch.floor(torch.arange(out, dtype=torch.float64) / scale).long(), 0, size - 1)
    return x.index_select(dim, idx)


def _linear(x: torch.Tensor, dim: int, coords: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along ``dim`` at (clamped) float source coordinates."""
    size = x.shape[dim]
    coords = torch.clamp(coords, 0, size - 1)
    lo = torch.floor(coords).long()
    hi = torch.clamp(lo + 1, max=size - 1)
    frac = (coords - lo).to(torch.float32)
    shape = [1] * x.dim()
    shape[dim] = -1
    frac = frac.reshape(shape)
    return x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac


@register("upsample_nearest_neighbor")
def _upsample_nearest(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    for dim, key in ((-2, "scale_factor_height"), (-1, "scale_factor_width")):
        s = a.float(key, 1.0)
        x = _nearest(x, x.dim() + dim, math.floor(x.shape[dim] * s), s)
    return x


@register("resize_nearest_neighbor")
def _resize_nearest(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    for dim, key in ((-2, "target_size_height"), (-1, "target_size_width")):
        out = a.int(key)
        x = _nearest(x, x.dim() + dim, out, out / x.shape[dim])
    return x


@register("upsample_bilinear")
def _upsample_bilinear(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    align = a.bool("align_corners")
    half = a.bool("half_pixel_centers", not align)
    for dim, key in ((-2, "scale_factor_height"), (-1, "scale_factor_width")):
        s = a.float(key, 1.0)
        size = x.shape[dim]
        out = math.floor(size * s)
        i = torch.arange(out, dtype=torch.float64)
        if align:
            coords = i * ((size - 1) / (out - 1)) if out > 1 else torch.zeros(out, dtype=torch.float64)
        elif half:
            coords = (i + 0.5) / s - 0.5
        else:
            coords = i / s
        x = _linear(x, x.dim() + dim, coords)
    return x


def _sampling_coords(mode: str, size: int, out: int) -> torch.Tensor:
    i = torch.arange(out, dtype=torch.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if out == 1:
            return torch.full((1,), (size - 1) / 2 if mode == "STRICT_ALIGN_CORNERS" else 0.0, dtype=torch.float64)
        return i * ((size - 1) / (out - 1))
    if mode == "DEFAULT":
        return i * (size / out)
    if mode == "OFFSET_CORNERS":
        delta = max(1, size - 1) / out
        spacing = ((out - 1) * delta) / (out - 1) if out > 1 else 0.0
        return delta / 2 + i * spacing
    if mode == "UNALIGN_CORNERS":
        return (i + 0.5) * (size / out) - 0.5
    raise ValueError(f"resize_bilinear: unknown sampling_mode {mode!r}")


@register("resize_bilinear")
def _resize_bilinear(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    mode = a.str("sampling_mode", "DEFAULT")
    for dim, key in ((-2, "target_size_height"), (-1, "target_size_width")):
        x = _linear(x, x.dim() + dim, _sampling_coords(mode, x.shape[dim], a.int(key)))
    return x
