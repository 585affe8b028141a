"""Imports every architecture module so that its factories register. One line per file."""
from __future__ import annotations

from . import edgevit  # noqa: F401
from . import efficientnet_lite  # noqa: F401
from . import timm_zoo  # noqa: F401
from . import efficientmod  # noqa: F401
from . import fcaformer  # noqa: F401
from . import mobilevig  # noqa: F401
from . import vcmamba  # noqa: F401
