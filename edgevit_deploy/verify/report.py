"""Parity report types."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria for one precision. ``None`` disables a check."""

    max_abs: float | None = 1e-4
    cosine: float | None = 0.9999
    top1_agreement: float | None = 1.0
    sqnr_db: float | None = None

    @classmethod
    def for_precision(cls, precision: str) -> Thresholds:
        return _BY_PRECISION.get(precision, _BY_PRECISION["int8"])


_BY_PRECISION: dict[str, Thresholds] = {
    "fp32": Thresholds(max_abs=1e-4, cosine=0.9999, top1_agreement=1.0),
    "fp16": Thresholds(max_abs=None, cosine=0.999, top1_agreement=0.9, sqnr_db=30.0),
    "int8": Thresholds(max_abs=None, cosine=0.95, top1_agreement=None, sqnr_db=10.0),
}


@dataclass
class ParityReport:
    executed: bool
    passed: bool
    executor: str | None = None            # what produced the target's numbers (onnxruntime, LiteRT, ...)
    reason: str | None = None              # why it was not executed, or why it failed
    max_abs: float | None = None
    mean_abs: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    num_inputs: int = 0
    failures: list[str] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_executed(cls, reason: str, executor: str | None = None) -> ParityReport:
        return cls(executed=False, passed=False, executor=executor, reason=reason)
