"""An addition to litert-torch's layout pass (NCHW PyTorch graphs -> NHWC TFLite ops): a channels-last rewrite
of ``aten.constant_pad_nd``, which litert-torch 0.10 does not have.

Without it a zero pad in a channels-last region is done in NCHW, between two TRANSPOSE ops. In a float
model TFLite's optimizer folds those transposes and the pad into the next convolution's SAME padding, so
nothing is lost; in an int8 model the quantized transposes stay: EfficientNet-Lite's strided "same"
convolutions (timm's ``Conv2dSame``: ``F.pad`` then an unpadded conv) left 9 int8 TRANSPOSEs and 5 PADs in
the .tflite, and int8 ran at 0.64x fp32. With the pad rewritten to NHWC they are gone (1 PAD, 1 TRANSPOSE,
as in fp32): 0.55x fp32, same outputs (``benchmarks/quant_speed.py``, docs/quantization.md "Speed").

Installed by the TFLite converter and the TFLite int8 path before they call ``litert_torch.convert``; a
litert-torch that has its own rewrite for the op keeps it. Exact: a pad of the same values on permuted axes.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

_aten = torch.ops.aten


def constant_pad_nd_nhwc(x: torch.Tensor, pad: Any, value: float = 0.0) -> torch.Tensor:
    """``aten.constant_pad_nd`` of an NCHW pad list (last axis first: W, H, C, N) applied to the same tensor
    held as NHWC (last axis first: C, W, H, N)."""
    p = [*pad, *[0] * (8 - len(pad))]
    w0, w1, h0, h1, c0, c1, n0, n1 = p
    return _aten.constant_pad_nd(x, [c0, c1, w0, w1, h0, h1, n0, n1], value)


def install_layout_rewrites() -> bool:
    """Register :func:`constant_pad_nd_nhwc` with litert-torch's layout pass (once per process). Returns whether
    it was added (False: litert-torch has a rewrite of its own, or it was installed before)."""
    from litert_torch._convert.fx_passes.optimize_layout_transposes_pass import layout_rewrite

    if _aten.constant_pad_nd.default in layout_rewrite.rewriters:
        return False

    @layout_rewrite.rewriters.register(_aten.constant_pad_nd)
    def _constant_pad_nd(node: torch.fx.Node) -> None:
        node.target = constant_pad_nd_nhwc

    log.debug("litert-torch layout pass: constant_pad_nd rewritten to NHWC")
    return True
