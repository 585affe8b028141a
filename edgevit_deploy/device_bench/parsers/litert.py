"""Parser of LiteRT / TFLite ``benchmark_model`` stdout (every variant seen in its README and public logs).

Recognised lines (with or without an "INFO: " / logcat "I tflite  : " prefix):

- ``count=N first=F curr=C min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]``: the first such line is
  the warm-up, the last one before the summary the regular runs (µs); ``count=1 curr=..`` for one run;
  ``Timings (microseconds): count=..`` in op-profiling tables is ignored.
- ``Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..``
- the older ``Average inference timings in us: Warmup: .., Init: .., Inference: ..`` (and ``no stats:``)
- ``Peak memory footprint (MB): init=.. overall=..``, ``Memory footprint delta from the start of the
  tool (MB): init=.. overall=..``, ``Overall peak memory footprint (MB) via periodic monitoring: ..``
- ``The input model file size (MB): ..``, ``Initialized session in ..ms``
- ``Replacing X out of Y node(s) with delegate``, ``delegate: X nodes delegated out of Y nodes``
- ``Replacing N out of M node(s) with delegate (NAME) node, yielding K partitions[ for the whole graph|
  for subgraph I]``: the row's ``delegate_coverage`` (an accelerator's line wins over XNNPACK's; several
  subgraphs add up); the old ``Replacing N node(s) with delegate`` (no total) gives no coverage.
- ``--enable_op_profiling=true`` tables (``tsl/util/stats_calculator.cc`` via
  ``tensorflow/lite/profiling/profile_summary_formatter.cc``): after "Operator-wise Profiling Info for
  Regular Benchmark Runs" (the "Profiling Info for Benchmark Initialization" tables are skipped), the
  "Run Order" table gives one op_profile row per node (``[avg ms]``, ``[%]``, ``[times called]``; the
  ``[start]`` column of older builds is optional), else "Top by Computation Time", else "Summary by node
  type" (per-type rows, node ""). ``[times called]`` 0 (older builds divided it away) counts as 1.
- failures: ``Failed to apply .. delegate``, ``Failed to create .. delegate``, ``Error applying the
  delegate``, ``Benchmarking failed``, a delegate that took 0 nodes ("Though .. delegate is explicitly
  applied, the model graph will not be executed by the delegate").
"""

from __future__ import annotations

import re
from typing import Any

from .. import profiles
from . import NUMBER, ParsedRun, error_lines, last_match, to_float, to_int

TOOL = "benchmark_model"
_US = 1e-3  # µs -> ms

_STAT = re.compile(
    rf"(?P<prefix>(?:Timings \(microseconds\)|Memory \(bytes\)):\s*)?\bcount=(?P<count>\d+)"
    rf"(?P<rest>(?:\s+\w+=(?:{NUMBER}|nan|-?inf))*)",
    re.IGNORECASE,
)
_KV = re.compile(rf"(\w+)=({NUMBER})")
_SUMMARY = re.compile(
    rf"Inference timings in us:\s*Init:\s*(?P<init>{NUMBER}),\s*First inference:\s*(?P<first>{NUMBER}),"
    rf"\s*Warmup \(avg\):\s*(?P<warmup>{NUMBER}),\s*Inference \(avg\):\s*(?P<avg>{NUMBER})"
)
_OLD_SUMMARY = re.compile(
    rf"Average inference timings in us:\s*Warmup:\s*(?P<warmup>{NUMBER}),\s*Init:\s*(?P<init>{NUMBER}),"
    rf"\s*(?:Inference|no stats):\s*(?P<avg>{NUMBER})"
)
_PEAK_MEM = re.compile(rf"Peak memory footprint \(MB\):\s*init=(?P<init>{NUMBER})\s+overall=(?P<overall>{NUMBER})")
_DELTA_MEM = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\):\s*init=(?P<init>{NUMBER})\s+"
    rf"overall=(?P<overall>{NUMBER})"
)
_PERIODIC_MEM = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(?P<mb>{NUMBER})")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\):\s*(?P<mb>{NUMBER})")
_SESSION = re.compile(rf"Initialized session in\s*(?P<ms>{NUMBER})\s*ms")
_REPLACING = re.compile(r"Replacing (?P<n>\d+) out of (?P<total>\d+) node\(s\) with delegate")
_DELEGATED = re.compile(r"(?P<n>\d+) nodes delegated out of (?P<total>\d+) nodes")
_FAILED = re.compile(
    r"(Failed to (?:apply|create) [\w\- ]*delegate[^\n]*|Error applying the delegate[^\n]*"
    r"|Benchmarking failed[^\n]*)",
    re.IGNORECASE,
)
_NOT_EXECUTED = re.compile(
    r"will not be executed by the delegate|Though \w+ delegate is explicitly applied", re.IGNORECASE
)
_DELEGATION = re.compile(
    r"Replacing (?P<n>\d+)(?: out of (?P<total>\d+))? node\(s\) with delegate \((?P<name>[^()\n]{0,120})\) node"
    r"(?:, yielding (?P<parts>\d+) partitions?)?(?: for (?:the whole graph|subgraph (?P<sub>\d+)))?"
)
_REGULAR_PROFILE = "Operator-wise Profiling Info for Regular Benchmark Runs"
_INIT_PROFILE = "Profiling Info for Benchmark Initialization"
_TABLE_TITLE = re.compile(r"={5,}\s*(?P<title>[A-Za-z][A-Za-z ]+?)\s*={5,}")
_NODE_ROW = re.compile(
    rf"(?P<type>\S(?:[^\n]*?\S)?)\s+(?:(?P<start>{NUMBER})\s+)?(?P<first>{NUMBER})\s+(?P<avg>{NUMBER})\s+"
    rf"(?P<pct>{NUMBER})%\s+(?P<cdf>{NUMBER})%\s+(?P<mem>{NUMBER})\s+(?P<times>\d+)\s+(?P<name>\S[^\n]*?)\s*$"
)
_TYPE_ROW = re.compile(
    rf"(?P<type>\S(?:[^\n]*?\S)?)\s+(?P<count>\d+)\s+(?P<avg>{NUMBER})\s+(?P<pct>{NUMBER})%\s+"
    rf"(?P<cdf>{NUMBER})%\s+(?P<mem>{NUMBER})\s+(?P<times>\d+)\s*$"
)
_MAX_ROW_CHARS = 2000  # longer lines are not table rows (and would only slow the row patterns down)
_LOG_PREFIX = re.compile(r"^(?:.*?\b[IVDWE]\s+tflite\s*:|INFO:|VERBOSE:)\s*")
_ERROR_MARKERS = ("error", "failed", "not supported", "abort", "segmentation fault", "cannot", "not found")


def _stat_lines(text: str) -> list[dict[str, float]]:
    rows = []
    for m in _STAT.finditer(text):
        if m.group("prefix") or m.group("count") == "0":
            continue  # op-profiling table totals, empty stats
        row: dict[str, float] = {"count": float(m.group("count"))}
        for key, value in _KV.findall(m.group("rest")):
            num = to_float(value)
            if num is not None:
                row[key.lower()] = num
        rows.append(row)
    return rows


def parse(text: str) -> ParsedRun:
    """Parse benchmark_model output; never raises."""
    run = ParsedRun(tool=TOOL)
    try:
        return _parse(text if isinstance(text, str) else str(text), run)
    except Exception as exc:  # a parser bug must give a failed row, not a crash of the sweep
        return run.fail(f"could not parse {TOOL} output ({type(exc).__name__}: {exc})")


def _parse(text: str, run: ParsedRun) -> ParsedRun:
    size = _MODEL_SIZE.search(text)
    run.model_size_mb = to_float(size.group("mb")) if size else None
    for pattern in (_REPLACING, _DELEGATED):
        m = last_match(pattern, text)
        if m:
            run.delegated_nodes = (int(m.group("n")), int(m.group("total")))
    failed = _FAILED.search(text)
    if failed:
        detail = error_lines(text, ("error:", "e tflite", "not supported", "failed to prepare"), limit=2)
        extra = f" ({'; '.join(detail)})" if detail else ""
        return run.fail(f"delegate failed: {failed.group(1).strip()}{extra}")
    if _NOT_EXECUTED.search(text) or (run.delegated_nodes is not None and run.delegated_nodes[0] == 0):
        return run.fail(
            "the delegate took 0 nodes: the model would run on the CPU, not on the requested "
            "delegate (ops unsupported by it)"
        )

    stats = _stat_lines(text)
    summary = last_match(_SUMMARY, text)
    old = last_match(_OLD_SUMMARY, text)
    if summary:
        run.variant = "inference-timings"
        run.init_ms = _ms(summary.group("init"))
        run.first_ms = _ms(summary.group("first"))
        run.warmup_mean_ms = _ms(summary.group("warmup"))
        run.latency.mean = _ms(summary.group("avg"))
    elif old:
        run.variant = "average-inference-timings (old)"
        run.init_ms = _ms(old.group("init"))
        run.warmup_mean_ms = _ms(old.group("warmup"))
        run.latency.mean = _ms(old.group("avg"))
    else:
        lines = error_lines(text, _ERROR_MARKERS)
        why = f": {'; '.join(lines)}" if lines else ""
        if not text.strip():
            return run.fail(f"{TOOL} printed nothing (binary missing, wrong ABI, or killed?)")
        return run.fail(f"no 'Inference timings' summary in {TOOL} output (truncated, crashed or not {TOOL}?){why}")

    if stats:
        regular = stats[-1]
        run.latency.count = to_int(str(regular.get("count")))
        if len(stats) >= 2:
            run.warmup_count = to_int(str(stats[0].get("count")))
        run.latency.std = _ms(regular.get("std"))
        run.latency.min = _ms(regular.get("min"))
        run.latency.max = _ms(regular.get("max"))
        run.latency.median = _ms(regular.get("median"))
        run.latency.p95 = _ms(regular.get("p95"))
        avg = _ms(regular.get("avg"))
        if run.latency.mean is None and avg is not None:
            run.latency.mean = avg
        if run.first_ms is None and len(stats) >= 2:
            run.first_ms = _ms(stats[0].get("first"))
        if run.latency.count == 1 and run.latency.median is None:
            run.latency.median = _ms(regular.get("curr"))
    if run.init_ms is None:
        session = _SESSION.search(text)
        run.init_ms = to_float(session.group("ms")) if session else None

    periodic = last_match(_PERIODIC_MEM, text)
    peak = last_match(_PEAK_MEM, text)
    delta = last_match(_DELTA_MEM, text)
    if periodic:
        run.peak_memory_mb = to_float(periodic.group("mb"))
    elif (m := peak or delta) is not None:
        run.peak_memory_mb = to_float(m.group("overall"))
        run.init_memory_mb = to_float(m.group("init"))
        if delta and not peak:
            run.warnings.append("memory is the delta from the tool's start (no --report_peak_memory_footprint)")

    if run.latency.mean is None or run.latency.mean <= 0:
        return run.fail(f"{TOOL} reported no usable average latency")
    run.delegate_coverage = coverage_from(delegations(text))
    run.op_profile = op_profile(text)
    run.ok = True
    return run


def delegations(text: str) -> list[dict[str, Any]]:
    """Every "Replacing N [out of M] node(s) with delegate (NAME) node, yielding K partitions" line, in order."""
    found = []
    for m in _DELEGATION.finditer(text):
        found.append(
            {
                "delegate": m.group("name").strip() or "unknown",
                "delegated": int(m.group("n")),
                "total": int(m.group("total")) if m.group("total") else None,
                "partitions": int(m.group("parts")) if m.group("parts") else 1,
                "subgraph": int(m.group("sub")) if m.group("sub") else 0,
            }
        )
    return found


def coverage_from(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's delegate coverage from :func:`delegations`: an accelerator's lines win over XNNPACK's (XNNPACK
    may take what the accelerator left); the last line per subgraph counts, subgraphs add up; {} without totals."""
    usable = [d for d in lines if d["total"] is not None]
    if not usable:
        return {}
    accelerators = [d for d in usable if "xnnpack" not in d["delegate"].lower()]
    chosen = accelerators or usable
    name = chosen[-1]["delegate"]
    per_subgraph = {d["subgraph"]: d for d in chosen if d["delegate"] == name}
    picked = list(per_subgraph.values())
    return profiles.coverage(
        name,
        sum(d["delegated"] for d in picked),
        sum(d["total"] for d in picked),
        sum(d["partitions"] for d in picked),
        profiles.CoverageSource.MEASURED,
    )


def _profile_region(text: str) -> str:
    """The regular runs' op-profiling tables: after the last "Operator-wise ... Regular Benchmark Runs" marker;
    without it (older builds), everything but the initialization section."""
    at = text.rfind(_REGULAR_PROFILE)
    if at >= 0:
        return text[at + len(_REGULAR_PROFILE) :]
    init = text.find(_INIT_PROFILE)
    if init < 0:
        return text
    end = text.find("nodes observed", init)
    return text[:init] + (text[end + len("nodes observed") :] if end >= 0 else "")


def _tables(region: str) -> dict[str, list[str]]:
    """Title -> row lines of each profiling table (the first table of each title)."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in region.splitlines():
        title = _TABLE_TITLE.search(raw)
        if title:
            name = title.group("title").strip().lower()
            current = [] if name not in tables else None
            if current is not None:
                tables[name] = current
            continue
        if current is None:
            continue
        line = _LOG_PREFIX.sub("", raw).rstrip()
        if not line.strip() or line.lstrip().startswith(("Timings (microseconds)", "Memory (bytes)")):
            if current:  # a blank line ends a table (after its header and rows)
                current = None
            continue
        if "[node type]" in line.lower() or len(line) > _MAX_ROW_CHARS:
            continue
        current.append(line)
    return tables


def _op_type(raw: str) -> str:
    """The node-type cell: the last tab-separated chunk (a log prefix may sit before it)."""
    return raw.split("\t")[-1].strip()


def _node_rows(lines: list[str]) -> list[dict[str, Any]]:
    rows = []
    for line in lines:
        m = _NODE_ROW.search(line)
        ms = to_float(m.group("avg")) if m else None
        if m is None or ms is None:
            continue
        times = int(m.group("times")) or 1
        rows.append(
            profiles.op_row(m.group("name").strip(), _op_type(m.group("type")), ms, times, to_float(m.group("pct")))
        )
    return rows


def _type_rows(lines: list[str]) -> list[dict[str, Any]]:
    rows = []
    for line in lines:
        m = _TYPE_ROW.search(line)
        ms = to_float(m.group("avg")) if m else None
        if m is None or ms is None:
            continue
        times = int(m.group("times")) or int(m.group("count")) or 1
        rows.append(profiles.op_row("", _op_type(m.group("type")), ms, times, to_float(m.group("pct"))))
    return rows


def op_profile(text: str) -> list[dict[str, Any]]:
    """The per-op table of the regular runs: every node ("Run Order"), else every node type ("Summary by node
    type"), else the top nodes only ("Top by Computation Time"); [] when the output has none."""
    tables = _tables(_profile_region(text))
    for rows in (
        _node_rows(tables.get("run order", [])),
        _type_rows(tables.get("summary by node type", [])),
        _node_rows(tables.get("top by computation time", [])),
    ):
        if rows:
            return profiles.finish(rows)
    return []


def _ms(value: float | str | None) -> float | None:
    num = to_float(value) if isinstance(value, str) else value
    return None if num is None else num * _US
