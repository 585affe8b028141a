"""Per-op profiles and delegate coverage: the one shape every runner stores, and the helpers that read it.

``Measurement.op_profile`` is a list of dicts, one per op (or per node type when the tool only gives a
per-type table), sorted by time descending::

    {"node": "Delegate/Convolution (NHWC, F32) GEMM:3",  # node name, "" for a per-type row
     "op": "Convolution (NHWC, F32) GEMM",               # op / node type ("CONV_2D", "Conv", ...)
     "ms": 0.338,                                        # average ms per inference
     "count": 1,                                         # times it ran per inference (1 if unknown)
     "pct": 4.6}                                         # percent of the table's total

``Measurement.delegate_coverage`` is ``{"delegate": str, "delegated": int, "total": int, "partitions": int,
"source": "measured" | "predicted", "fallback_ops": {op: count}}`` (``fallback_ops`` optional).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

#: the keys of one op_profile row, in display order
OP_KEYS: tuple[str, ...] = ("node", "op", "ms", "count", "pct")


class CoverageSource(str, Enum):
    MEASURED = "measured"  # read from the run itself (the runtime's own log / profile)
    PREDICTED = "predicted"  # offline, before any phone (edgevit-bench coverage)


def op_row(node: str, op: str, ms: float, count: int = 1, pct: float | None = None) -> dict[str, Any]:
    """One op_profile row (``pct`` filled in by :func:`finish` when None)."""
    return {"node": str(node), "op": str(op), "ms": float(ms), "count": int(count) if count else 1, "pct": pct}


def finish(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a finite, non-negative ``ms`` only, ``pct`` computed from the total where missing, sorted by
    ms descending (ties by node name, so the order is stable)."""
    clean: list[dict[str, Any]] = []
    for r in rows:
        try:
            ms = float(r["ms"])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(ms) or ms < 0:
            continue
        count = r.get("count")
        clean.append(
            {
                "node": str(r.get("node") or ""),
                "op": str(r.get("op") or "?"),
                "ms": ms,
                "count": int(count) if isinstance(count, (int, float)) and count and count > 0 else 1,
                "pct": r.get("pct"),
            }
        )
    total = math.fsum(r["ms"] for r in clean)
    for r in clean:
        pct = r["pct"]
        if not isinstance(pct, (int, float)) or not math.isfinite(pct):
            r["pct"] = 100.0 * r["ms"] / total if total > 0 else 0.0
        else:
            r["pct"] = float(pct)
    clean.sort(key=lambda r: (-r["ms"], r["node"], r["op"]))
    return clean


def total_ms(rows: Sequence[Mapping[str, Any]]) -> float:
    return math.fsum(float(r.get("ms") or 0.0) for r in rows)


def by_op_type(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-node rows summed per op type (``node`` ""), percentages of the table's total."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        slot = acc.setdefault(str(r.get("op") or "?"), [0.0, 0])
        slot[0] += float(r.get("ms") or 0.0)
        slot[1] += int(r.get("count") or 1)
    return finish(op_row("", op, ms, int(n)) for op, (ms, n) in acc.items())


def top(rows: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    return [dict(r) for r in sorted(rows, key=lambda r: -float(r.get("ms") or 0.0))[: max(0, n)]]


def coverage(
    delegate: str,
    delegated: int,
    total: int,
    partitions: int,
    source: CoverageSource | str = CoverageSource.MEASURED,
    fallback_ops: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A delegate_coverage dict (``fallback_ops`` only when given)."""
    out: dict[str, Any] = {
        "delegate": str(delegate),
        "delegated": int(delegated),
        "total": int(total),
        "partitions": int(partitions),
        "source": CoverageSource(source).value,
    }
    if fallback_ops:
        out["fallback_ops"] = {str(k): int(v) for k, v in sorted(fallback_ops.items())}
    return out


def is_partial(cov: Mapping[str, Any] | None) -> bool:
    """The delegate took some, not all, of the graph (or it is split in several partitions)."""
    if not cov:
        return False
    delegated, total = cov.get("delegated"), cov.get("total")
    if not isinstance(delegated, int) or not isinstance(total, int) or total <= 0:
        return False
    return delegated < total or int(cov.get("partitions") or 1) > 1


def coverage_label(cov: Mapping[str, Any] | None) -> str:
    """``partial (N/M, K partitions)``, ``full (M/M)``, ``none (0/M)``; "" when nothing is known. Predicted
    coverage says so."""
    if not cov or not isinstance(cov.get("total"), int) or not isinstance(cov.get("delegated"), int):
        return ""
    n, m, k = cov["delegated"], cov["total"], int(cov.get("partitions") or 0)
    if n == 0:
        text = f"none (0/{m})"
    elif is_partial(cov):
        text = f"partial ({n}/{m}, {k} partition{'s' if k != 1 else ''})"
    else:
        text = f"full ({n}/{m})"
    return f"{text}, predicted" if cov.get("source") == CoverageSource.PREDICTED.value else text


def delegate_cell(delegate: str, cov: Mapping[str, Any] | None) -> str:
    """The table's delegate column: the delegate, plus the coverage label when it took only part of the graph
    (a full coverage adds nothing: the delegate name already says it)."""
    return f"{delegate} {coverage_label(cov)}" if is_partial(cov) or (cov and cov.get("delegated") == 0) else delegate
