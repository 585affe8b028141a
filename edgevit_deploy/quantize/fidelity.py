"""The fidelity report of one quantized artifact: how far it drifted from fp32 PyTorch, how much smaller
and faster it is, on what data it was calibrated, and (ONNX) where the error comes from.

Accuracy runs on held-out images (never calibration images) through THE validator
(``validate_outputs``), under THE acceptance policy (``verify/policy.py``: the mode's floors), run by THE one
artifact runner (``verify/run.py``: a crash is a failure, never "not executed").
Latency: the float and the quantized artifact in the same host runtime, same process, one thread,
interleaved run by run; medians.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..converters.base import QuantMode
from ..converters.table import TargetSpec
from ..errors import first_line
from ..export_common import artifact_size
from ..labels import class_labels
from ..models._config import ModelConfig
from ..verify.parity import judge, reference_outputs, stamp
from ..verify.policy import AcceptancePolicy
from ..verify.report import ParityReport
from ..verify.run import run_artifact
from .base import QuantResult
from .calibration import CalibrationSet

log = logging.getLogger(__name__)

ANALYSIS_ROWS = 25  # the worst layers kept in the report


def policy_for(mode: QuantMode | str, pretrained: bool) -> AcceptancePolicy:
    """The acceptance policy a ``mode`` artifact is judged by (the one ``edgevit-verify`` applies too)."""
    return AcceptancePolicy.for_variant(str(mode), pretrained=pretrained)


@dataclass
class Latency:
    float_ms: float | None = None
    quant_ms: float | None = None
    runs: int = 0
    threads: int = 1
    executor: str | None = None
    reason: str | None = None  # why it was not measured

    @property
    def speedup(self) -> float | None:
        if self.float_ms and self.quant_ms:
            return self.float_ms / self.quant_ms
        return None


@dataclass
class FidelityReport:
    model: str
    target: str
    mode: str
    artifact: str
    float_artifact: str | None
    parity: ParityReport
    size_float_bytes: int | None
    size_quant_bytes: int
    latency: Latency
    calibration: dict[str, Any]
    held_out: dict[str, Any]
    quantization: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    analysis: dict[str, Any] | None = None

    @property
    def size_ratio(self) -> float | None:
        return self.size_quant_bytes / self.size_float_bytes if self.size_float_bytes else None

    @property
    def builtin_calibration(self) -> bool:
        return bool(self.calibration.get("builtin_default_used"))

    @property
    def kept_in_float(self) -> list[str]:
        return list(self.quantization.get("kept_in_float_layers", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "target": self.target,
            "mode": self.mode,
            "artifact": self.artifact,
            "float_artifact": self.float_artifact,
            "parity": self.parity.to_dict(),
            "size": {
                "float_bytes": self.size_float_bytes,
                "quant_bytes": self.size_quant_bytes,
                "ratio": self.size_ratio,
            },
            "latency": {**asdict(self.latency), "speedup": self.latency.speedup},
            "calibration": self.calibration,
            "held_out": self.held_out,
            "builtin_calibration_used": self.builtin_calibration,
            "quantization": self.quantization,
            "kept_in_float": self.kept_in_float,
            "examples": self.examples,
            "analysis": self.analysis,
        }

    def table_rows(self) -> list[tuple[str, str]]:
        """(metric, value) rows for the CLI table."""
        p = self.parity

        def fmt(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        rows = [("artifact", self.artifact), ("mode", f"{self.target} {self.mode}")]
        if p.executed:
            rows += [
                ("executed by", str(p.executor)),
                ("held-out images", str(p.num_inputs)),
                ("SQNR vs fp32 PyTorch", f"{fmt(p.sqnr_db, '.1f')} dB"),
                ("cosine", fmt(p.cosine, ".4f")),
                ("top-1 agreement", fmt(p.top1_agreement, ".1%")),
                ("top-5 agreement", fmt(p.top5_agreement, ".1%")),
                ("fidelity floor", "passed" if p.passed else f"FAILED: {p.reason}"),
            ]
        else:
            rows.append(("executed", f"false ({p.reason})"))
        rows.append(
            (
                "size",
                f"{_mb(self.size_float_bytes)} -> {_mb(self.size_quant_bytes)}"
                + (f" ({self.size_ratio:.2f}x)" if self.size_ratio else ""),
            )
        )
        lat = self.latency
        rows.append(
            (
                "latency (median, 1 thread)",
                f"{fmt(lat.float_ms, '.2f')} ms -> {fmt(lat.quant_ms, '.2f')} ms"
                + (f" ({lat.speedup:.2f}x)" if lat.speedup else "")
                if lat.reason is None
                else f"not measured ({lat.reason})",
            )
        )
        rows.append(
            (
                "calibration",
                f"{self.calibration['source']}: {self.calibration['count']} images"
                + (
                    f", {self.calibration['skipped_unreadable']} unreadable skipped"
                    if self.calibration.get("skipped_unreadable")
                    else ""
                ),
            )
        )
        if self.kept_in_float:
            rows.append(("kept in float", ", ".join(self.kept_in_float)))
        bc = self.quantization.get("bias_correction")
        if bc:
            rows.append(
                (
                    "bias correction",
                    f"on: {bc['corrected_layers']} layers, {bc['weight_grid']}, {bc['images']} images"
                    if bc.get("applied")
                    else f"off ({bc.get('reason', '')})",
                )
            )
        if self.analysis:
            worst = self.analysis["layers"][:3]
            rows.append(
                ("worst layers", "; ".join(f"{r['layer']} ({r['kind']}, {r['sqnr_db']:.1f} dB)" for r in worst))
            )
        return rows


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} MB"


def measure_latency(
    spec: TargetSpec,
    float_path: Path | None,
    quant_path: Path,
    x: np.ndarray,
    runs: int = 20,
    warmup: int = 2,
    coreml_executor: str = "auto",
) -> Latency:
    """Median single-image latency of both artifacts, interleaved, in the target's host runtime."""
    if float_path is None:
        return Latency(reason="no float artifact to compare with")
    runtime = spec.load_host_runtime()
    reason = runtime.unavailable_reason()
    if reason:
        return Latency(reason=reason)
    options = spec.runtime_options(coreml_executor)
    one = np.ascontiguousarray(x[:1], dtype=np.float32)
    if spec.isolated_runs:  # a runtime that can crash natively: each program runs once in a child first
        for p in (float_path, quant_path):
            probe = run_artifact(spec, Path(p), one, threads=1, coreml_executor=coreml_executor)
            if not probe.ok:
                return Latency(reason=f"{Path(p).name}: {probe.reason}")
    try:
        sessions = [runtime.load(Path(p), threads=1, **options) for p in (float_path, quant_path)]
    except Exception as exc:
        return Latency(reason=first_line(exc))
    executor = sessions[1].executor
    if "reference" in executor:  # an op-by-op interpreter's timing says nothing about Core ML
        return Latency(
            reason=f"{executor} is a reference interpreter; latency needs Core ML on macOS", executor=executor
        )
    times: list[list[float]] = [[], []]
    for r in range(warmup + runs):
        for s, sess in enumerate(sessions):
            t0 = time.perf_counter()
            sess.run(one)
            if r >= warmup:
                times[s].append((time.perf_counter() - t0) * 1e3)
    return Latency(
        float_ms=statistics.median(times[0]), quant_ms=statistics.median(times[1]), runs=runs, executor=executor
    )


def _examples(
    reference: np.ndarray, candidate: np.ndarray, held: CalibrationSet, cfg: ModelConfig
) -> list[dict[str, str]]:
    """fp32 and quantized top-1 class of the first view of every held-out image."""
    labels = class_labels(cfg.num_classes, cfg.labels)
    out, seen = [], set()
    for i, name in enumerate(held.names):
        if name not in seen:
            seen.add(name)
            out.append(
                {
                    "image": name,
                    "fp32": labels[int(np.argmax(reference[i]))],
                    "quantized": labels[int(np.argmax(candidate[i]))],
                }
            )
    return out


def build_report(
    model: nn.Module,
    cfg: ModelConfig,
    spec: TargetSpec,
    result: QuantResult,
    float_path: Path | None,
    calib: CalibrationSet,
    held: CalibrationSet,
    pretrained: bool,
    coreml_executor: str = "auto",
    latency_runs: int = 20,
) -> FidelityReport:
    mode = QuantMode(result.mode)
    policy = policy_for(mode, pretrained)
    outcome = run_artifact(spec, result.path, held.data, coreml_executor=coreml_executor)
    examples: list[dict[str, str]] = []
    if not outcome.ok:
        log.warning(
            "%s %s: %s: %s", spec.target, mode, "failed" if outcome.executed else "not executed", outcome.reason
        )
        parity = stamp(outcome.report(), policy)
        latency = Latency(reason=f"{'failed' if outcome.executed else 'not executed'}: {outcome.reason}")
    else:
        assert outcome.outputs is not None  # outcome.ok
        reference = reference_outputs(model, held.data)
        parity = judge(reference, outcome.outputs, policy, outcome.executor)
        examples = _examples(reference, outcome.outputs, held, cfg)
        latency = measure_latency(
            spec, float_path, result.path, held.data, runs=latency_runs, coreml_executor=coreml_executor
        )
    details = dict(result.details)
    analysis = details.pop("analysis", None)
    if analysis is not None:
        analysis = {
            **analysis,
            "layers": analysis["layers"][:ANALYSIS_ROWS],
            "weights": analysis["weights"][:ANALYSIS_ROWS],
        }
    return FidelityReport(
        model=cfg.name,
        target=str(spec.target),
        mode=str(mode),
        artifact=str(result.path),
        float_artifact=str(float_path) if float_path else None,
        parity=parity,
        size_float_bytes=artifact_size(float_path) if float_path else None,
        size_quant_bytes=artifact_size(result.path),
        latency=latency,
        calibration=calib.provenance(),
        held_out=held.provenance(),
        quantization=details,
        examples=examples,
        analysis=analysis,
    )
