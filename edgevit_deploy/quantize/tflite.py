"""TFLite int8 through litert-torch's PT2E flow.

``int8``: full-integer. ``PT2EQuantizer`` with a symmetric, per-channel, static config; ``prepare_pt2e``;
calibration on the CalibrationSet; ``convert_pt2e``; ``litert_torch.convert(..., quant_config=...)``.
The converter gives int8 input and output tensors; unless ``int8_io`` is set, a QUANTIZE op is put in
front and a DEQUANTIZE op behind (:mod:`.tflite_io`) so that the model takes and returns float32, like
the fp32 artifact (the int8 I/O form is for pipelines that feed camera bytes directly).
``int8-dynamic``: dynamic range: int8 weights, activations quantized at run time (``is_dynamic=True``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import atomic_path
from .._lazy import require
from ..converters.base import ArtifactMetadata, ExportOptions, QuantMode
from ..converters.table import get_spec
from ..errors import ConversionError, first_line
from .base import QuantResult, check_quant_request
from .calibration import CalibrationSet
from .pt2e import calibrate_pt2e, litert_quantizer

log = logging.getLogger(__name__)


def activation_floor() -> float | None:
    """litert-torch's PT2E quantizer floors every activation scale at its observers' ``eps``."""
    from .pt2e import activation_eps

    return activation_eps(litert_quantizer(dynamic=False))


def quantize(
    model: nn.Module,
    example: torch.Tensor,
    out_path: Path,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
) -> QuantResult:
    settings = options.quant
    mode = check_quant_request(get_spec("tflite"), options)  # modes and settings from the table
    litert_torch = require("litert_torch", "tflite")
    qc = require("litert_torch.quantize.quant_config", "tflite")
    from ..converters._litert_passes import install_layout_rewrites
    from ..converters.tflite import write_metadata

    install_layout_rewrites()

    dynamic = mode is QuantMode.INT8_DYNAMIC
    from .pt2e_analysis import planned_quantizer  # --exclude / --analyze / --target-sqnr on the PT2E path

    quantizer, fallback = planned_quantizer(model, example, lambda: litert_quantizer(dynamic), calib, settings)
    # dynamic range needs no activation statistics; a few images let the observers see real data
    data = calib.data[:4] if dynamic else calib.data
    quantized = calibrate_pt2e(model, example, quantizer, data, fold_quantize=False)
    out_path = Path(out_path)
    # converted, rewritten and stamped under a temporary name, then renamed: never half a file under out_path
    with atomic_path(out_path) as staged:
        try:
            edge = litert_torch.convert(quantized, (example,), quant_config=qc.QuantConfig(pt2e_quantizer=quantizer))
            edge.export(str(staged))
        except Exception as exc:
            raise ConversionError("tflite", f"int8 conversion failed: {first_line(exc)}") from exc
        details: dict[str, Any] = {
            "method": "litert-torch PT2E (PT2EQuantizer, symmetric per-channel)",
            "weights": "int8 per-channel",
            "calibration_images": len(data),
            "activations": "int8 (quantized at run time)" if dynamic else "int8 (static, calibrated)",
            **fallback,  # modules kept in float, analysis (pt2e_analysis.py)
        }
        if not dynamic:
            from .tflite_io import float_io, io_dtypes

            if not settings.int8_io:
                float_io(staged)
            details["io"] = io_dtypes(staged)
        write_metadata(staged, {**metadata.as_strings(), "edgevit_deploy.precision": str(mode)})
    return QuantResult(out_path, str(mode), details)
