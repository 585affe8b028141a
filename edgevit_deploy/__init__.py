"""edgevit-deploy: efficient vision backbones from PyTorch to phones (Core ML, TFLite, ONNX)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .models import create_model, get_model_config, list_models, register_model

if TYPE_CHECKING:
    from .export_api import ExportResult, export
    from .verify.artifact import verify_artifact

__all__ = ["ExportResult", "__version__", "create_model", "export", "get_model_config", "list_models",
           "register_model", "verify_artifact"]


def __getattr__(name: str) -> Any:  # lazy: importing the package stays light
    if name in ("export", "ExportResult", "ArtifactResult"):
        import importlib

        return getattr(importlib.import_module(f"{__name__}.export_api"), name)
    if name == "verify_artifact":
        from .verify.artifact import verify_artifact

        return verify_artifact
    if name in ("ExportOptions", "Target", "Precision", "QuantMode"):
        from . import converters

        return getattr(converters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
