"""Imports every architecture module so that its factories register. One line per file."""

from __future__ import annotations

from . import (
    edgevit,  # noqa: F401
    efficientmod,  # noqa: F401
    efficientnet_lite,  # noqa: F401
    fcaformer,  # noqa: F401
    mobilevig,  # noqa: F401
    timm_zoo,  # noqa: F401
    vcmamba,  # noqa: F401
)
