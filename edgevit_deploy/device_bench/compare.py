"""Compare two selections of benchmark rows (``edgevit-bench compare BASELINE CANDIDATE``): a latency gate.

A side is one of (see :func:`select`):

- ``SWEEP_ID`` or ``sweep:SWEEP_ID``: the rows of that sweep in ``--store``;
- ``PATH`` or ``store:PATH``: every row of another store file (a bare word is a path when such a file exists);
- ``tag:TEXT``: the rows of ``--store`` labelled ``TEXT`` (``sweep --tag TEXT``);
- ``since:ISO-DATE`` / ``before:ISO-DATE``: the rows of ``--store`` measured at or after / before that time.

``since`` and ``tags`` given to :func:`select` (the CLI's ``--since`` / ``--tag``) narrow both sides further.
Within a side, each configuration (:data:`~.types.ROW_KEY`) is its latest ok run (:func:`~.store.latest_rows`).

Rows are paired by configuration. Each pair gets both medians, the change in percent and a confidence
interval of the ratio of medians by a seeded percentile bootstrap of the stored per-iteration latencies
(:func:`~.stats.bootstrap_median_ratio`); the verdict is ``slower`` (the whole interval above
``+threshold``), ``faster`` (below ``-threshold``), ``same`` (inside ``+-threshold``), ``inconclusive`` (it
straddles a bound) or ``unknown`` (no interval). Rows of a tool that stores only its summary (LiteRT's
``benchmark_model``: mean, std, count) get the interval of the ratio of means from the summaries
(:func:`~.stats.summary_mean_ratio`); the pair's ``method`` says which. A pair is untrustworthy (never gating) when
either run was throttled, was busy (a host whose load exceeded its cores: the report's ``busy_note``), ran hot
or charging (its notes say so), or had fewer than ``min_iterations`` per-iteration latencies.
:attr:`Comparison.regressions` are the trustworthy ``slower`` pairs.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from ..errors import EdgeVitDeployError
from .report.table import busy_note
from .stats import bootstrap_median_ratio, summary_mean_ratio
from .store import ResultStore, StoreError, latest_rows
from .types import ROW_KEY, row_key

DEFAULT_THRESHOLD_PCT = 5.0
DEFAULT_MIN_ITERATIONS = 10
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 4000
#: substrings of a row's notes that make its timing untrustworthy (the Android runners' idle warnings
#: "thermal status is N before the run", "device is charging", and any note saying the device was busy)
BUSY_MARKERS: tuple[str, ...] = ("thermal status", "charging", "busy")
VERDICTS: tuple[str, ...] = ("slower", "faster", "same", "inconclusive", "unknown")


class CompareError(EdgeVitDeployError, ValueError):
    """A selection or option of ``compare`` that cannot be used (bad input: exit 2)."""

    exit_code: ClassVar[int] = 2


def parse_threshold(text: str) -> float:
    """``"5%"``, ``"5"`` or ``"2.5 %"`` -> 5.0 / 2.5 (percent, > 0 and < 1000)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", str(text))
    value = float(match[1]) if match else math.nan
    if not (0.0 < value < 1000.0):
        raise CompareError(f"--fail-on-regression takes a percentage above 0 such as 5% or 2.5%, got {text!r}")
    return value


def parse_when(text: str, what: str = "--since") -> datetime:
    """An ISO date or date-time (``2026-12-01``, ``2026-12-01T10:00:00Z``); naive times are UTC."""
    try:
        text = str(text).strip()
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise CompareError(f"{what} takes an ISO date or date-time such as 2026-12-01, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _row_time(row: dict[str, Any]) -> datetime | None:
    try:
        return parse_when(str(row.get("timestamp") or ""), "timestamp")
    except CompareError:
        return None


@dataclass
class Selection:
    """One side of a comparison: what the user wrote, what it resolved to, the rows (latest per configuration)."""

    label: str
    description: str
    rows: list[dict[str, Any]]


def _read(path: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    if not path.is_file():
        raise StoreError(f"no result store at {path}; run `edgevit-bench sweep --store {path}` first")
    with ResultStore(path, readonly=True) as db:
        return db.rows(), db.sweep_ids()


def select(spec: str, store: str | Path, since: str | None = None, tags: Sequence[str] = ()) -> Selection:
    """The rows one side of a comparison names (forms: the module docstring); an unknown sweep id, a missing
    store or a selection without rows is a :class:`CompareError` / :class:`~.store.StoreError` (exit 2)."""
    kind, _, value = spec.partition(":")
    if not value or kind not in ("sweep", "store", "tag", "since", "before"):
        kind, value = ("store", spec) if Path(spec).is_file() else ("sweep", spec)
    if not value:
        raise CompareError("a comparison side is empty; give a sweep id, a store path, tag:TEXT or since:DATE")
    path = Path(value) if kind == "store" else Path(store)
    rows, sweeps = _read(path)
    if kind == "sweep":
        if value not in sweeps:
            shown = ", ".join(s or "''" for s in list(sweeps)[-10:]) or "none"
            raise CompareError(f"no sweep {value!r} in {path} (its sweep ids: {shown}); see `edgevit-bench show`")
        rows = [r for r in rows if r["sweep_id"] == value]
        what = f"sweep {value} in {path}"
    elif kind == "tag":
        rows = [r for r in rows if value in (r.get("tags") or [])]
        what = f"rows tagged {value!r} in {path}"
    elif kind in ("since", "before"):
        when = parse_when(value, f"{kind}:")
        rows = [r for r in rows if (t := _row_time(r)) is not None and ((t >= when) == (kind == "since"))]
        what = f"rows measured {kind} {value} in {path}"
    else:
        what = f"store {path}"
    if since is not None:
        when = parse_when(since)
        rows = [r for r in rows if (t := _row_time(r)) is not None and t >= when]
        what += f", since {since}"
    for tag in tags:
        rows = [r for r in rows if tag in (r.get("tags") or [])]
        what += f", tagged {tag!r}"
    if not rows:
        raise CompareError(f"{spec!r} selects no rows ({what})")
    return Selection(label=spec, description=what, rows=latest_rows(rows))


@dataclass
class Side:
    """What a pair shows of one run."""

    run_id: str
    sweep_id: str
    timestamp: str
    runtime: str
    toolkit_version: str
    artifact_sha256: str | None
    median_ms: float | None
    iterations: int  # per-iteration latencies stored

    @classmethod
    def of(cls, row: dict[str, Any]) -> Side:
        lat = row.get("latencies_ms") or []
        return cls(
            run_id=str(row.get("run_id") or ""),
            sweep_id=str(row.get("sweep_id") or ""),
            timestamp=str(row.get("timestamp") or ""),
            runtime=str(row.get("runtime") or ""),
            toolkit_version=str(row.get("toolkit_version") or ""),
            artifact_sha256=row.get("artifact_sha256"),
            median_ms=float(statistics.median(lat)) if lat else row.get("median_ms"),
            iterations=len(lat),
        )


@dataclass
class Pair:
    config: dict[str, Any]
    baseline: Side
    candidate: Side
    change_pct: float | None
    ci_low_pct: float | None
    ci_high_pct: float | None
    verdict: str
    reasons: list[str] = field(default_factory=list)  # why it is untrustworthy (empty: trustworthy)
    method: str = ""  # "bootstrap of medians" | "summary means (delta method)" | "" (no interval)

    @property
    def trustworthy(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trustworthy": self.trustworthy}


@dataclass
class Unpaired:
    config: dict[str, Any]
    side: str  # "baseline" | "candidate"
    status: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    baseline: str
    candidate: str
    threshold_pct: float
    confidence: float
    resamples: int
    seed: int
    min_iterations: int
    pairs: list[Pair]
    unpaired: list[Unpaired]

    @property
    def regressions(self) -> list[Pair]:
        """Trustworthy pairs slower than the threshold with confidence (the gate's failures)."""
        return [p for p in self.pairs if p.trustworthy and p.verdict == "slower"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "method": (
                f"percentile bootstrap of the ratio of medians of the per-iteration latencies, "
                f"{self.resamples} resamples, seed {self.seed}"
            ),
            "confidence": self.confidence,
            "threshold_pct": self.threshold_pct,
            "min_iterations": self.min_iterations,
            "pairs": [p.to_dict() for p in self.pairs],
            "unpaired": [u.to_dict() for u in self.unpaired],
            "regressions": len(self.regressions),
        }


def untrustworthy_reasons(row: dict[str, Any], side: str, min_iterations: int) -> list[str]:
    """Why one run's timing cannot gate: throttled, busy (load above the core count), hot / charging / busy
    notes, too few iterations."""
    reasons = []
    if row.get("throttled"):
        reasons.append(f"{side} throttled")
    busy = busy_note(row)
    if busy:
        reasons.append(f"{side} {busy}")
    for note in row.get("notes") or []:
        if any(marker in str(note).lower() for marker in BUSY_MARKERS):
            reasons.append(f"{side}: {note}")
    n = len(row.get("latencies_ms") or [])
    if n == 0 and _summary(row) is None:
        reasons.append(f"{side} has no per-iteration latencies and no summary (mean, std, count)")
    elif n == 0 and int(row.get("iterations") or 0) < min_iterations:
        reasons.append(f"{side} has {row.get('iterations')} iterations (< {min_iterations})")
    elif 0 < n < min_iterations:
        reasons.append(f"{side} has {n} iterations (< {min_iterations})")
    return reasons


def verdict_of(low_pct: float | None, high_pct: float | None, threshold_pct: float) -> str:
    if low_pct is None or high_pct is None:
        return "unknown"
    if low_pct > threshold_pct:
        return "slower"
    if high_pct < -threshold_pct:
        return "faster"
    if -threshold_pct <= low_pct and high_pct <= threshold_pct:
        return "same"
    return "inconclusive"


def compare(
    baseline: Selection,
    candidate: Selection,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    min_iterations: int = DEFAULT_MIN_ITERATIONS,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Pair ``baseline`` and ``candidate`` by configuration and judge each pair (module docstring)."""
    if min_iterations < 1:
        raise CompareError(f"--min-iterations must be >= 1, got {min_iterations}")
    base = {row_key(r): r for r in baseline.rows}
    cand = {row_key(r): r for r in candidate.rows}
    pairs: list[Pair] = []
    unpaired: list[Unpaired] = []
    for key in [*base, *(k for k in cand if k not in base)]:
        b, c = base.get(key), cand.get(key)
        either = b if b is not None else c
        assert either is not None
        config = {name: either.get(name) for name in ROW_KEY}  # the row's own values (threads an int, ...)
        if b is None or c is None:
            name, row = ("baseline", b) if c is None else ("candidate", c)
            assert row is not None
            unpaired.append(Unpaired(config, name, str(row["status"]), f"only in the {name}"))
            continue
        failed = [(name, row) for name, row in (("baseline", b), ("candidate", c)) if row["status"] != "ok"]
        if failed:
            for name, row in failed:
                unpaired.append(Unpaired(config, name, str(row["status"]), f"failed: {row.get('reason') or '?'}"))
            continue
        pairs.append(_pair(config, b, c, threshold_pct, min_iterations, confidence, resamples, seed))
    return Comparison(
        baseline=baseline.description,
        candidate=candidate.description,
        threshold_pct=threshold_pct,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        min_iterations=min_iterations,
        pairs=pairs,
        unpaired=unpaired,
    )


def _pair(
    config: dict[str, Any],
    b: dict[str, Any],
    c: dict[str, Any],
    threshold_pct: float,
    min_iterations: int,
    confidence: float,
    resamples: int,
    seed: int,
) -> Pair:
    sb, sc = Side.of(b), Side.of(c)
    reasons = untrustworthy_reasons(b, "baseline", min_iterations) + untrustworthy_reasons(
        c, "candidate", min_iterations
    )
    change = low = high = None
    if sb.median_ms and sc.median_ms and sb.median_ms > 0:
        change = 100.0 * (sc.median_ms / sb.median_ms - 1.0)
    lat_b, lat_c = b.get("latencies_ms") or [], c.get("latencies_ms") or []
    sum_b, sum_c = _summary(b), _summary(c)
    method = ""
    if lat_b and lat_c:
        try:
            ci = bootstrap_median_ratio(lat_b, lat_c, confidence=confidence, resamples=resamples, seed=seed)
            change, low, high = ci.as_percent()
            method = "bootstrap of medians"
        except ValueError as exc:  # a zero median: no interval
            reasons.append(f"no interval: {exc}")
    elif sum_b is not None and sum_c is not None:  # a tool that prints its summary only (benchmark_model)
        try:
            change, low, high = summary_mean_ratio(sum_b, sum_c, confidence=confidence).as_percent()
            method = "summary means (delta method)"
        except ValueError as exc:
            reasons.append(f"no interval: {exc}")
    return Pair(
        config=config,
        baseline=sb,
        candidate=sc,
        change_pct=change,
        ci_low_pct=low,
        ci_high_pct=high,
        verdict=verdict_of(low, high, threshold_pct),
        reasons=reasons,
        method=method,
    )


def _summary(row: dict[str, Any]) -> tuple[float, float, int] | None:
    """(mean, std, count) of a run whose tool stored its summary but no per-iteration latencies; the count is
    the requested iterations (the tool runs at least that many: a conservative count)."""
    mean, std, n = row.get("mean_ms"), row.get("std_ms"), int(row.get("iterations") or 0)
    if row.get("latencies_ms") or mean is None or std is None or n < 2:
        return None
    return float(mean), float(std), n


def config_label(config: dict[str, Any], extra: Iterable[str] = ()) -> str:
    """``edgevit_xxs onnx fp32 2t cpu 224px`` (+ ``mask f0``, the runner when not the default)."""
    parts = [
        str(config["model"]),
        str(config["target"]),
        str(config["precision"]),
        f"{config['threads']}t",
        str(config["delegate"]),
        f"{config['img_size']}px",
    ]
    if config.get("cpu_mask"):
        parts.append(f"mask {config['cpu_mask']}")
    if config.get("runner") not in (None, "", "default"):
        parts.append(str(config["runner"]))
    return " ".join([*parts, *extra])
