"""Imports every architecture module so that its factories register. One line per file."""
from __future__ import annotations

from . import edgevit  # noqa: F401
