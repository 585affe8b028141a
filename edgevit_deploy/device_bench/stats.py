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


@dataclass
class RatioInterval:
    """Candidate median / baseline median with a percentile-bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int

    def as_percent(self) -> tuple[float, float, float]:
        """(change, CI low, CI high) in percent: 100 x (ratio - 1)."""
        return tuple(100.0 * (v - 1.0) for v in (self.ratio, self.low, self.high))  # type: ignore[return-value]


def bootstrap_median_ratio(
    baseline: Iterable[float],
    candidate: Iterable[float],
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> RatioInterval:
    """The ratio of the medians of two samples of per-iteration latencies and its ``confidence`` interval by
    the percentile bootstrap: each side resampled with replacement on its own (``resamples`` times, from a
    generator seeded with ``seed``: the same inputs always give the same interval). Scale-free (a 20 %
    slowdown is a ratio of 1.2 at any latency) and without a shift-model assumption; it sees the spread of
    the iterations within each run only, not the run-to-run spread, which is why a gate compares its lower
    bound with a threshold rather than with 0. Raises ``ValueError`` on an empty side or a non-positive median.
    """
    import numpy as np

    a = np.asarray([float(v) for v in baseline], dtype=np.float64)
    b = np.asarray([float(v) for v in candidate], dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap needs per-iteration latencies on both sides")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("latencies must be finite")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100, got {resamples}")
    med_a, med_b = float(np.median(a)), float(np.median(b))
    if med_a <= 0 or med_b <= 0:
        raise ValueError(f"medians must be positive, got {med_a} and {med_b}")
    rng = np.random.Generator(np.random.PCG64(seed))
    boot_a = np.median(a[rng.integers(0, a.size, size=(resamples, a.size))], axis=1)
    boot_b = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    ratios = boot_b / np.maximum(boot_a, np.finfo(np.float64).tiny)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    ratio = med_b / med_a
    return RatioInterval(
        ratio=ratio,
        low=min(float(low), ratio),
        high=max(float(high), ratio),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


def summary_mean_ratio(
    baseline: tuple[float, float, int], candidate: tuple[float, float, int], confidence: float = 0.95
) -> RatioInterval:
    """The ratio of two runs' MEAN latencies and its ``confidence`` interval from their summaries alone,
    ``(mean, std, count)`` each: for tools that print a summary and no per-iteration latencies (LiteRT's
    ``benchmark_model``). The log of the ratio is approximately normal with variance
    ``std_b^2 / (n_b mean_b^2) + std_c^2 / (n_c mean_c^2)`` (delta method); a wider, less robust interval than
    the bootstrap (means, not medians). Raises ``ValueError`` for a non-positive mean or a count below 2."""
    from statistics import NormalDist

    (mean_a, std_a, n_a), (mean_b, std_b, n_b) = baseline, candidate
    if min(n_a, n_b) < 2:
        raise ValueError(f"a summary interval needs counts >= 2, got {n_a} and {n_b}")
    if mean_a <= 0 or mean_b <= 0 or std_a < 0 or std_b < 0:
        raise ValueError(f"means must be positive and stds >= 0, got {mean_a}, {mean_b}, {std_a}, {std_b}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    se = math.sqrt(std_a**2 / (n_a * mean_a**2) + std_b**2 / (n_b * mean_b**2))
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    ratio = mean_b / mean_a
    return RatioInterval(
        ratio=ratio,
        low=ratio * math.exp(-z * se),
        high=ratio * math.exp(z * se),
        confidence=confidence,
        resamples=0,
        seed=0,
    )
