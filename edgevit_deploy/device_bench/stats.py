"""Summary statistics of per-iteration latencies (shared by every runner and the report)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class LatencySummary:
    """THE summary of one run's latencies, in milliseconds: every field but p95 / p999 set when computed from
    per-iteration latencies (:func:`summarise`), only those a tool prints when read from its own summary
    (the parsers' :class:`~edgevit_deploy.device_bench.parsers.ParsedRun` nests one). A
    :class:`~edgevit_deploy.device_bench.types.Measurement` stores it as the flat columns that
    :data:`MEASUREMENT_FIELDS` names (the result store's columns)."""

    count: int | None = None
    mean: float | None = None
    median: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    trimmed_mean: float | None = None

    def as_measurement_fields(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~edgevit_deploy.device_bench.types.Measurement` it fills."""
        return {column: getattr(self, name) for name, column in MEASUREMENT_FIELDS.items()}

    @classmethod
    def of_measurement(cls, m: Any) -> LatencySummary:
        """The summary a Measurement (or a store row dict) holds in its columns."""
        get = m.get if isinstance(m, dict) else lambda column: getattr(m, column, None)
        return cls(**{name: get(column) for name, column in MEASUREMENT_FIELDS.items()})

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


#: summary field -> the Measurement field (store column) holding it; the summary's other fields (count, max,
#: p95, p999) are not stored
MEASUREMENT_FIELDS: dict[str, str] = {
    "mean": "mean_ms",
    "median": "median_ms",
    "p90": "p90_ms",
    "p99": "p99_ms",
    "std": "std_ms",
    "min": "min_ms",
    "trimmed_mean": "trimmed_mean_ms",
}


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already-sorted values, ``q`` in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def trimmed_mean(sorted_values: list[float], trim: float = 0.1) -> float:
    """Mean after dropping ``trim`` of the values at each end (at least one value is kept)."""
    if not sorted_values:
        raise ValueError("trimmed mean of an empty list")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    k = int(len(sorted_values) * trim)
    kept = sorted_values[k : len(sorted_values) - k] or sorted_values
    return _mean(kept)


def _mean(sorted_values: list[float]) -> float:
    """fsum / n, clamped to [min, max] (the division can round just outside, e.g. three 1.9s)."""
    return min(max(math.fsum(sorted_values) / len(sorted_values), sorted_values[0]), sorted_values[-1])


def summarise(latencies: Iterable[float], trim: float = 0.1) -> LatencySummary:
    """Mean, median, p90, p99, population std, min, max and ``trim``-trimmed mean of ``latencies``.

    Raises ``ValueError`` on an empty sequence or a non-finite / negative latency: a runner that got
    no timings records a failed measurement instead of calling this.
    """
    values = [float(v) for v in latencies]
    if not values:
        raise ValueError("no latencies to summarise: the runner reported no per-iteration timings")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"latencies must be finite and non-negative, got {bad[:5]}")
    values.sort()
    n = len(values)
    mean = _mean(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    return LatencySummary(
        count=n,
        mean=mean,
        median=percentile(values, 50.0),
        p90=percentile(values, 90.0),
        p99=percentile(values, 99.0),
        std=std,
        min=values[0],
        max=values[-1],
        trimmed_mean=trimmed_mean(values, trim),
    )
