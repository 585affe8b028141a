"""Shared types of the quantizers: the result, the settings (``ExportOptions.quant``) and typed errors."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EdgeVitDeployError

log = logging.getLogger(__name__)

CALIB_METHODS = ("minmax", "percentile", "entropy")
ACTIVATION_DTYPES = ("int8", "uint8")


class QuantizationError(EdgeVitDeployError, ValueError):
    """Bad quantization settings or a quantization step that failed."""


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


@dataclass(frozen=True)
class QuantSettings:
    """The per-mode settings a user passes in ``ExportOptions.quant`` (all optional).

    ``calib_method``: ONNX static calibration (minmax | percentile | entropy).
    ``activation_dtype``: ONNX activations int8 (symmetric-range friendly) or uint8.
    ``int8_io``: TFLite int8 input/output tensors (default False: float in, float out).
    ``exclude``: name globs of layers kept in float (ONNX node names, e.g. ``/stages.3/*``).
    ``target_sqnr``: ONNX only: keep the worst layers in float until the output SQNR (dB) reaches this.
    ``analyze``: ONNX only: per-layer sensitivity (quantized tensor vs its float twin).
    ``percentile``: the percentile of the percentile method (default 99.999).
    ``max_float_layers``: cap of the ``target_sqnr`` search (default 12).
    """

    calib_method: str = "minmax"
    activation_dtype: str = "uint8"
    int8_io: bool = False
    exclude: tuple[str, ...] = ()
    target_sqnr: float | None = None
    analyze: bool = False
    percentile: float = 99.999
    max_float_layers: int = 12

    @classmethod
    def from_options(cls, quant: Mapping[str, Any] | None) -> QuantSettings:
        quant = dict(quant or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(quant) - known)
        if unknown:
            raise QuantizationError(
                f"unknown quantization setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        exclude = quant.get("exclude") or ()
        if isinstance(exclude, str):
            exclude = (exclude,)
        s = cls(
            calib_method=str(quant.get("calib_method", "minmax")),
            activation_dtype=str(quant.get("activation_dtype", "uint8")),
            int8_io=bool(quant.get("int8_io", False)),
            exclude=tuple(exclude),
            target_sqnr=None if quant.get("target_sqnr") is None else float(quant["target_sqnr"]),
            analyze=bool(quant.get("analyze", False)),
            percentile=float(quant.get("percentile", 99.999)),
            max_float_layers=int(quant.get("max_float_layers", 12)),
        )
        s.check()
        return s

    def check(self) -> None:
        if self.calib_method not in CALIB_METHODS:
            raise QuantizationError(
                f"calibration method {self.calib_method!r} is not one of: {', '.join(CALIB_METHODS)}"
            )
        if self.activation_dtype not in ACTIVATION_DTYPES:
            raise QuantizationError(
                f"activation dtype {self.activation_dtype!r} is not one of: {', '.join(ACTIVATION_DTYPES)}"
            )
        if not 90.0 <= self.percentile < 100.0:
            raise QuantizationError(f"percentile {self.percentile} must be in [90, 100)")
        if self.max_float_layers < 1:
            raise QuantizationError("max_float_layers must be at least 1")


def onnx_only_settings_used(settings: QuantSettings) -> list[str]:
    """Settings only the ONNX quantizer implements (other targets reject them)."""
    used = []
    if settings.target_sqnr is not None:
        used.append("target_sqnr (--target-sqnr)")
    if settings.analyze:
        used.append("analyze (--analyze)")
    if settings.exclude:
        used.append("exclude (--exclude)")
    return used


def reject_onnx_only(settings: QuantSettings, target: str) -> None:
    used = onnx_only_settings_used(settings)
    if used:
        raise QuantizationError(
            f"{', '.join(used)} work only with --target onnx (per-layer analysis and "
            f"float fallback run on the ONNX graph); not with {target}."
        )


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
