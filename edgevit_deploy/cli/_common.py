"""Shared CLI plumbing: logging to the console, tables, error handling. Only the CLI prints."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import EdgeVitDeployError

# wide tables when output goes to a file or CI log (rich falls back to 80 columns there)
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
    logging.basicConfig(level=logging.ERROR, handlers=[ConsoleLogHandler(show_names=verbose >= 2)], force=True)
    logging.getLogger("edgevit_deploy").setLevel(level)
    for noisy in THIRD_PARTY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def handle_errors(fn: F) -> F:
    """Turn the toolkit's typed errors into a one-paragraph message and exit code 2 (bad input) or 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeVitDeployError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
            code = EXIT_USAGE if isinstance(exc, (ValueError, OSError, ImportError)) else EXIT_FAILED
            sys.exit(code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: results written so far are kept on disk.")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


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
