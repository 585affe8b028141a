"""Core ML compression: W8A8, weight-only int8 and 4 / 6-bit palettization.

``int8`` (W8A8): on Linux, Core ML cannot run predictions, so coremltools' own activation calibration
(``coremltools.optimize.coreml.experimental.linear_quantize_activations``) cannot run. Instead the model is
calibrated in PyTorch with PT2E (litert-torch's ``PT2EQuantizer``, symmetric per-channel static config,
torchao's ``prepare_pt2e`` / ``convert_pt2e``), re-exported with ``run_decompositions({})`` and converted
with ``minimum_deployment_target=iOS17``: the program gets ``quantize`` / ``dequantize`` activations and
``constexpr_affine_dequantize`` weights. On macOS the same route is used (one code path, same numbers).
coremltools' own PT2E quantizer (``coremltools.optimize.torch.quantization._coreml_quantizer.CoreMLQuantizer``)
cannot be used with torch 2.14: coremltools 9 imports ``torch.ao.quantization.quantizer``, which torch removed
(the PT2E quantizers now live in torchao).
``w8``: ``linear_quantize_weights`` (int8, per-channel, symmetric) on the float program.
``palettize4`` / ``palettize6``: ``palettize_weights`` (k-means LUT, 4 or 6 bits; needs scikit-learn).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from .._atomic import atomic_path
from .._lazy import require
from ..converters.base import ArtifactMetadata, ExportOptions, Precision, QuantMode
from ..converters.table import get_spec
from .base import QuantizationError, QuantResult, QuantSettings, check_quant_request
from .calibration import CalibrationSet
from .pt2e import calibrate_pt2e, litert_quantizer

log = logging.getLogger(__name__)


def activation_floor() -> float | None:
    """``int8`` (W8A8) goes through litert-torch's PT2E quantizer: its observers' ``eps`` floors every
    activation scale (the weight-only modes quantize no activation)."""
    from .pt2e import activation_eps

    return activation_eps(litert_quantizer(dynamic=False))


_DEPLOYMENT = {
    QuantMode.INT8: "iOS17",
    QuantMode.W8: "iOS16",
    QuantMode.PALETTIZE4: "iOS16",
    QuantMode.PALETTIZE6: "iOS16",
}


def _convert(
    module: nn.Module,
    example: torch.Tensor,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    needed: str,
    work: Path,
):
    """The float (or PT2E-quantized) module through the Core ML converter, loaded back for compression."""
    ct = require("coremltools", "coreml")
    from ..converters.coreml import CoremlConverter, at_least

    precision = options.precision if options.precision in (Precision.FP16, Precision.FP32) else Precision.FP16
    opts = replace(
        options,
        quantize=None,
        quant=QuantSettings(),
        precision=precision,
        minimum_deployment_target=at_least(options.minimum_deployment_target, needed),
    )
    path = CoremlConverter().convert(module, example, work / "float.mlpackage", opts, metadata)
    return ct.models.MLModel(str(path), skip_model_load=True)


def _w8a8(
    model: nn.Module,
    example: torch.Tensor,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
    work: Path,
):
    from .pt2e_analysis import planned_quantizer

    make = lambda: litert_quantizer(dynamic=False)
    quantizer, fallback = planned_quantizer(model, example, make, calib, options.quant)
    quantized = calibrate_pt2e(model, example, quantizer, calib.data, fold_quantize=True)
    mlmodel = _convert(quantized, example, options, metadata, _DEPLOYMENT[QuantMode.INT8], work)
    details = {
        **fallback,
        "method": "PT2E calibration in PyTorch (PT2EQuantizer, symmetric per-channel) -> ct.convert",
        "weights": "int8 per-channel (constexpr_affine_dequantize)",
        "activations": "int8 (quantize / dequantize)",
        "calibration_images": calib.count,
    }
    return mlmodel, details


def _compress_weights(
    model: nn.Module,
    example: torch.Tensor,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    mode: QuantMode,
    work: Path,
):
    cto = require("coremltools.optimize.coreml", "coreml")
    mlmodel = _convert(model, example, options, metadata, _DEPLOYMENT[mode], work)
    if mode is QuantMode.W8:
        config = cto.OptimizationConfig(
            global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        )
        return cto.linear_quantize_weights(mlmodel, config), {
            "method": "coremltools.optimize.coreml.linear_quantize_weights",
            "weights": "int8 per-channel",
            "activations": "float",
        }
    nbits = 4 if mode is QuantMode.PALETTIZE4 else 6
    try:
        import sklearn  # noqa: F401  (coremltools' k-means)
    except ImportError as exc:
        raise QuantizationError(
            f"--quantize {mode} clusters weights with k-means, which needs scikit-learn: pip install scikit-learn"
        ) from exc
    config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=nbits))
    return cto.palettize_weights(mlmodel, config), {
        "method": "coremltools.optimize.coreml.palettize_weights",
        "weights": f"{nbits}-bit k-means LUT",
        "activations": "float",
    }


def quantize(
    model: nn.Module,
    example: torch.Tensor,
    out_path: Path,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
) -> QuantResult:
    mode = check_quant_request(get_spec("coreml"), options)  # modes and settings from the table
    from ..converters.coreml import at_least, set_metadata

    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="edgevit-coreml-quant-") as tmp:
        if mode is QuantMode.INT8:
            mlmodel, details = _w8a8(model, example, options, metadata, calib, Path(tmp))
        else:
            mlmodel, details = _compress_weights(model, example, options, metadata, mode, Path(tmp))
        set_metadata(mlmodel, {**metadata.as_strings(), "edgevit_deploy.precision": str(mode)})
        with atomic_path(out_path) as staged:  # the whole package or none under out_path
            mlmodel.save(str(staged))
    details["minimum_deployment_target"] = at_least(options.minimum_deployment_target, _DEPLOYMENT[mode])
    return QuantResult(out_path, str(mode), details)
