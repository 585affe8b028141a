"""ExecuTorch's ``executor_runner`` on an Android device (``.pte`` artifacts), a user-built binary like
LiteRT's ``benchmark_model``.

Flags, as ``examples/portable/executor_runner/executor_runner.cpp`` (pytorch/executorch, v1.0.0 to main) defines
them with gflags: ``--model_path``, ``--num_executions`` (default 1) and ``--cpu_threads`` (since v0.6.0; -1 = the
performant cores; it sizes the threadpool in builds with ``ET_USE_THREADPOOL``, as XNNPACK builds are). The runner has
no warm-up flag: it is asked for warm-up + timed executions, and the parser leaves the first ``warmup``
per-iteration lines out (builds before 1.3 print only the total: the mean then includes them, with a note).
Inputs are the runner's own (every element 1.0); the delegate is baked into the program, so the job's
delegate only says what the row is (``cpu`` / ``xnnpack``).

A binary built with the Android PAL (``cmake --preset android-arm64-v8a``) logs to logcat instead of stderr: when
the run's own output holds no runner log, the last run's lines are read from ``logcat -d -s ExecuTorch``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import ClassVar

from ..errors import RunnerConfigError
from ..parsers import ParsedRun
from ..parsers import executorch as et_parser
from ..shell import quote
from ..types import BenchJob, ShellResult, Transport
from .android_tool import AndroidToolRunner
from .config import RunnerConfig

#: environment variable naming the host path of the executor_runner binary when no flag / config value does
ENV_EXECUTOR_RUNNER = "EDGEVIT_EXECUTOR_RUNNER"
LOGCAT_TAG = "ExecuTorch"
SOURCES = (
    "build it from pytorch/executorch for Android: cmake -DCMAKE_TOOLCHAIN_FILE=$ANDROID_NDK/build/cmake/"
    "android.toolchain.cmake -DANDROID_ABI=arm64-v8a -DEXECUTORCH_BUILD_XNNPACK=ON "
    "-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON ... then cmake --build ... --target executor_runner "
    "(docs: using-executorch-building-from-source); ExecuTorch publishes no prebuilt binary"
)


class ExecutorRunnerRunner(AndroidToolRunner):
    name = "executor_runner"
    tool = "executor_runner"
    delegates: ClassVar[dict[str, str]] = {"cpu": "", "xnnpack": ""}  # the delegate is inside the .pte

    def __init__(self, config: RunnerConfig | None = None):
        super().__init__(config)
        self._local = threading.local()  # the job of the run in progress (command and parse run in one thread)

    def tool_binary(self) -> Path:
        path = getattr(self.config, "executor_runner", None) or os.environ.get(ENV_EXECUTOR_RUNNER) or None
        if path is None:
            raise RunnerConfigError(
                f"no executor_runner binary configured: pass --executor-runner PATH, set ${ENV_EXECUTOR_RUNNER}, "
                "or `executor_runner:` in the sweep file's runners table (docs/executorch.md: build it)"
            )
        path = Path(path).expanduser()
        if not path.is_file():
            raise RunnerConfigError(f"executor_runner binary {path} does not exist (check ${ENV_EXECUTOR_RUNNER})")
        return path

    def command(self, job: BenchJob, tool_path: str, model_path: str, scratch: str) -> list[str]:
        self._local.job = job
        return [
            tool_path,
            f"--model_path={model_path}",
            f"--num_executions={job.warmup + job.iterations}",
            f"--cpu_threads={job.threads}",
        ]

    def parse(self, transport: Transport, result: ShellResult, model_path: str, scratch: str) -> ParsedRun:
        job: BenchJob | None = getattr(self._local, "job", None)
        warmup, threads = (job.warmup, job.threads) if job is not None else (0, None)
        text = result.stdout + ("\n" + result.stderr if result.stderr else "")
        from_logcat = False
        if not et_parser.has_runner_log(text) and not result.timed_out:
            logged = _logcat_of_last_run(transport, model_path)
            if logged:
                text, from_logcat = logged, True
        parsed = et_parser.parse(text, warmup=warmup, threads=threads)
        if from_logcat:
            parsed.warnings.append(f"executor_runner logs to logcat (Android PAL): read from `logcat -s {LOGCAT_TAG}`")
        return parsed


def _logcat_of_last_run(transport: Transport, model_path: str) -> str:
    """The ExecuTorch logcat lines from the last 'Model file MODEL is loaded.' on ("" when there are none)."""
    res = transport.shell(f"logcat -d -v brief -s {quote(LOGCAT_TAG + ':*')} 2>/dev/null", timeout=60)
    if not res.ok or not res.stdout.strip():
        return ""
    lines = res.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if f"Model file {model_path} is loaded" in line]
    return "\n".join(lines[starts[-1] :]) if starts else ""
