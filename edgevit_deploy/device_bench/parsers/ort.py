"""Parser of ``onnxruntime_perf_test`` stdout (every variant from its README and public logs).

- ``Session creation time cost: X s`` (also without a space after the colon)
- ``First inference time cost: X ms``
- ``Total inference time cost: X s`` / old ``Total time cost: X``
- ``Total inference requests: N`` / old ``Total iterations: N`` / ``Runs:N``
- ``Average inference time cost: X ms`` / ``Average inference time cost total: X ms`` / old ``Average time cost: X ms``
- ``Total inference run time: X s`` / old ``Total run time: X s``
- ``Avg CPU usage: N %`` / ``Avg CPU usage:N``, ``Peak working set size: N bytes`` / ``Peak working set size:N``
- ``Min/Max Latency: X s``, ``P50/P90/P95/P99/P999 Latency: X s`` and the old ``P50 Latency is Xsec``
- failures: ORT error lines (``[E:onnxruntime:...]``, "Exception during initialization", "Failed to
  create ... EP", "... execution provider is not supported in this build") with no timings.

Per-iteration latencies come from the result file (``onnxruntime_perf_test ... model result_file``):
``model,seconds,peak_bytes,cpu,run`` (older) or ``model,submission_s,total_s,peak_bytes,cpu,run`` (newer).
"""

from __future__ import annotations

import re

from . import NUMBER, ParsedRun, error_lines, last_match, to_float, to_int

TOOL = "onnxruntime_perf_test"

_SESSION = re.compile(rf"Session creation time cost:\s*(?P<v>{NUMBER})\s*s\b")
_FIRST = re.compile(rf"First inference time cost:\s*(?P<v>{NUMBER})\s*ms")
_AVG = re.compile(rf"Average (?:inference )?time cost(?: total)?:\s*(?P<v>{NUMBER})\s*ms")
_REQUESTS = re.compile(r"(?:Total inference requests|Total iterations|^\s*Runs)\s*:\s*(?P<v>\d+)", re.M)
_CPU = re.compile(rf"Avg CPU usage:\s*(?P<v>{NUMBER})")
_PEAK = re.compile(r"Peak working set size:\s*(?P<v>\d+)")
_LATENCY = re.compile(
    rf"\b(?P<which>Min|Max|P50|P75|P90|P95|P99|P999) Latency(?::| is)\s*(?P<v>{NUMBER})"
    r"\s*(?P<unit>sec|s|se|ms)?\b"
)
_ERROR_MARKERS = (
    "[e:onnxruntime",
    "exception",
    "failed to create",
    "not supported in this build",
    "error:",
    "ort_runtime_exception",
    "invalid argument",
    "no such file",
    "fail",
)
_EP_FAILED = re.compile(
    r"(Failed to (?:create|add|register)[^\n]*(?:EP|Execution Provider|provider)[^\n]*"
    r"|[\w ]*(?:EP|execution provider)[^\n]*not (?:supported|available|enabled)[^\n]*"
    r"|\w+ is not supported in this build[^\n]*)",
    re.IGNORECASE,
)


def parse(text: str, result_file: str | None = None, model_path: str | None = None) -> ParsedRun:
    """Parse onnxruntime_perf_test stdout (and optionally its result file); never raises."""
    run = ParsedRun(tool=TOOL)
    try:
        return _parse(text if isinstance(text, str) else str(text), run, result_file, model_path)
    except Exception as exc:  # a parser bug must give a failed row, not a crash of the sweep
        return run.fail(f"could not parse {TOOL} output ({type(exc).__name__}: {exc})")


def _seconds_to_ms(value: str | None, unit: str | None) -> float | None:
    num = to_float(value)
    if num is None:
        return None
    return num if (unit or "").lower() == "ms" else num * 1000.0


def _parse(text: str, run: ParsedRun, result_file: str | None, model_path: str | None) -> ParsedRun:
    avg = last_match(_AVG, text)
    ep_failed = _EP_FAILED.search(text)
    if avg is None:
        if not text.strip():
            return run.fail(f"{TOOL} printed nothing (binary missing, wrong ABI, or killed?)")
        if ep_failed:
            return run.fail(f"execution provider failed: {ep_failed.group(1).strip()[:300]}")
        lines = error_lines(text, _ERROR_MARKERS)
        why = f": {'; '.join(lines)}" if lines else ""
        return run.fail(f"no 'Average inference time cost' in {TOOL} output (truncated, crashed or not {TOOL}?){why}")
    label = avg.group(0)
    run.variant = "cost-total" if "cost total" in label else ("cost" if "inference" in label else "old")
    run.latency.mean = to_float(avg.group("v"))
    session = last_match(_SESSION, text)
    run.init_ms = None if session is None else _seconds_to_ms(session.group("v"), "s")
    first = last_match(_FIRST, text)
    run.first_ms = to_float(first.group("v")) if first else None
    requests = _REQUESTS.search(text)
    run.latency.count = to_int(requests.group("v")) if requests else None
    cpu = _CPU.search(text)
    run.cpu_usage_pct = to_float(cpu.group("v")) if cpu else None
    peak = _PEAK.search(text)
    if peak:
        peak_bytes = to_float(peak.group("v"))
        run.peak_memory_mb = None if peak_bytes is None else peak_bytes / (1024.0 * 1024.0)
    for m in _LATENCY.finditer(text):
        value = _seconds_to_ms(m.group("v"), m.group("unit"))
        field = {
            "Min": "min",
            "Max": "max",
            "P50": "median",
            "P90": "p90",
            "P95": "p95",
            "P99": "p99",
            "P999": "p999",
        }.get(m.group("which"))
        if field and value is not None:
            setattr(run.latency, field, value)
    if result_file:
        latencies = parse_result_file(result_file, model_path)
        if latencies:
            run.apply_latencies(latencies)
        else:
            run.warnings.append("the result file had no per-run latencies")
    if run.latency.mean is None or run.latency.mean <= 0:
        return run.fail(f"{TOOL} reported no usable average latency")
    run.ok = True
    return run


def parse_result_file(text: str, model_path: str | None = None) -> list[float]:
    """Per-run latencies (ms) from perf_test's result file; rows that do not parse are skipped."""
    latencies: list[float] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if model_path and line.startswith(model_path + ","):
            cols = line[len(model_path) + 1 :].split(",")
        else:
            cols = line.split(",")[1:]
        # old: seconds, peak, cpu, run   new: submission_s, total_s, peak, cpu, run
        if len(cols) == 5:
            seconds = to_float(cols[1])
        elif len(cols) == 4:
            seconds = to_float(cols[0])
        else:
            continue
        if seconds is not None and seconds >= 0:
            latencies.append(seconds * 1000.0)
    return latencies
