"""The op table: MIL op type -> a function computing it on torch tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._args import OpArgs

OpFn = Callable[[OpArgs], Any]  # returns one value, or a tuple with one value per output

_OPS: dict[str, OpFn] = {}


def register(*op_types: str) -> Callable[[OpFn], OpFn]:
    def deco(fn: OpFn) -> OpFn:
        for op_type in op_types:
            if op_type in _OPS:
                raise ValueError(f"MIL op {op_type!r} registered twice")
            _OPS[op_type] = fn
        return fn

    return deco


def lookup(op_type: str) -> OpFn | None:
    return _OPS.get(op_type)


def supported_ops() -> list[str]:
    return sorted(_OPS)
