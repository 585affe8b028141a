"""Typed errors. Every message says what was wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence


class EdgeVitDeployError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class UnknownModelError(EdgeVitDeployError, ValueError):
    def __init__(self, name: str, suggestions: Sequence[str] = ()):
        self.name = name
        self.suggestions = list(suggestions)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"Unknown model {name!r}.{hint} Run `edgevit-export --list-models` to see every registered name, "
            "or use timm:NAME, path/to/file.py:factory or module:factory."
        )


class CheckpointError(EdgeVitDeployError, ValueError):
    """A checkpoint could not be read or does not fit the model."""

    def __init__(
        self, message: str, missing: Sequence[str] = (), unexpected: Sequence[str] = (), mismatched: Sequence[str] = ()
    ):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        parts = [message]
        for label, keys in (
            ("missing keys", self.missing),
            ("unexpected keys", self.unexpected),
            ("shape mismatches", self.mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        super().__init__("\n".join(parts))


class InputSizeError(EdgeVitDeployError, ValueError):
    pass


class OutputDirError(EdgeVitDeployError, OSError):
    pass


class MissingBackendError(EdgeVitDeployError, ImportError):
    def __init__(self, module: str, extra: str, detail: str = ""):
        self.module = module
        self.extra = extra
        more = f" ({detail})" if detail else ""
        super().__init__(
            f"{module} is needed for this step but could not be imported{more}. "
            f"Install the extra: pip install 'edgevit-deploy[{extra}]'."
        )


class ConversionError(EdgeVitDeployError, RuntimeError):
    def __init__(self, target: str, message: str, op: str | None = None):
        self.target = target
        self.op = op
        op_part = f" (unsupported op: {op})" if op else ""
        super().__init__(f"Conversion to {target} failed{op_part}: {message}")


class UnsupportedOptionError(EdgeVitDeployError, ValueError):
    """An option a target does not support (precision, quantization mode, layout...)."""


class QuantizationError(EdgeVitDeployError, ValueError):
    """Bad quantization settings or a quantization step that failed."""


class ParityError(EdgeVitDeployError, AssertionError):
    """Raised by the validator after collecting every failed check."""

    def __init__(self, failures: Sequence[str], report: object | None = None):
        self.failures = list(failures)
        self.report = report
        super().__init__("Parity check failed:\n- " + "\n- ".join(self.failures))


class RuntimeUnavailableError(EdgeVitDeployError, RuntimeError):
    """The host runtime of a target cannot execute here (e.g. Core ML prediction off macOS)."""


class ArtifactReadError(EdgeVitDeployError, ValueError):
    """An artifact that is missing, empty, truncated or not the format its suffix names (bad input)."""


def first_line(exc: BaseException | str, empty: str | None = None) -> str:
    """The first line of an exception's message, stripped: what a one-line error report quotes of a backend's
    (often multi-line) failure. A blank message gives ``empty``, by default ``repr(exc)``."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return repr(exc) if empty is None else empty
