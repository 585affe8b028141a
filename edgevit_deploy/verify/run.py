"""THE one way to run an artifact for checking (parity at export, ``edgevit-verify``, the fidelity report).

A crash, a runtime that rejects the file, or an op the runtime cannot run are *failures* with the reason.
"Not executed" is kept for a runtime that cannot exist on this host: its Python module is not installed, or
Core ML's native ``MLModel.predict`` off macOS when the reference executor was not chosen.
"""

from __future__ import annotations

import logging
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
    spec: TargetSpec, path: Path, x: np.ndarray, threads: int = 1, coreml_executor: str = "auto"
) -> RunOutcome:
    """Run ``path`` in ``spec``'s host runtime on the normalised NCHW batch ``x``. Never raises for a broken
    artifact: the outcome says what happened."""
    runtime = spec.load_host_runtime()
    reason = runtime.unavailable_reason()
    if reason:
        return RunOutcome(None, runtime.name, executed=False, reason=reason)
    options = spec.runtime_options(coreml_executor)
    session = None
    try:
        session = runtime.load(Path(path), threads=threads, **options)
        out = session.run(x)
    except MilExecutorError as exc:  # an op the reference executor cannot run, a program it cannot read
        return RunOutcome(None, runtime.name, executed=True, reason=first_line(exc))
    except RuntimeUnavailableError as exc:  # e.g. MLModel.predict asked for off macOS
        log.warning("%s: not executed: %s", spec.target, exc)
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
