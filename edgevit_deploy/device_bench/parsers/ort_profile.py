"""Parser of onnxruntime's profiling trace (``SessionOptions.enable_profiling`` on the host,
``onnxruntime_perf_test -p FILE`` on a device): a Chrome-trace JSON array of complete events.

- ``{"cat": "Session", "name": "model_run", "ts": µs, "dur": µs}``: one per ``Run()``;
- ``{"cat": "Node", "name": "<node>_kernel_time", "ts": .., "dur": .., "args": {"op_name": "Conv",
  "provider": "CPUExecutionProvider", "node_index": "9", ...}}``: one per node per run (``_fence_before`` /
  ``_fence_after`` events of older builds are not kernel time and are ignored);
- older builds wrap the array as ``{"traceEvents": [...]}``.

Node events are assigned to the run whose ``[ts, ts + dur]`` window holds them; the first ``skip_runs`` runs
(warm-up) are left out, and each node's time is the median over the kept runs of its time in that run (a
run the OS preempted mid-node would otherwise inflate that node several-fold on a busy host). Execution-provider
placement comes from ``args.provider``: nodes as ORT runs them (a fused EP partition is one node). Never raises.
"""

from __future__ import annotations

import bisect
import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import profiles

KERNEL_SUFFIX = "_kernel_time"
CPU_EP = "CPUExecutionProvider"


@dataclass
class OrtProfile:
    op_profile: list[dict[str, Any]] = field(default_factory=list)
    delegate_coverage: dict[str, Any] = field(default_factory=dict)
    runs: int = 0  # runs averaged over
    reason: str | None = None  # why there is no table


def _events(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("traceEvents", [])
    if not isinstance(data, list):
        raise ValueError("the trace is not a JSON array of events")
    return [e for e in data if isinstance(e, dict)]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def parse_trace(text: str, skip_runs: int = 0, provider: str | None = None) -> OrtProfile:
    """The per-node table and EP coverage of a trace. ``provider``: the execution provider asked for (its
    nodes are the "delegated" ones); by default the most used non-CPU provider, else the CPU's."""
    try:
        return _parse(text, max(0, int(skip_runs)), provider)
    except Exception as exc:  # a parser bug or a broken file: no table, with the reason
        return OrtProfile(reason=f"unreadable onnxruntime profile ({type(exc).__name__}: {str(exc)[:200]})")


def _parse(text: str, skip_runs: int, provider: str | None) -> OrtProfile:
    events = _events(text)
    runs = sorted(
        (ts, ts + dur)
        for e in events
        if e.get("name") == "model_run"
        and (ts := _num(e.get("ts"))) is not None
        and (dur := _num(e.get("dur"))) is not None
    )
    if not runs:
        return OrtProfile(reason="the onnxruntime profile has no model_run events")
    kept = runs[skip_runs:]
    if not kept:
        return OrtProfile(reason=f"the onnxruntime profile has {len(runs)} runs, all of them warm-up")
    starts = [r[0] for r in kept]
    per_run: dict[str, list[float]] = {}  # node -> its time in each kept run (µs)
    calls: dict[str, int] = {}
    ops: dict[str, str] = {}
    placed: dict[str, str] = {}
    first_seen: dict[str, float] = {}
    for e in events:
        name = e.get("name")
        if e.get("cat") != "Node" or not isinstance(name, str) or not name.endswith(KERNEL_SUFFIX):
            continue
        ts, dur = _num(e.get("ts")), _num(e.get("dur"))
        if ts is None or dur is None:
            continue
        raw_args = e.get("args")
        args: Mapping[str, Any] = raw_args if isinstance(raw_args, Mapping) else {}
        node = name[: -len(KERNEL_SUFFIX)]
        placed.setdefault(node, str(args.get("provider") or ""))
        ops.setdefault(node, str(args.get("op_name") or "?"))
        i = bisect.bisect_right(starts, ts) - 1
        if i < 0 or ts > kept[i][1]:
            continue  # a warm-up run's node (or outside every run)
        times = per_run.setdefault(node, [0.0] * len(kept))
        times[i] += dur
        calls[node] = calls.get(node, 0) + 1
        first_seen.setdefault(node, ts)
    n = len(kept)
    rows = [
        profiles.op_row(node, ops[node], statistics.median(times) / 1000.0, max(1, round(calls[node] / n)))
        for node, times in per_run.items()
    ]
    result = OrtProfile(op_profile=profiles.finish(rows), runs=n)
    if not rows:
        result.reason = "the onnxruntime profile has no node events in the timed runs"
    result.delegate_coverage = _coverage(placed, ops, first_seen, provider)
    return result


def _coverage(
    placed: dict[str, str], ops: dict[str, str], order: dict[str, float], provider: str | None
) -> dict[str, Any]:
    known = {node: ep for node, ep in placed.items() if ep}
    if not known:
        return {}
    if provider is None:
        counts: dict[str, int] = {}
        for ep in known.values():
            counts[ep] = counts.get(ep, 0) + 1
        others = {ep: c for ep, c in counts.items() if ep != CPU_EP}
        provider = max(others, key=lambda ep: others[ep]) if others else CPU_EP
    nodes = sorted(known, key=lambda node: order.get(node, math.inf))
    mine = [known[node] == provider for node in nodes]
    partitions = sum(1 for i, on in enumerate(mine) if on and (i == 0 or not mine[i - 1]))
    fallback: dict[str, int] = {}
    for node in nodes:
        if known[node] != provider:  # the op types the asked-for provider left to another one
            fallback[ops.get(node, "?")] = fallback.get(ops.get(node, "?"), 0) + 1
    return profiles.coverage(
        provider, sum(mine), len(nodes), partitions, profiles.CoverageSource.MEASURED, fallback or None
    )
