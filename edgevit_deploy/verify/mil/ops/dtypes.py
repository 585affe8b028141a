"""MIL dtype names and how the executor holds each one (every float as float32, rounded to the
declared precision)."""

from __future__ import annotations

import torch

_TORCH = {
    "fp16": torch.float32,
    "fp32": torch.float32,
    "fp64": torch.float32,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int16": torch.int16,
    "uint16": torch.int32,
    "int32": torch.int32,
    "uint32": torch.int64,
    "int64": torch.int64,
    "bool": torch.bool,
    "int4": torch.int8,
    "uint4": torch.uint8,
    "uint1": torch.uint8,
    "uint2": torch.uint8,
    "uint3": torch.uint8,
    "uint6": torch.uint8,
}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _TORCH[name]
    except KeyError:
        raise ValueError(f"unknown MIL dtype {name!r}") from None


def round_fp16(x: torch.Tensor) -> torch.Tensor:
    """Round float32 values to the nearest float16 (overflow becomes inf, as in fp16 hardware)."""
    return x.to(torch.float16).to(torch.float32)


def finalise(value, dtype: str, emulate_fp16: bool):
    """Bring an op's output to the representation of its declared MIL dtype."""
    if not isinstance(value, torch.Tensor):
        return value
    if dtype == "fp16":
        return round_fp16(value) if emulate_fp16 else value.float()
    if dtype in ("fp32", "fp64"):
        return value if value.dtype is torch.float32 else value.float()
    target = _TORCH.get(dtype)
    if target is None or value.dtype is target:
        return value
    return value.to(target)
