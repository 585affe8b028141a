"""``edgevit-eval``: top-1 / top-5 of models and exported artifacts on a labelled image folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..verify.runtimes import CoremlHost
from ._common import OneLineCommand, choice_of, console, err_console, handle_errors, setup_logging

SHOWN_FLIPS = 10


def _pct(v: float | None, signed: bool = False) -> str:
    return "-" if v is None else format(v * 100, "+.1f" if signed else ".1f")


def results_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"accuracy on {report['dataset']} (n={report['n']})", show_lines=False)
    for col, justify in (
        ("source", "left"),
        ("target", "left"),
        ("prec", "left"),
        ("img", "right"),
        ("top-1 %", "right"),
        ("95% CI", "right"),
        ("top-5 %", "right"),
        ("Δ top-1 pp", "right"),
        ("agree %", "right"),
        ("flips", "right"),
        ("executor", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in report["results"]:
        lo, hi = r["top1_ci95"]
        ref = r["is_reference"]
        table.add_row(
            Path(r["source"]).name + (" [dim](reference)[/]" if ref else ""),
            r["target"],
            r["precision"],
            str(r["img_size"]),
            _pct(r["top1"]),
            f"{_pct(lo)}-{_pct(hi)}",
            _pct(r["top5"]),
            _pct(r["delta_top1"], signed=True),
            _pct(r["agreement"]),
            "-" if ref else str(len(r["flips"])),
            r["executor"],
        )
    return table


def print_flips(report: dict[str, Any]) -> None:
    for r in report["results"]:
        if not r["flips"]:
            continue
        more = len(r["flips"]) - SHOWN_FLIPS
        console.print(
            f"[bold]{Path(r['source']).name}[/]: top-1 differs from {r['reference']} on "
            f"{len(r['flips'])} image(s)" + (f" (first {SHOWN_FLIPS} shown; all in --json)" if more > 0 else ""),
            highlight=False,
        )
        for f in r["flips"][:SHOWN_FLIPS]:
            mark = (
                "[green]now right[/]"
                if f["prediction_index"] == f["label_index"]
                else ("[red]now wrong[/]" if f["reference_index"] == f["label_index"] else "both wrong")
            )
            console.print(
                f"  {f['image']}: label {f['label']!r}; fp32 {f['reference']!r} -> {f['prediction']!r} ({mark})",
                highlight=False,
                markup=True,
            )


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(path_type=Path),
    help="ImageFolder DIR/<class>/*.jpeg (classes: synset ids, indices or --labels), or a flat folder "
    "with --csv (a flat ImageNet val folder needs none).",
)
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(path_type=Path),
    help="Class names -> indices: 'name,index' rows, or one class per line in index order.",
)
@click.option("--csv", "csv_file", type=click.Path(path_type=Path), help="file,label rows (files relative to --data).")
@click.option("--model", "-m", "model", help="The model the artifacts were exported from (default: their metadata).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="The checkpoint they were exported with.")
@click.option("--img-size", type=int, help="Input size of model names (artifacts use their own).")
@click.option("--limit", type=int, help="Evaluate a seeded random subset of N images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which subset --limit takes.")
@click.option("--batch", type=int, default=32, show_default=True, help="Images per forward pass.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option(
    "--coreml-executor",
    type=choice_of(e for e in CoremlHost.executors if e != "both"),  # eval runs one executor per artifact
    default="auto",
    show_default=True,
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one row per source to this bench SQLite file (table 'accuracy'); the bench report's "
    "Pareto plots then use the measured top-1.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", count=True)
@handle_errors
def main(
    sources: tuple[str, ...],
    data: Path,
    labels_file: Path | None,
    csv_file: Path | None,
    model: str | None,
    checkpoint: Path | None,
    img_size: int | None,
    limit: int | None,
    seed: int,
    batch: int,
    threads: int,
    coreml_executor: str,
    store: Path | None,
    as_json: bool,
    verbose: int,
) -> None:
    """Top-1 / top-5 (with 95 % Wilson intervals) of SOURCES: model names (PyTorch fp32) and artifacts
    (.onnx, .tflite, .mlpackage) in their host runtimes, each artifact against its fp32 PyTorch reference
    on the same images (change in top-1, agreement, the images whose prediction flips)."""
    setup_logging(verbose)
    from ..evaluate import evaluate, load_set

    if store is not None:
        from ..evaluate.store import check_store

        check_store(store)
    labelled = load_set(data, labels_file=labels_file, csv_file=csv_file, limit=limit, seed=seed)
    progress = Progress(
        TextColumn("[bold]evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=as_json and not err_console.is_terminal,
    )
    with progress:
        task = progress.add_task("eval", total=len(labelled))
        report = evaluate(
            sources,
            labelled,
            model=model,
            checkpoint=checkpoint,
            img_size=img_size,
            batch=batch,
            threads=threads,
            coreml_executor=coreml_executor,
            progress=lambda done, total: progress.update(task, completed=done),
        )
    written = 0
    if store is not None:
        from ..evaluate.store import put_rows, rows_of

        written = put_rows(store, rows_of(report))
    out = report.to_dict()
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    console.print(results_table(out))
    print_flips(out)
    note = (
        f"{out['n']} images from {out['root']} ({out['layout']}"
        + (
            f", seeded subset of {out['images_found']}, --seed {seed}"
            if out["images_selected"] < out["images_found"]
            else ""
        )
        + ")"
    )
    if out["skipped"]:
        note += f"; {len(out['skipped'])} unreadable image(s) skipped: {', '.join(out['skipped'][:5])}"
    console.print(note, highlight=False)
    if store is not None:
        console.print(f"{written} row(s) written to {store} (table accuracy)", highlight=False)
    console.print("[dim]95% CI: Wilson score interval; '-': not compared[/]", highlight=False)
