"""Parser of ExecuTorch's ``executor_runner`` output (``examples/portable/executor_runner``, pytorch/executorch).

The runner logs through ``ET_LOG``; the posix PAL (the default of a CMake build, also with the NDK toolchain)
writes ``I 00:00:00.043703 executorch:executor_runner.cpp:379] MESSAGE`` lines to stderr, the Android PAL
(``--preset android``) sends the bare MESSAGE to logcat under the tag ``ExecuTorch``
(``I/ExecuTorch( 1234): MESSAGE`` in ``logcat -v brief``, ``12-05 11:00:00.123  1234  1234 I ExecuTorch: MESSAGE``
in ``-v threadtime``). Messages are matched wherever they stand on a line, so every prefix parses alike.

- ``Model executed successfully N time(s) in X ms.`` (1.0 and later): the total of N executions;
- ``Iteration i of N: X ms`` (1.3 and later): one line per execution, the per-run latencies;
- ``Model loaded in X ms.`` (1.3 and later): program + method load, the init time;
- ``Resetting threadpool with num threads = N``: the threads the XNNPACK threadpool got (``--cpu_threads``);
- the 2023 runner's bare ``Model executed successfully.`` has no time: a failed row saying so.

Failures (no success line): ``Missing operator: [i] aten::op.out`` (a kernel the binary was built without),
``Backend X is not registered.`` / ``is not available.`` (a delegate the binary lacks), ``assert failed``
lines (``Loading of method forward failed with status 0x14``, ``Execution of method ... failed``), gflags'
``ERROR: unknown command line flag 'x'`` and file errors, each becoming the row's reason. Status codes are
named from ``runtime/core/error.h``.
"""

from __future__ import annotations

import re

from . import NUMBER, ParsedRun, error_lines, last_match, to_float, to_int

TOOL = "executor_runner"

_EXECUTED = re.compile(rf"Model executed successfully (?P<n>\d+) time\(s\) in (?P<ms>{NUMBER}) ms")
_EXECUTED_OLD = re.compile(r"Model executed successfully\.?\s*$", re.M)
_ITERATION = re.compile(rf"Iteration (?P<i>\d+) of (?P<n>\d+): (?P<ms>{NUMBER}) ms")
_LOADED = re.compile(rf"Model loaded in (?P<ms>{NUMBER}) ms")
_THREADS = re.compile(r"Resetting threadpool with num threads = (?P<n>-?\d+)")
_MISSING_OP = re.compile(r"Missing operator: \[\d+\] (?P<op>[\w:.]+)")
_BACKEND = re.compile(r"Backend (?P<b>\w+) is not (?P<why>registered|available)")
_UNKNOWN_FLAG = re.compile(r"unknown command line flag '(?P<flag>[\w-]+)'")
_STATUS = re.compile(r"status 0x(?P<code>[0-9a-fA-F]+)")
_ASSERT = re.compile(r"assert failed[^\n]*?\):\s*(?P<msg>[^\n]+)")
_ERROR_MARKERS = ("assert failed", "failed", "error", "not found", "no such file", "cannot", "aborted")

#: ``runtime/core/error.h`` (pytorch/executorch): the codes a failed load / execute reports
STATUS_NAMES = {
    0x01: "Internal",
    0x02: "InvalidState",
    0x03: "EndOfMethod",
    0x10: "NotSupported",
    0x11: "NotImplemented",
    0x12: "InvalidArgument",
    0x13: "InvalidType",
    0x14: "OperatorMissing",
    0x20: "NotFound",
    0x21: "MemoryAllocationFailed",
    0x22: "AccessFailed",
    0x23: "InvalidProgram",
    0x24: "InvalidExternalData",
    0x25: "OutOfResources",
    0x30: "DelegateInvalidCompatibility",
    0x31: "DelegateMemoryAllocationFailed",
    0x32: "DelegateInvalidHandle",
}


def has_runner_log(text: str) -> bool:
    """Whether ``text`` holds any of executor_runner's own log messages (else its log went to logcat)."""
    return any(
        p.search(text) for p in (_EXECUTED, _EXECUTED_OLD, _ITERATION, _LOADED, _THREADS, _MISSING_OP, _BACKEND)
    ) or ("executor_runner.cpp" in text)


def parse(text: str, warmup: int = 0, threads: int | None = None) -> ParsedRun:
    """Parse executor_runner's log; never raises.

    ``warmup``: how many of the executions were warm-up (the runner has no warm-up flag: the sweep asks for
    warm-up + timed executions and the first ``warmup`` per-iteration lines are left out). ``threads``: the
    count asked for, checked against the threadpool line when there is one."""
    run = ParsedRun(tool=TOOL)
    try:
        return _parse(text if isinstance(text, str) else str(text), run, max(0, int(warmup)), threads)
    except Exception as exc:  # a parser bug must give a failed row, not a crash of the sweep
        return run.fail(f"could not parse {TOOL} output ({type(exc).__name__}: {exc})")


def status_name(text: str) -> str:
    m = _STATUS.search(text)
    if m is None:
        return ""
    code = int(m.group("code"), 16)
    return f"0x{code:x} {STATUS_NAMES.get(code, 'unknown status')}"


def _failure(text: str) -> str:
    flag = _UNKNOWN_FLAG.search(text)
    if flag:
        name = flag.group("flag")
        hint = " (a build older than ExecuTorch 0.6: rebuild it from a current release)"
        return f"{TOOL} does not know --{name}" + (hint if name == "cpu_threads" else "")
    ops = list(dict.fromkeys(m.group("op") for m in _MISSING_OP.finditer(text)))
    if ops:
        shown = ", ".join(ops[:5]) + (f" and {len(ops) - 5} more" if len(ops) > 5 else "")
        return f"{TOOL} lacks kernels for {shown} (rebuild it with the portable / optimized kernels that have them)"
    backend = _BACKEND.search(text)
    if backend:
        return (
            f"the program is delegated to {backend.group('b')}, which this {TOOL} build does not have "
            f"({backend.group('why')}; rebuild with that backend linked)"
        )
    if _EXECUTED_OLD.search(text):
        return f"{TOOL} said 'Model executed successfully.' without a time (a 2023 build): no latency to record"
    failed = _ASSERT.search(text)
    if failed:
        msg = failed.group("msg").strip()
        code = status_name(msg)
        return f"{TOOL} stopped: {msg[:200]}" + (f" ({code})" if code and code not in msg else "")
    lines = error_lines(text, _ERROR_MARKERS)
    why = f": {'; '.join(lines)}" if lines else ""
    return f"no 'Model executed successfully' in {TOOL} output (truncated, crashed or not {TOOL}?){why}"


def _parse(text: str, run: ParsedRun, warmup: int, threads: int | None) -> ParsedRun:
    if not text.strip():
        return run.fail(f"{TOOL} printed nothing (binary missing, wrong ABI, killed, or its log went to logcat?)")
    executed = last_match(_EXECUTED, text)
    if executed is None:
        return run.fail(_failure(text))
    count = to_int(executed.group("n"))
    total = to_float(executed.group("ms"))
    if not count or total is None or total < 0:
        return run.fail(f"{TOOL} reported an unusable total ({executed.group(0)!r})")
    loaded = last_match(_LOADED, text)
    run.init_ms = to_float(loaded.group("ms")) if loaded else None
    pool = last_match(_THREADS, text)
    if pool is not None and threads is not None and to_int(pool.group("n")) != threads:
        run.warnings.append(f"{TOOL} reset its threadpool to {pool.group('n')} threads, {threads} were asked for")
    per_run: dict[int, float] = {}
    for m in _ITERATION.finditer(text):
        i, ms = to_int(m.group("i")), to_float(m.group("ms"))
        if i is not None and ms is not None and ms >= 0 and to_int(m.group("n")) == count:
            per_run[i] = ms
    if per_run:
        run.variant = "per-iteration"
        ordered = [per_run[i] for i in sorted(per_run)]
        if len(ordered) != count:
            run.warnings.append(f"{len(ordered)} of {count} per-iteration lines parsed")
        kept = ordered[warmup:] if len(ordered) > warmup else ordered[-1:]
        if warmup and len(ordered) > warmup:
            run.first_ms = ordered[0]
            run.warmup_count = warmup
            run.warmup_mean_ms = sum(ordered[:warmup]) / warmup
        run.apply_latencies(kept)
    else:
        # the 1.0-1.2 runner prints only the total: the mean over every execution, warm-up ones included
        run.variant = "total"
        run.latency.mean = total / count
        run.latency.count = count
        if warmup:
            run.warnings.append(
                f"{TOOL} printed no per-iteration times (a build before 1.3): the mean includes the "
                f"{warmup} warm-up execution(s)"
            )
    if run.latency.mean is None or run.latency.mean <= 0:
        return run.fail(f"{TOOL} reported no usable latency")
    run.ok = True
    return run
