"""ExecuTorch int8 through PT2E with ExecuTorch's ``XNNPACKQuantizer``.

``int8``: symmetric per-channel int8 weights, static int8 activations (histogram observers); the shared
PT2E calibration (:func:`.pt2e.calibrate_pt2e`) runs the CalibrationSet through the prepared graph, the
converted graph is exported again and lowered to the XNNPACK delegate like the float program. Inputs and
outputs stay float32 (the quantize / dequantize at the edges run inside the program).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._lazy import require
from ..converters.base import ArtifactMetadata, EtBackend, ExportOptions
from ..converters.table import get_spec
from ..errors import ConversionError, first_line
from .base import QuantizationError, QuantResult, check_quant_request
from .calibration import CalibrationSet
from .pt2e import FloatModulesMixin, calibrate_pt2e, quantize_after_clamp

log = logging.getLogger(__name__)


def xnnpack_quantizer() -> Any:
    """ExecuTorch's XNNPACK quantizer (symmetric per-channel weights, static activations), whose annotation
    ends with :func:`.pt2e.quantize_after_clamp`: like litert-torch's, it makes ReLU6 share the conv's
    observer, so a ReLU6 output would be quantized on the conv's unclipped range."""
    mod = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch")

    class ClampAwareXnnpackQuantizer(FloatModulesMixin, mod.XNNPACKQuantizer):  # type: ignore[name-defined]
        # the executorch formulation's LayerNorm as matrix products (formulations/rewrites.py) stays float:
        # quantized, its mean and variance products rounded (x - mu)^2 to int8 (DeiT-Tiny int8 1.4 dB SQNR)
        float_module_types = ("MatmulLayerNorm",)
        # every add stays float, as litert-torch's quantizer leaves them: the pre-norm residual stream (DeiT-Tiny
        # 9.7 dB with it int8) and the local / CNN residual sums (EdgeViT-XXS 23.6 -> 26.5 dB, no slower)
        float_every_add = True

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            config = self.global_config
            if config is not None and config.output_activation is not None:
                n = quantize_after_clamp(model, config.output_activation)
                log.info("PT2E (XNNPACK): %d conv -> clamp pairs quantized after the clamp", n)
            return self.restrict(model)

    return ClampAwareXnnpackQuantizer().set_global(mod.get_symmetric_quantization_config(is_per_channel=True))


def activation_floor() -> float | None:
    """ExecuTorch's XNNPACK quantizer floors every activation scale at its observers' ``eps``."""
    from .pt2e import activation_eps

    return activation_eps(xnnpack_quantizer())


def quantize(
    model: nn.Module,
    example: torch.Tensor,
    out_path: Path,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
) -> QuantResult:
    settings = options.quant
    mode = check_quant_request(get_spec("executorch"), options)  # modes and settings from the table
    if settings.int8_io:
        raise QuantizationError("--int8-io is a TFLite option; ExecuTorch int8 programs take and return float32")
    backend = EtBackend(options.et_backend or EtBackend.XNNPACK)
    if backend is not EtBackend.XNNPACK:
        raise QuantizationError(f"int8 ExecuTorch programs are lowered to XNNPACK; not --et-backend {backend}")
    from ..converters.executorch import lower_to_pte
    from .pt2e_analysis import planned_quantizer

    quantizer, fallback = planned_quantizer(model, example, xnnpack_quantizer, calib, settings)
    quantized = calibrate_pt2e(model, example, quantizer, calib.data, fold_quantize=True)
    try:
        with torch.no_grad():
            program = torch.export.export(quantized, (example,))
    except Exception as exc:
        raise ConversionError("executorch", f"int8 export failed: {first_line(exc)}") from exc
    meta = {**metadata.as_strings(), "edgevit_deploy.precision": str(mode)}
    outside = lower_to_pte(program, Path(out_path), backend, meta)
    details: dict[str, Any] = {
        "method": "ExecuTorch PT2E (XNNPACKQuantizer, symmetric per-channel)",
        "weights": "int8 per-channel",
        "activations": "int8 (static, calibrated)",
        "calibration_images": len(calib.data),
        "io": "float32",
        "non_delegated_ops": outside,
        **fallback,
    }
    return QuantResult(Path(out_path), str(mode), details)
