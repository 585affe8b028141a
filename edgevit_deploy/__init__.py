"""edgevit-deploy: efficient vision backbones from PyTorch to phones (Core ML, TFLite, ONNX).

Importing the package is light (no torch): the public names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .converters import ExportOptions, Precision, QuantMode, Target
    from .export_api import ArtifactResult, ExportResult, export
    from .models import create_model, get_model_config, list_models, register_model
    from .verify.artifact import verify_artifact

_LAZY = {
    "create_model": "models",
    "get_model_config": "models",
    "list_models": "models",
    "register_model": "models",
    "export": "export_api",
    "ExportResult": "export_api",
    "ArtifactResult": "export_api",
    "verify_artifact": "verify.artifact",
    "ExportOptions": "converters",
    "Target": "converters",
    "Precision": "converters",
    "QuantMode": "converters",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
