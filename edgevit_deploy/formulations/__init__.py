"""Export-friendly formulations: numerically equal module rewrites, chosen per target at export time.

A converter or runtime often handles one spelling of an op far better than another (XNNPACK does not
delegate grouped transposed convolutions; onnxruntime has a good kernel for them). Rather than change the
model, each target's row in the table names a *formulation* (:mod:`.registry`); the rewrites live in
:mod:`.rewrites` (generic) and :mod:`.zoo` (the model zoo's), each proven equal by a test.
"""

from __future__ import annotations

from .registry import EVERY_TARGET, RegisteredRewrite, Rewrite, apply_formulations, register_rewrite, rewrites_for
from .rewrites import DepthwiseUpsampleConv, Inert, StridedSample

__all__ = [
    "EVERY_TARGET",
    "DepthwiseUpsampleConv",
    "Inert",
    "RegisteredRewrite",
    "Rewrite",
    "StridedSample",
    "apply_formulations",
    "register_rewrite",
    "rewrites_for",
]
