"""Parsers of the Android benchmark tools' stdout, one module per tool.

Every parser returns a :class:`ParsedRun` and never raises: garbage, truncated output or a failed
delegate give ``ok=False`` with the reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..stats import LatencySummary, summarise

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass
class ParsedRun:
    """What a runner's output says. Times in milliseconds, memory in MB; the latency figures in ``latency``."""

    tool: str
    ok: bool = False
    reason: str | None = None
    variant: str = ""  # which output format was recognised
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_count: int | None = None
    warmup_mean_ms: float | None = None
    latency: LatencySummary = field(default_factory=LatencySummary)  # what the tool's summary says
    latencies_ms: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None
    init_memory_mb: float | None = None
    model_size_mb: float | None = None
    cpu_usage_pct: float | None = None
    delegated_nodes: tuple[int, int] | None = None  # (delegated, total) when the tool says
    warnings: list[str] = field(default_factory=list)
    op_profile: list[dict[str, Any]] = field(default_factory=list)  # per-op rows (device_bench.profiles shape)
    delegate_coverage: dict[str, Any] = field(default_factory=dict)  # the tool's delegation line, when it says

    def fail(self, reason: str) -> ParsedRun:
        self.ok = False
        self.reason = reason
        return self

    def apply_latencies(self, latencies_ms: list[float]) -> None:
        """Per-iteration latencies: the summary stats are recomputed from them (they win over the tool's;
        the tool's p95 / p999 stay)."""
        clean = [v for v in latencies_ms if math.isfinite(v) and v >= 0]
        if not clean:
            return
        computed = summarise(clean)
        self.latencies_ms = clean
        self.latency = replace(computed, p95=self.latency.p95, p999=self.latency.p999)

    def measurement_fields(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~edgevit_deploy.device_bench.types.Measurement`."""
        return {
            "init_ms": self.init_ms,
            "first_ms": self.first_ms,
            "warmup_count": self.warmup_count,
            "latencies_ms": list(self.latencies_ms),
            **self.latency.as_measurement_fields(),
            "peak_memory_mb": self.peak_memory_mb,
            "op_profile": [dict(r) for r in self.op_profile],
            "delegate_coverage": dict(self.delegate_coverage),
        }


def to_float(text: str | None) -> float | None:
    """A finite float, or None (the tools print 'nan', 'inf', '-nan' on broken runs)."""
    if text is None:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def to_int(text: str | None) -> int | None:
    value = to_float(text)
    if value is None or value != int(value) or abs(value) > 2**53:
        return None
    return int(value)


def last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    found = None
    for match in pattern.finditer(text):
        found = match
    return found


def error_lines(text: str, markers: tuple[str, ...], limit: int = 3) -> list[str]:
    """Lines containing any marker (case-insensitive), without duplicates, at most ``limit``."""
    seen: list[str] = []
    for line in text.splitlines():
        low = line.lower()
        if any(m in low for m in markers):
            clean = line.strip()[:300]
            if clean and clean not in seen:
                seen.append(clean)
        if len(seen) >= limit:
            break
    return seen
