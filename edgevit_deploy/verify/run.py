"""THE one way to run an artifact for checking (parity at export, ``edgevit-verify``, the fidelity report).

A crash, a runtime that rejects the file, or an op the runtime cannot run are *failures* with the reason.
"Not executed" is kept for a runtime that cannot exist on this host: its Python module is not installed, or
Core ML's native ``MLModel.predict`` off macOS when the reference executor was not chosen.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..converters.table import TargetSpec
from ..errors import EdgeVitDeployError, RuntimeUnavailableError, first_line
from .mil.errors import MilExecutorError
from .report import ParityReport

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """``outputs`` when the artifact ran; otherwise ``executed`` says whether it was a failure (True: the
    runtime exists here and could not run the file) or could not run on this host at all (False)."""

    outputs: np.ndarray | None
    executor: str
    executed: bool
    reason: str | None = None
    session: Any = None

    @property
    def ok(self) -> bool:
        return self.outputs is not None

    def report(self) -> ParityReport:
        """The parity report of a run that produced no outputs."""
        if self.ok:
            raise ValueError("the artifact ran; compare its outputs with validate_outputs")
        if not self.executed:
            return ParityReport.not_executed(str(self.reason), executor=self.executor)
        return ParityReport(
            executed=True, passed=False, executor=self.executor, reason=self.reason, failures=[str(self.reason)]
        )


def run_artifact(
    spec: TargetSpec,
    path: Path,
    x: np.ndarray,
    threads: int = 1,
    coreml_executor: str = "auto",
    isolate: bool | None = None,
) -> RunOutcome:
    """Run ``path`` in ``spec``'s host runtime on the normalised NCHW batch ``x``. Never raises for a broken
    artifact: the outcome says what happened. ``isolate`` (default: the target's ``isolated_runs``) runs the
    runtime in a child process, so that a native crash (a segfault in the runtime's kernels) is a failure
    with the signal's name instead of the end of this process."""
    runtime = spec.load_host_runtime()
    reason = runtime.unavailable_reason()
    if reason:
        return RunOutcome(None, runtime.name, executed=False, reason=reason)
    options = spec.runtime_options(coreml_executor)
    if spec.isolated_runs if isolate is None else isolate:
        return run_in_child(spec.host_runtime, runtime.name, Path(path), x, threads, options)
    return run_here(runtime, spec.target, Path(path), x, threads, options)


def run_here(runtime: Any, target: str, path: Path, x: np.ndarray, threads: int, options: dict[str, str]) -> RunOutcome:
    """:func:`run_artifact` in this process (``runtime``: a loaded :class:`~.runtimes.HostRuntime`)."""
    session = None
    try:
        session = runtime.load(Path(path), threads=threads, **options)
        out = session.run(x)
    except MilExecutorError as exc:  # an op the reference executor cannot run, a program it cannot read
        return RunOutcome(None, runtime.name, executed=True, reason=first_line(exc))
    except RuntimeUnavailableError as exc:  # e.g. MLModel.predict asked for off macOS
        log.warning("%s: not executed: %s", target, exc)
        return RunOutcome(None, runtime.name, executed=False, reason=first_line(exc))
    except EdgeVitDeployError as exc:  # an op that crashed while running (MilOpExecutionError), ...
        return RunOutcome(None, getattr(session, "executor", runtime.name), executed=True, reason=first_line(exc))
    except Exception as exc:  # the runtime rejected the artifact or crashed on it: a failure, not a skip
        return RunOutcome(
            None,
            getattr(session, "executor", runtime.name),
            executed=True,
            reason=f"the runtime failed to run the artifact: {first_line(exc)}",
        )
    return RunOutcome(np.asarray(out, dtype=np.float32), session.executor, executed=True, session=session)


def child_command(request: Path) -> list[str]:
    """The command line of the child that runs one request (``python -m edgevit_deploy.verify._child``)."""
    return [sys.executable, "-m", "edgevit_deploy.verify._child", str(request)]


def run_in_child(
    host_runtime: str,
    runtime_name: str,
    path: Path,
    x: np.ndarray,
    threads: int,
    options: dict[str, str],
    command: list[str] | None = None,
) -> RunOutcome:
    """:func:`run_here` in a child process (``host_runtime``: the table's "module:Class"). The child writes
    its outputs and verdict to a temp folder; a child killed by a signal, or one that exits without a verdict,
    is a failure that names the signal or the child's last error line. ``command`` replaces the child's
    command line (tests)."""
    with tempfile.TemporaryDirectory(prefix="edgevit-run-") as tmp:
        folder = Path(tmp)
        np.save(folder / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
        request = folder / "request.json"
        job = {"host_runtime": host_runtime, "path": str(Path(path).resolve()), "threads": threads, "options": options}
        request.write_text(json.dumps(job))
        proc = subprocess.run(command or child_command(request), capture_output=True, text=True, check=False)
        for line in proc.stderr.splitlines():
            log.debug("[%s child] %s", runtime_name, line)
        verdict_path = folder / "verdict.json"
        if proc.returncode == 0 and verdict_path.is_file():
            verdict = json.loads(verdict_path.read_text())
            outputs = np.load(folder / "y.npy") if verdict.get("ok") else None
            executed = bool(verdict["executed"])
            return RunOutcome(outputs, verdict["executor"], executed=executed, reason=verdict["reason"])
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        why = f"the {runtime_name} runtime crashed ({sig}) running the artifact"
    else:
        last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no output")
        why = f"the {runtime_name} runtime's process exited with code {proc.returncode}: {last[:200]}"
    log.warning("%s", why)
    return RunOutcome(None, runtime_name, executed=True, reason=why)
