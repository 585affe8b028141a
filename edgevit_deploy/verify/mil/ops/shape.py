"""Layout MIL ops: reshape, transpose, slicing, concat / split / stack, pad, gather, tile..."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ._args import OpArgs
from ._registry import register


def channel_view(v: torch.Tensor, rank: int) -> torch.Tensor:
    """A per-channel vector (C,) shaped to broadcast over axis 1 of a rank-``rank`` tensor."""
    return v.reshape((1, -1) + (1,) * (rank - 2)) if v.dim() == 1 and rank >= 2 else v


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


@register("reshape")
def _reshape(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(a.ints("shape"))]  # 0 copies the dim
    return x.reshape(shape)


@register("reshape_like")
def _reshape_like(a: OpArgs) -> torch.Tensor:
    x, refs = a.t("x"), a.ts("ref_tensors")
    begins, ends, end_masks = a.ints("begins"), a.ints("ends"), a.bools("end_masks")
    shape: list[int] = []
    for ref, b, e, m in zip(refs, begins, ends, end_masks):
        shape += list(ref.shape[b:] if m else ref.shape[b:e])
    return x.reshape(shape)


@register("transpose")
def _transpose(a: OpArgs) -> torch.Tensor:
    return a.t("x").permute(a.ints("perm"))


@register("flatten2d")
def _flatten2d(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    axis = _axis(a.int("axis", 1), x.dim())
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


@register("squeeze")
def _squeeze(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    axes = a.ints("axes")
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    dropped = {_axis(ax, x.dim()) for ax in axes}
    return x.reshape([d for i, d in enumerate(x.shape) if i not in dropped])


@register("expand_dims")
def _expand_dims(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    axes = a.ints("axes")
    out_rank = x.dim() + len(axes)
    for ax in sorted(_axis(ax, out_rank) for ax in axes):
        x = x.unsqueeze(ax)
    return x


def _slice_dim(x: torch.Tensor, dim: int, sl: slice) -> torch.Tensor:
    idx = range(*sl.indices(x.shape[dim]))
    if sl.step is not None and sl.step < 0:
        return x.index_select(dim, torch.tensor(list(idx), dtype=torch.long))
    return x.narrow(dim, idx.start, len(idx)) if idx.step == 1 else x[(slice(None),) * dim + (sl,)]


@register("slice_by_index")
def _slice_by_index(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    r = x.dim()
    begin, end = a.ints("begin"), a.ints("end")
    stride = a.ints("stride", (1,) * r)
    bmask, emask = a.bools("begin_mask", (False,) * r), a.bools("end_mask", (False,) * r)
    squeeze = a.bools("squeeze_mask", (False,) * r)
    squeezed: list[int] = []
    for d in range(r):
        if squeeze[d]:
            i = begin[d] + x.shape[d] if begin[d] < 0 else begin[d]
            x = x.narrow(d, i, 1)
            squeezed.append(d)
            continue
        b = None if bmask[d] else begin[d]
        e = None if emask[d] else end[d]
        if b is None and e is None and stride[d] == 1:
            continue
        x = _slice_dim(x, d, slice(b, e, stride[d]))
    return x.reshape([s for d, s in enumerate(x.shape) if d not in squeezed]) if squeezed else x


@register("slice_by_size")
def _slice_by_size(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    for d, (b, s) in enumerate(zip(a.ints("begin"), a.ints("size"))):
        b = b + x.shape[d] if b < 0 else b
        x = x.narrow(d, b, x.shape[d] - b if s == -1 else s)
    return x


@register("concat")
def _concat(a: OpArgs) -> torch.Tensor:
    values = a.ts("values")
    axis = _axis(a.int("axis"), values[0].dim())
    if not a.bool("interleave"):
        return torch.cat(values, dim=axis)
    stacked = torch.stack(values, dim=axis + 1)  # (..., n, k, ...) -> interleave slices
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


@register("split")
def _split(a: OpArgs) -> tuple[torch.Tensor, ...]:
    x = a.t("x")
    axis = _axis(a.int("axis"), x.dim())
    sizes = a.ints("split_sizes")
    if sizes is None:
        n = a.int("num_splits")
        sizes = (x.shape[axis] // n,) * n
    return tuple(torch.split(x, list(sizes), dim=axis))


@register("stack")
def _stack(a: OpArgs) -> torch.Tensor:
    values = a.ts("values")
    return torch.stack(values, dim=_axis(a.int("axis"), values[0].dim() + 1))


_PAD_MODES: dict[str, Literal["reflect", "edge", "symmetric"]] = {
    "reflect": "reflect",
    "replicate": "edge",
    "symmetric": "symmetric",
}


@register("pad")
def _pad(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    pad = a.ints("pad")
    mode = a.str("mode", "constant")
    k = len(pad) // 2
    first = x.dim() - k  # pad covers the last k axes, first axis first
    if mode == "constant":
        torch_pad: list[int] = []
        for i in reversed(range(k)):
            torch_pad += [pad[2 * i], pad[2 * i + 1]]
        return F.pad(x, torch_pad, mode="constant", value=a.float("constant_val", 0.0))
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: unknown mode {mode!r}")
    for i in range(k):
        b, e = pad[2 * i], pad[2 * i + 1]
        if b or e:
            idx = np.pad(np.arange(x.shape[first + i]), (b, e), mode=_PAD_MODES[mode])
            x = x.index_select(first + i, torch.from_numpy(idx))
    return x


@register("tile")
def _tile(a: OpArgs) -> torch.Tensor:
    return a.t("x").repeat(a.ints("reps"))


def _wrap(indices: torch.Tensor, size: int) -> torch.Tensor:
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


@register("gather")
def _gather(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    axis = _axis(a.int("axis", 0), x.dim())
    batch_dims = a.int("batch_dims", 0)
    idx = _wrap(a.t("indices"), x.shape[axis])

    def take(xx: torch.Tensor, ii: torch.Tensor, ax: int) -> torch.Tensor:
        flat = xx.index_select(ax, ii.reshape(-1))
        return flat.reshape(tuple(xx.shape[:ax]) + tuple(ii.shape) + tuple(xx.shape[ax + 1 :]))

    if batch_dims == 0:
        return take(x, idx, axis)
    lead = x.shape[:batch_dims]
    xb = x.reshape((-1,) + tuple(x.shape[batch_dims:]))
    ib = idx.reshape((-1,) + tuple(idx.shape[batch_dims:]))
    outs = [take(xb[i], ib[i], axis - batch_dims) for i in range(xb.shape[0])]
    return torch.stack(outs).reshape(tuple(lead) + tuple(outs[0].shape))


@register("gather_along_axis")
def _gather_along_axis(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    axis = _axis(a.int("axis", 0), x.dim())
    return torch.gather(x, axis, _wrap(a.t("indices"), x.shape[axis]))


@register("gather_nd")
def _gather_nd(a: OpArgs) -> torch.Tensor:
    x, idx = a.t("x"), a.t("indices").long()
    batch_dims = a.int("batch_dims", 0)
    if batch_dims:
        raise ValueError("gather_nd with batch_dims > 0 is not implemented")
    k = idx.shape[-1]
    flat = idx.reshape(-1, k)
    picked = x[tuple(flat[:, j] for j in range(k))]
    return picked.reshape(tuple(idx.shape[:-1]) + tuple(x.shape[k:]))


@register("shape")
def _shape(a: OpArgs) -> torch.Tensor:
    return torch.tensor(list(a.t("x").shape), dtype=torch.int32)


@register("fill")
def _fill(a: OpArgs) -> torch.Tensor:
    return torch.full(a.ints("shape"), a.float("value", 0.0))


@register("fill_like")
def _fill_like(a: OpArgs) -> torch.Tensor:
    return torch.full(tuple(a.t("ref_tensor").shape), a.float("value", 0.0))


@register("range_1d")
def _range_1d(a: OpArgs) -> torch.Tensor:
    return torch.arange(a.v("start"), a.v("end"), a.v("step"))


@register("reverse")
def _reverse(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    axes = a.ints("axes")
    return torch.flip(x, dims=list(range(x.dim())) if axes is None else list(axes))


@register("depth_to_space")
def _depth_to_space(a: OpArgs) -> torch.Tensor:
    x, bs = a.t("x"), a.int("block_size")
    n, c, h, w = x.shape
    x = x.reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)  # DCR, as TensorFlow
    return x.reshape(n, c // (bs * bs), h * bs, w * bs)


@register("space_to_depth")
def _space_to_depth(a: OpArgs) -> torch.Tensor:
    x, bs = a.t("x"), a.int("block_size")
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(n, c * bs * bs, h // bs, w // bs)


@register("pixel_shuffle")
def _pixel_shuffle(a: OpArgs) -> torch.Tensor:
    return F.pixel_shuffle(a.t("x"), a.int("upscale_factor"))


@register("pixel_unshuffle")
def _pixel_unshuffle(a: OpArgs) -> torch.Tensor:
    return F.pixel_unshuffle(a.t("x"), a.int("downscale_factor"))


@register("topk")
def _topk(a: OpArgs) -> tuple[torch.Tensor, torch.Tensor]:
    x = a.t("x")
    values, indices = torch.topk(x, a.int("k", 1), dim=a.int("axis", -1), largest=not a.bool("ascending"))
    return values, indices.to(torch.int32)


@register("argsort")
def _argsort(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    return torch.argsort(x, dim=a.int("axis", -1), descending=not a.bool("ascending"), stable=True)


@register("cumsum")
def _cumsum(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    axis = _axis(a.int("axis", 0), x.dim())
    if a.bool("reverse"):
        x = x.flip(axis)
    out = torch.cumsum(x, dim=axis)
    if a.bool("exclusive"):
        out = out - x
    return out.flip(axis) if a.bool("reverse") else out


@register("band_part")
def _band_part(a: OpArgs) -> torch.Tensor:
    x = a.t("x")
    lower, upper = a.int("lower", -1), a.int("upper", -1)
    m, n = x.shape[-2], x.shape[-1]
    i = torch.arange(m).reshape(-1, 1)
    j = torch.arange(n).reshape(1, -1)
    keep = ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))
    return torch.where(keep, x, torch.zeros_like(x))


@register("one_hot")
def _one_hot(a: OpArgs) -> torch.Tensor:
    idx = a.t("indices").long()
    depth = a.int("one_hot_vector_size")
    axis = a.int("axis", -1)
    on, off = a.float("on_value", 1.0), a.float("off_value", 0.0)
    hot = F.one_hot(idx.clamp(min=0), depth).bool() & (idx >= 0).unsqueeze(-1)
    out = torch.where(hot, torch.tensor(on), torch.tensor(off))
    return out.movedim(-1, _axis(axis, out.dim()))
