"""Converters (one module per target) behind one interface, and the table of targets."""

from __future__ import annotations

from .base import ArtifactMetadata, Converter, ExportOptions, Layout, Precision, QuantMode, Target
from .table import TARGETS, TargetSpec, get_spec, target_names

__all__ = [
    "TARGETS",
    "ArtifactMetadata",
    "Converter",
    "ExportOptions",
    "Layout",
    "Precision",
    "QuantMode",
    "Target",
    "TargetSpec",
    "get_spec",
    "target_names",
]
