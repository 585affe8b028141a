"""PT2E calibration shared by the TFLite and Core ML W8A8 routes (torchao's prepare / convert)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from .._lazy import require

log = logging.getLogger(__name__)


def calibrate_pt2e(model: nn.Module, example: torch.Tensor, quantizer, data: np.ndarray,
                   fold_quantize: bool = True) -> torch.fx.GraphModule:
    """Export ``model``, insert the quantizer's observers, run ``data`` one image at a time, convert."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "quant")
    graph = torch.export.export(model.eval(), (example,)).module()
    prepared = pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i in range(len(data)):
            prepared(torch.from_numpy(np.ascontiguousarray(data[i:i + 1], dtype=np.float32)))
    log.info("PT2E: calibrated on %d images", len(data))
    return pt2e.convert_pt2e(prepared, fold_quantize=fold_quantize)
