"""Errors of the reference ML Program executor."""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import EdgeVitDeployError, RuntimeUnavailableError


class MilExecutorError(RuntimeUnavailableError):
    """The reference executor cannot run this program. Subclasses ``RuntimeUnavailableError`` so that
    a parity check records ``executed: false`` with this message instead of passing silently."""


class UnsupportedMilOpError(MilExecutorError):
    """The program uses an op (or an op variant) the reference executor does not implement."""

    def __init__(self, op_type: str, detail: str = "", ops: Sequence[str] = ()):
        self.op_type = op_type
        self.ops = list(ops) or [op_type]
        what = f"op {op_type!r}" + (f" ({detail})" if detail else "")
        others = f" Unsupported ops in this program: {', '.join(self.ops)}." if len(self.ops) > 1 else ""
        super().__init__(
            f"The reference ML Program executor does not implement {what}.{others} Run the model with "
            "MLModel.predict on macOS (--coreml-executor native), or add the op to "
            "edgevit_deploy/verify/mil/ops/."
        )


class MilProgramError(MilExecutorError):
    """The package is not an ML Program the executor can read, or a feed does not fit it."""


class MilOpExecutionError(EdgeVitDeployError, RuntimeError):
    """An op failed while running (a malformed program, or a bug in the executor): a real failure, not
    a reason to skip the check."""

    def __init__(self, op_type: str, op_name: str, cause: BaseException):
        self.op_type = op_type
        self.op_name = op_name
        super().__init__(
            f"ML Program op {op_type} {op_name!r} failed in the reference executor: {type(cause).__name__}: {cause}"
        )
