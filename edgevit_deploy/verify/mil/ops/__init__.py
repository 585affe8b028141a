"""MIL op implementations. Importing this package fills the op table."""

from __future__ import annotations

from . import activation, conv, elementwise, linalg, norm, quant, reduce, resize, shape
from ._args import OpArgs
from ._registry import lookup, register, supported_ops

__all__ = ["OpArgs", "lookup", "register", "supported_ops"]
