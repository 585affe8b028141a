"""Compressed weights (constexpr_*: evaluated once, at load) and activation quantize / dequantize."""

from __future__ import annotations

import numpy as np
import torch

from ._args import OpArgs
from ._registry import register
from .dtypes import torch_dtype

_INT_RANGE = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int4": (-8, 7),
    "uint4": (0, 15),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
}


def _along(v: torch.Tensor, axis: int | None, rank: int) -> torch.Tensor:
    """A scale / zero point: scalar, or a vector along ``axis``, or already broadcastable."""
    if v.dim() == 1 and rank > 1 and axis is not None:
        shape = [1] * rank
        shape[axis % rank] = -1
        return v.reshape(shape)
    return v


@register("constexpr_affine_dequantize")
def _affine_dequantize(a: OpArgs) -> torch.Tensor:
    q = a.t("quantized_data").float()
    axis = a.int("axis", 0)
    scale = _along(a.t("scale").float(), axis, q.dim())
    zero = _along(a.t("zero_point").float(), axis, q.dim())
    return (q - zero) * scale


def _blockwise(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat a per-block parameter (same rank as the data) up to the data's shape."""
    for ax, (n, g) in enumerate(zip(shape, param.shape)):
        if g != n:
            param = np.repeat(param, n // g, axis=ax)
    return param


@register("constexpr_blockwise_shift_scale")
def _blockwise_shift_scale(a: OpArgs) -> torch.Tensor:
    data = np.asarray(a.v("data"), dtype=np.float32)
    scale = _blockwise(np.asarray(a.v("scale"), dtype=np.float32), data.shape)
    if a.has("offset"):
        data = data - _blockwise(np.asarray(a.v("offset"), dtype=np.float32), data.shape)
    return torch.from_numpy(np.ascontiguousarray(data * scale))


def unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Little-endian bit-packed unsigned ints (the iOS16 constexpr layout) -> ``count`` values."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[: count * nbits]
    weights = (1 << np.arange(nbits)).astype(np.int64)
    return bits.reshape(count, nbits).astype(np.int64) @ weights


@register("constexpr_lut_to_dense")
def _lut_to_dense(a: OpArgs) -> torch.Tensor:
    lut = np.asarray(a.v("lut"))
    indices = np.asarray(a.v("indices"))
    if a.has("shape"):  # iOS16: one LUT, indices bit-packed
        shape = a.ints("shape")
        count = int(np.prod(shape))
        nbits = int(np.log2(lut.shape[-1]))
        idx = unpack_bits(indices, nbits, count) if indices.size != count else indices.reshape(-1)
        return torch.from_numpy(lut.reshape(-1)[idx].reshape(shape).astype(np.float32))
    # iOS18: lut [*groups, palettes, vector_size]; groups tile the output per axis
    k = indices.ndim
    vsize = lut.shape[-1]
    vaxis = a.int("vector_axis", 0) % k if vsize > 1 else None
    out_shape = [n * (vsize if ax == vaxis else 1) for ax, n in enumerate(indices.shape)]
    group = []
    for ax, n in enumerate(indices.shape):
        pos = np.arange(n) * (vsize if ax == vaxis else 1)
        block = out_shape[ax] // lut.shape[ax]
        group.append((pos // block).reshape([-1 if i == ax else 1 for i in range(k)]))
    vals = lut[tuple(group) + (indices.astype(np.int64),)]  # indices.shape + (vsize,)
    if vaxis is None:
        dense = vals[..., 0]
    else:
        dense = np.moveaxis(vals, -1, vaxis + 1).reshape(out_shape)
    return torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))


@register("constexpr_sparse_to_dense")
def _sparse_to_dense(a: OpArgs) -> torch.Tensor:
    data = np.asarray(a.v("nonzero_data"), dtype=np.float32)
    mask = np.asarray(a.v("mask"))
    if a.has("shape"):  # iOS16: bit-packed mask
        shape = a.ints("shape")
        mask = unpack_bits(mask, 1, int(np.prod(shape))).reshape(shape)
    dense = np.zeros(mask.shape, dtype=np.float32)
    dense[mask.astype(bool)] = data
    return torch.from_numpy(dense)


@register("constexpr_cast")
def _constexpr_cast(a: OpArgs) -> torch.Tensor:
    return a.t("source_val").float()


@register("quantize")
def _quantize(a: OpArgs) -> torch.Tensor:
    x = a.t("input")
    axis = a.int("axis", None)  # optional: per-tensor when absent
    dtype = a.str("output_dtype")
    lo, hi = _INT_RANGE[dtype]
    q = torch.round(x / _along(a.t("scale"), axis, x.dim()))
    if a.has("zero_point"):
        q = q + _along(a.t("zero_point").float(), axis, x.dim())
    return torch.clamp(q, lo, hi).to(torch_dtype(dtype))


@register("dequantize")
def _dequantize(a: OpArgs) -> torch.Tensor:
    x = a.t("input").float()
    axis = a.int("axis", None)  # optional: per-tensor when absent
    if a.has("zero_point"):
        x = x - _along(a.t("zero_point").float(), axis, x.dim())
    return x * _along(a.t("scale"), axis, x.dim())


@register("classify")
def _classify(a: OpArgs) -> tuple[list[str], torch.Tensor]:
    """Outputs: the top class label per sample, and the scores in class-index order."""
    probs = a.t("probabilities")
    classes = list(a.raw("classes"))
    flat = probs.reshape(-1, probs.shape[-1])
    labels = [classes[int(i)] for i in torch.argmax(flat, dim=-1)]
    return labels, probs
