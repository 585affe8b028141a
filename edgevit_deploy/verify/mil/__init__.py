"""Reference executor for Core ML ML Programs: runs a saved ``.mlpackage`` op by op on any OS.

``ReferenceExecutor(path).run_normalised(x)`` gives the program's scores for a normalised NCHW batch;
``.predict(feeds)`` runs it on named inputs. See docs/coreml_reference.md.
"""

from __future__ import annotations

from .errors import MilExecutorError, MilOpExecutionError, MilProgramError, UnsupportedMilOpError
from .executor import ReferenceExecutor
from .ops import supported_ops
from .program import MilPackage, load_package

__all__ = [
    "MilExecutorError",
    "MilOpExecutionError",
    "MilPackage",
    "MilProgramError",
    "ReferenceExecutor",
    "UnsupportedMilOpError",
    "load_package",
    "supported_ops",
]
