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
        """The acceptance policy's bars of ``precision`` (random weights); an unknown name is bad input."""
        from .policy import AcceptancePolicy

        return AcceptancePolicy.for_variant(precision).thresholds


@dataclass
class ParityReport:
    executed: bool
    passed: bool
    executor: str | None = None  # what produced the target's numbers (onnxruntime, LiteRT, ...)
    reason: str | None = None  # why it was not executed, or why it failed
    max_abs: float | None = None
    mean_abs: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    num_inputs: int = 0
    failures: list[str] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)  # the bars applied
    variant: str | None = None  # the variant whose policy set the bars (fp32, int8, ...)
    loosened: list[str] = field(default_factory=list)  # user flags looser than the policy (applied)
    metadata_mismatch: list[str] = field(default_factory=list)  # metadata vs contents / command line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_executed(cls, reason: str, executor: str | None = None) -> ParityReport:
        return cls(executed=False, passed=False, executor=executor, reason=reason)
