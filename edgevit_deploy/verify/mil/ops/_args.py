"""What an op implementation sees: its named inputs, as torch tensors or static Python values."""

from __future__ import annotations

import builtins
from typing import Any, overload

import numpy as np
import torch


def as_tensor(value: Any) -> torch.Tensor:
    """Python / numpy value -> torch tensor; floats become float32 (every float is held as float32)."""
    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return torch.from_numpy(np.array(arr, dtype=np.float32))
    if arr.dtype == np.uint16 or arr.dtype == np.uint32:
        arr = arr.astype(np.int64)
    return torch.from_numpy(np.array(arr))


def to_static(value: Any) -> Any:
    """Runtime tensor -> numpy (or a Python scalar for 0-d)."""
    if isinstance(value, torch.Tensor):
        arr = value.detach().numpy()
        return arr.item() if arr.ndim == 0 else arr
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


class OpArgs:
    """Named inputs of one op. ``names`` maps an input name to a variable name (or a tuple of names
    for variadic inputs such as ``concat.values``); ``env`` holds every variable's current value.

    The typed accessors (``int``, ``float``, ``str``, ``bools``) return ``default`` for an absent input.
    Called without a default they read a required input and are typed as present (a program missing it
    fails inside the op, which the executor reports); pass ``None`` explicitly for an optional input.
    The methods are named after the builtins, so annotations in this class spell ``builtins.int`` etc."""

    __slots__ = ("env", "names", "op_name", "op_type", "out_dtypes")

    def __init__(
        self, op_type: str, op_name: str, names: dict[str, Any], env: dict[str, Any], out_dtypes: tuple[str, ...]
    ):
        self.op_type = op_type
        self.op_name = op_name
        self.names = names
        self.env = env
        self.out_dtypes = out_dtypes

    def has(self, key: str) -> bool:
        return key in self.names

    def raw(self, key: str) -> Any:
        name = self.names[key]
        return [self.env[n] for n in name] if isinstance(name, tuple) else self.env[name]

    def t(self, key: str) -> torch.Tensor:
        return as_tensor(self.raw(key))

    def ts(self, key: str) -> list[torch.Tensor]:
        return [as_tensor(self.env[n]) for n in self.names[key]]

    def opt_t(self, key: str) -> torch.Tensor | None:
        return self.t(key) if key in self.names else None

    def v(self, key: str, default: Any = None) -> Any:
        if key not in self.names:
            return default
        raw = self.raw(key)
        return [to_static(r) for r in raw] if isinstance(self.names[key], tuple) else to_static(raw)

    @overload
    def int(self, key: builtins.str) -> builtins.int: ...
    @overload
    def int(self, key: builtins.str, default: builtins.int) -> builtins.int: ...
    @overload
    def int(self, key: builtins.str, default: None) -> builtins.int | None: ...
    def int(self, key: builtins.str, default: builtins.int | None = None) -> builtins.int | None:
        val = self.v(key)
        return default if val is None else builtins.int(val)

    @overload
    def float(self, key: builtins.str) -> builtins.float: ...
    @overload
    def float(self, key: builtins.str, default: builtins.float) -> builtins.float: ...
    @overload
    def float(self, key: builtins.str, default: None) -> builtins.float | None: ...
    def float(self, key: builtins.str, default: builtins.float | None = None) -> builtins.float | None:
        val = self.v(key)
        return default if val is None else builtins.float(val)

    def bool(self, key: builtins.str, default: builtins.bool = False) -> builtins.bool:
        val = self.v(key)
        return default if val is None else builtins.bool(val)

    @overload
    def str(self, key: builtins.str) -> builtins.str: ...
    @overload
    def str(self, key: builtins.str, default: builtins.str) -> builtins.str: ...
    @overload
    def str(self, key: builtins.str, default: None) -> builtins.str | None: ...
    def str(self, key: builtins.str, default: builtins.str | None = None) -> builtins.str | None:
        val = self.v(key)
        return default if val is None else builtins.str(val)

    def ints(self, key: builtins.str, default: tuple[builtins.int, ...] | None = None) -> tuple[builtins.int, ...]:
        val = self.v(key)
        if val is None:
            return default  # type: ignore[return-value]
        return tuple(builtins.int(i) for i in np.atleast_1d(np.asarray(val)).tolist())

    @overload
    def bools(self, key: builtins.str) -> tuple[builtins.bool, ...]: ...
    @overload
    def bools(self, key: builtins.str, default: tuple[builtins.bool, ...]) -> tuple[builtins.bool, ...]: ...
    @overload
    def bools(self, key: builtins.str, default: None) -> tuple[builtins.bool, ...] | None: ...
    def bools(
        self, key: builtins.str, default: tuple[builtins.bool, ...] | None = None
    ) -> tuple[builtins.bool, ...] | None:
        val = self.v(key)
        if val is None:
            return default
        return tuple(builtins.bool(b) for b in np.atleast_1d(np.asarray(val)).tolist())

    @property
    def out_dtype(self) -> builtins.str:
        return self.out_dtypes[0]
