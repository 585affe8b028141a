"""What an op implementation sees: its named inputs, as torch tensors or static Python values."""

from __future__ import annotations

from typing import Any

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
    for variadic inputs such as ``concat.values``); ``env`` holds every variable's current value."""

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

    def int(self, key: str, default: int | None = None) -> int:
        val = self.v(key)
        return default if val is None else int(val)

    def float(self, key: str, default: float | None = None) -> float:
        val = self.v(key)
        return default if val is None else float(val)

    def bool(self, key: str, default: bool = False) -> bool:
        val = self.v(key)
        return default if val is None else bool(val)

    def str(self, key: str, default: str | None = None) -> str:
        val = self.v(key)
        return default if val is None else str(val)

    def ints(self, key: str, default: tuple[int, ...] | None = None) -> tuple[int, ...]:
        val = self.v(key)
        if val is None:
            return default  # type: ignore[return-value]
        return tuple(int(i) for i in np.atleast_1d(np.asarray(val)).tolist())

    def bools(self, key: str, default: tuple[bool, ...] | None = None) -> tuple[bool, ...] | None:
        val = self.v(key)
        if val is None:
            return default
        return tuple(bool(b) for b in np.atleast_1d(np.asarray(val)).tolist())

    @property
    def out_dtype(self) -> str:
        return self.out_dtypes[0]
