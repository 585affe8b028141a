"""Shared types of the quantizers: the :class:`Quantizer` protocol, the result, the one check of a request
against the target table, and typed errors. The settings (``ExportOptions.quant``) are
:class:`~edgevit_deploy.converters.base.QuantSettings`, parsed once where the options are made."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..converters.base import (
    ACTIVATION_DTYPES,
    CALIB_METHODS,
    ArtifactMetadata,
    ExportOptions,
    QuantMode,
    QuantSettings,
)
from ..errors import QuantizationError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..converters.table import TargetSpec
    from .calibration import CalibrationSet

log = logging.getLogger(__name__)

# targets whose int8 goes through PT2E and which take --analyze / --exclude / --target-sqnr per module
# (quantize/pt2e_analysis.py); onnx has them on the ONNX graph (its table row's ``per_layer_quant``)
PT2E_PER_LAYER_TARGETS = frozenset({"tflite", "coreml", "executorch"})

__all__ = [
    "ACTIVATION_DTYPES",
    "CALIB_METHODS",
    "CalibrationDataError",
    "QuantResult",
    "QuantSettings",
    "QuantizationError",
    "Quantizer",
    "check_quant_request",
    "match_names",
    "per_layer_settings_used",
]


class CalibrationDataError(QuantizationError):
    """The calibration folder is missing, empty, or has no readable image."""


@dataclass
class QuantResult:
    """One quantized artifact and how it was made (calibration method, kept-in-float layers...)."""

    path: Path
    mode: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "mode": self.mode, "details": self.details}


class Quantizer(Protocol):
    """Turns an eval-mode module into one quantized artifact at ``out_path``, calibrated on ``calib``. The
    table names one per target (``TargetSpec.quantizer``: a module with this ``quantize`` function)."""

    def quantize(
        self,
        model: nn.Module,
        example: torch.Tensor,
        out_path: Path,
        options: ExportOptions,
        metadata: ArtifactMetadata,
        calib: CalibrationSet,
    ) -> QuantResult: ...

    def activation_floor(self) -> float | None:
        """The smallest activation scale (step) the quantizer allows, ``None`` when it has no floor. A
        tensor whose every value is under half of it is quantized to 0 (see ``support_matrix`` causes)."""
        ...


def per_layer_settings_used(settings: QuantSettings) -> list[str]:
    """Per-layer settings (analysis, float fallback): only a quantizer whose table row has ``per_layer_quant``
    implements them."""
    used = []
    if settings.target_sqnr is not None:
        used.append("target_sqnr (--target-sqnr)")
    if settings.analyze:
        used.append("analyze (--analyze)")
    if settings.exclude:
        used.append("exclude (--exclude)")
    return used


def check_quant_request(spec: TargetSpec, options: ExportOptions) -> QuantMode:
    """THE check of a quantization request against the target's table row: the mode, the options the row
    has (``TargetSpec.validate``) and the per-layer settings. Returns the mode."""
    if options.quantize is None:
        raise QuantizationError("no quantization mode given; pass --quantize MODE")
    spec.validate(options)  # UnsupportedOptionError listing the modes the target has
    used = per_layer_settings_used(options.quant)
    if used and not (spec.per_layer_quant or str(spec.target) in PT2E_PER_LAYER_TARGETS):
        from ..converters.table import TARGETS

        having = (
            " or ".join(
                f"--target {name}"
                for name, s in TARGETS.items()
                if s.per_layer_quant or str(name) in PT2E_PER_LAYER_TARGETS
            )
            or "no target"
        )
        raise QuantizationError(
            f"{', '.join(used)} work only with {having} (per-layer analysis and "
            f"float fallback run on the ONNX graph or on the PT2E modules); not with {spec.target}."
        )
    return QuantMode(options.quantize)


def match_names(names: Iterable[str], patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """(names matching any glob, patterns that matched nothing). Warns about the latter."""
    names = list(names)
    matched: list[str] = []
    unmatched: list[str] = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            unmatched.append(pat)
            log.warning(
                "--exclude %r matches no layer; it has no effect. Layer names look like %s", pat, ", ".join(names[:3])
            )
        matched.extend(h for h in hits if h not in matched)
    return matched, unmatched
