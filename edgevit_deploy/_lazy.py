"""Lazy imports of heavy optional backends with an 'install extra X' error."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingBackendError


def require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised through monkeypatching in tests
        raise MissingBackendError(module, extra, detail=str(exc)) from exc
