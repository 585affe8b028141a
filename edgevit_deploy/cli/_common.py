"""Shared CLI plumbing: logging to the console, tables, and THE error handler and exit-code policy of every
command (edgevit-export, edgevit-verify, edgevit-eval, edgevit-bench). Only the CLI prints.

Exit codes: 0 done; 1 a run failed (an export, a parity check, failed rows, a store that could not be written
mid-run); 2 bad input (one ``error:`` line saying what was wrong and what to do, nothing created); 130
interrupted (Ctrl-C); 143 terminated (SIGTERM, handled as Ctrl-C is: what was committed stays). An error
class may declare its own code (``exit_code = 2`` on the class: see :func:`exit_code_for`); otherwise
ValueError / OSError / ImportError are bad input and the rest failures.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ..errors import EdgeVitDeployError

# wide tables when output goes to a file or CI log (rich falls back to 80 columns there; the bench's tables
# have 18 columns)
console = Console(stderr=False, width=None if sys.stdout.isatty() else 220)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, ``kill``, a container stop), raised in the main thread so that it unwinds like
    Ctrl-C: the sweep stops its devices and worker processes, temp files are removed, committed rows stay."""


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise Terminated(f"signal {signum}")


def install_sigterm_handler() -> None:
    """SIGTERM as :class:`Terminated` (exit 143) for the rest of this process (main thread only; a SIGTERM
    that the parent set to be ignored stays ignored, as a SIGINT does)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


# third-party loggers kept at ERROR (their INFO / WARNING chatter is not about the user's input)
THIRD_PARTY_LOGGERS = (
    "coremltools",
    "absl",
    "jax",
    "jaxlib",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "tensorflow",
    "tf2onnx",
    "litert_torch",
    "ai_edge_torch",
    "ai_edge_quantizer",
    "ai_edge_litert",
    "torchao",
    "executorch",
    "timm",
    "PIL",
    "matplotlib",
    "urllib3",
    "h5py",
)


class ConsoleLogHandler(logging.Handler):
    """One plain line per record on stderr, e.g. ``warning: edgevit_xxs: dropping the classifier ...``
    (with the logger's name from -vv); printed through the rich console so that it stays above a progress bar."""

    def __init__(self, show_names: bool = False):
        super().__init__()
        self.show_names = show_names

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelname.lower()
            where = f"{record.name}: " if self.show_names else ""
            text = record.getMessage()
            if record.exc_info and self.show_names:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            err_console.print(f"{level}: {where}{text}", markup=False, highlight=False, soft_wrap=True)
        except Exception:  # never let logging break a command
            self.handleError(record)


def setup_logging(verbose: int) -> None:
    """The toolkit's warnings (-v: info, -vv: debug) on stderr, one line each; everything else at ERROR."""
    level = logging.WARNING - 10 * min(verbose, 2)
    if verbose < 2:  # the C++ logs of TensorFlow / LiteRT's converter (set before they are imported)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GLOG_minloglevel", "2")
        # torch installs its own handler on "torch" when imported (after this, in a sweep or its workers),
        # resetting the level set below: its TORCH_LOGS syntax for "torch at ERROR"
        os.environ.setdefault("TORCH_LOGS", "-torch")
    logging.basicConfig(level=logging.ERROR, handlers=[ConsoleLogHandler(show_names=verbose >= 2)], force=True)
    logging.getLogger("edgevit_deploy").setLevel(level)
    for noisy in THIRD_PARTY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def exit_code_for(exc: BaseException) -> int:
    """THE exit-code policy: the code the error class declares (``exit_code``), else 2 for bad input
    (ValueError, OSError, ImportError: a wrong value, path or missing extra) and 1 for a failure."""
    declared = getattr(exc, "exit_code", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    return EXIT_USAGE if isinstance(exc, (ValueError, OSError, ImportError)) else EXIT_FAILED


def error_line(message: str) -> None:
    """One plain ``error:`` line on stderr (whitespace and line breaks folded: rich would wrap it)."""
    click.echo("error: " + " ".join(str(message).split()), err=True)


def fail(exc: BaseException, code: int | None = None) -> NoReturn:
    """Print ``exc`` and exit with ``code`` (default: :func:`exit_code_for`). Bad input is one line; a failure
    keeps its message's line breaks (e.g. the list of failed parity checks)."""
    code = exit_code_for(exc) if code is None else code
    if code == EXIT_USAGE:
        error_line(str(exc))
    else:
        click.echo(f"error: {str(exc).strip()}", err=True)
    sys.exit(code)


def interrupted(detail: str = "results written so far are kept on disk") -> NoReturn:
    """Ctrl-C (exit 130) or SIGTERM (exit 143): one line saying what was kept."""
    exc = sys.exc_info()[1]
    terminated = isinstance(exc, Terminated)
    click.echo(f"interrupted{' (SIGTERM)' if terminated else ''}: {detail}", err=True)
    sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)


def handle_errors(fn: F) -> F:
    """The toolkit's typed errors as one ``error:`` message and the policy's exit code; Ctrl-C as exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeVitDeployError as exc:
            fail(exc)
        except KeyboardInterrupt:
            interrupted()

    return wrapper  # type: ignore[return-value]


_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class _OneLineErrors:
    """Click's usage errors (unknown option, bad choice, missing option) as one ``error:`` line with click's
    exit code (2), Ctrl-C outside a command as exit 130; ``--help`` and a bare group show the usage."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        install_sigterm_handler()
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except _NO_ARGS_IS_HELP as exc:  # bare `edgevit-bench`: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:  # --help, --version
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            error_line(exc.format_message())
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            interrupted()
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


class OneLineCommand(_OneLineErrors, click.Command):
    """A command with the one error policy (``@click.command(cls=OneLineCommand)``)."""


class OneLineGroup(_OneLineErrors, click.Group):
    """A group with the one error policy (``@click.group(cls=OneLineGroup)``)."""


def split_csv(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec)


def status_cell(executed: bool, passed: bool, error: str | None) -> str:
    if error:
        return "[red]export failed[/]"
    if not executed:
        return "[yellow]not executed[/]"
    return "[green]pass[/]" if passed else "[bold red]FAIL[/]"


def parity_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """rows: target, file, size_bytes, export_s, parity (dict), error."""
    table = Table(title=title, show_lines=False)
    for col, justify in (
        ("target", "left"),
        ("file", "left"),
        ("size MB", "right"),
        ("export s", "right"),
        ("max abs err", "right"),
        ("cosine", "right"),
        ("top-1 agr.", "right"),
        ("executor", "left"),
        ("result", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        p = r["parity"]
        size = r.get("size_bytes")
        table.add_row(
            r["target"],
            r.get("file") or "-",
            fmt(size / 1e6 if size else None, ".2f"),
            fmt(r.get("export_s"), ".1f"),
            fmt(p.get("max_abs"), ".2e"),
            fmt(p.get("cosine"), ".6f"),
            fmt(p.get("top1_agreement") * 100 if p.get("top1_agreement") is not None else None, ".0f")
            + ("%" if p.get("top1_agreement") is not None else ""),
            p.get("executor") or "-",
            status_cell(p["executed"], p["passed"], r.get("error")),
        )
    return table


def print_reasons(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        p = r["parity"]
        if r.get("error"):
            console.print(f"[red]{r['target']}[/]: {r['error']}", highlight=False, soft_wrap=True)
        elif p.get("reason") and not p.get("passed"):
            color = "yellow" if not p["executed"] else "red"
            console.print(f"[{color}]{r['target']}[/]: {p['reason']}", highlight=False, soft_wrap=True)


def exit_code(rows: list[dict[str, Any]], require_execution: bool) -> int:
    for r in rows:
        p = r["parity"]
        if r.get("error") or (p["executed"] and not p["passed"]) or (require_execution and not p["executed"]):
            return EXIT_FAILED
    return EXIT_OK


def choice_of(values: Iterable[str]) -> click.Choice:
    return click.Choice(list(values), case_sensitive=False)
