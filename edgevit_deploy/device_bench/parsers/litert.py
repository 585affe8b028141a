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
- failures: ``Failed to apply .. delegate``, ``Failed to create .. delegate``, ``Error applying the
  delegate``, ``Benchmarking failed``, a delegate that took 0 nodes ("Though .. delegate is explicitly
  applied, the model graph will not be executed by the delegate").
"""

from __future__ import annotations

import re

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
    run.ok = True
    return run


def _ms(value: float | str | None) -> float | None:
    num = to_float(value) if isinstance(value, str) else value
    return None if num is None else num * _US
