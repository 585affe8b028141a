"""``edgevit-bench coverage MODEL_OR_ARTIFACT``: offline delegate-coverage predictions (before any phone).

Registered on the ``edgevit-bench`` group by one import line at the end of ``cli/bench_cmd.py``; the work is
:mod:`edgevit_deploy.device_bench.coverage`. Exit codes: 0 printed, 2 bad input (one ``error:`` line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import console, error_line, handle_errors


@click.command("coverage")
@click.argument("what", metavar="MODEL_OR_ARTIFACT")
@click.option(
    "--target",
    "targets",
    type=click.Choice(["tflite", "onnx", "all"]),
    default="all",
    show_default=True,
    help="For a model name: which export(s) to predict (LiteRT XNNPACK; ORT NNAPI / Core ML EPs).",
)
@click.option("--img-size", type=int, help="Input size of an on-demand export (default: the model's own).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Weights for an on-demand export.")
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
@handle_errors
def coverage_cmd(what: str, targets: str, img_size: int | None, checkpoint: str | None, as_json: bool) -> None:
    """PREDICT how much of the graph each delegate / EP takes (LiteRT XNNPACK on this host; ONNX Runtime's
    mobile usability checker for NNAPI and the Core ML EP), and which ops fall back and why."""
    from rich.table import Table

    from ..device_bench.coverage import CoverageInputError, predict_for

    chosen = ("tflite", "onnx") if targets == "all" else (targets,)
    try:
        results = predict_for(what, chosen, img_size=img_size, checkpoint=checkpoint)
    except CoverageInputError as exc:
        error_line(str(exc))
        raise SystemExit(2) from None
    if as_json:
        payload = {name: [p.as_json() for p in preds] for name, preds in results.items()}
        click.echo(json.dumps({"predicted": True, "artifacts": payload}, indent=1))
        return
    for name, preds in results.items():
        table = Table(title=f"PREDICTED delegate coverage: {Path(name).name}")
        for col in ("tool", "delegate", "coverage", "falls back", "why (where the tool says)"):
            table.add_column(col)
        for p in preds:
            fallback = ", ".join(f"{op} x{n}" for op, n in sorted(p.fallback_ops.items()))
            table.add_row(p.tool, p.delegate, p.label, fallback, "\n".join(p.reasons[:6]))
        table.caption = "predictions, made offline on this host: the phone's runtime version and drivers decide"
        console.print(table)


def _register() -> None:
    """Attach the command to the ``edgevit-bench`` group, and also to the one ``python -m
    edgevit_deploy.cli.bench_cmd`` runs as ``__main__`` (a second module object with its own group)."""
    from . import bench_cmd

    groups = [bench_cmd.main]
    top = sys.modules.get("__main__")
    spec = getattr(top, "__spec__", None)
    if spec is not None and spec.name == bench_cmd.__name__ and isinstance(getattr(top, "main", None), click.Group):
        groups.append(top.main)  # type: ignore[union-attr]
    for group in groups:
        group.add_command(coverage_cmd)


_register()
