"""``edgevit-verify``: re-run the parity check on artifacts that already exist (the step a user's CI runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..verify.runtimes import CoremlHost
from ._common import (
    EXIT_FAILED,
    OneLineCommand,
    choice_of,
    console,
    exit_code,
    handle_errors,
    parity_table,
    print_reasons,
    setup_logging,
)


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", "model", required=True, help="The model the artifacts were exported from.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="The checkpoint they were exported with.")
@click.option("--img-size", type=int, help="Input size. Default: read from the artifact's metadata.")
@click.option(
    "--precision",
    help="The variant to judge the artifacts as (fp32, fp16, int8, int8-dynamic, w8, "
    "palettize4, palettize6). Default: the one the metadata suggests; either must not "
    "be looser than the artifact's contents.",
)
@click.option(
    "--max-abs",
    type=float,
    help="Own bar: maximum absolute error (a looser one than the policy's is applied and reported).",
)
@click.option("--min-cosine", type=float, help="Own bar: minimum cosine similarity.")
@click.option("--min-sqnr", type=float, help="Own bar: minimum SQNR in dB.")
@click.option("--min-top1", type=float, help="Own bar: minimum top-1 agreement, a fraction (0.9 = 90 %).")
@click.option(
    "--allow-metadata-mismatch",
    is_flag=True,
    help="Do not fail when the metadata names another model / checkpoint, or claims a looser variant "
    "than the contents show (still reported).",
)
@click.option("--coreml-executor", type=choice_of(CoremlHost.executors), default="auto", show_default=True)
@click.option("--require-execution", is_flag=True, help="Exit non-zero when a parity check could not run here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", count=True)
@handle_errors
def main(
    artifacts: tuple[Path, ...],
    model: str,
    checkpoint: Path | None,
    img_size: int | None,
    precision: str | None,
    max_abs: float | None,
    min_cosine: float | None,
    min_sqnr: float | None,
    min_top1: float | None,
    allow_metadata_mismatch: bool,
    coreml_executor: str,
    require_execution: bool,
    as_json: bool,
    verbose: int,
) -> None:
    """Check existing ARTIFACTS (.onnx, .tflite, .mlpackage, .pte) against PyTorch; same report, bars and exit codes as
    edgevit-export."""
    setup_logging(verbose)
    from ..verify.artifact import read_artifact, verify_artifact
    from ..verify.policy import ThresholdFlags, Variant

    flags = ThresholdFlags(max_abs, min_cosine, min_sqnr, min_top1).validate()
    if precision is not None:
        Variant.parse(precision)
    read = [read_artifact(path) for path in artifacts]  # every unreadable file is bad input before a slow step
    rows: list[dict[str, Any]] = []
    mismatched = False
    for path, pre in zip(artifacts, read):
        v = verify_artifact(
            path,
            model,
            checkpoint=checkpoint,
            img_size=img_size,
            coreml_executor=coreml_executor,
            precision=precision,
            flags=flags,
            allow_metadata_mismatch=allow_metadata_mismatch,
            read=pre,
        )
        mismatched |= bool(v.parity.metadata_mismatch) and not allow_metadata_mismatch
        rows.append(
            {
                "target": v.target,
                "path": str(v.path),
                "file": v.path.name,
                "precision": v.precision,
                "size_bytes": v.size_bytes,
                "export_s": None,
                "parity": v.parity.to_dict(),
                "error": None,
            }
        )
    if as_json:
        click.echo(json.dumps({"model": model, "artifacts": rows}, indent=2, default=str))
    else:
        console.print(parity_table(f"{model}: parity of existing artifacts", rows))
        print_reasons(rows)
        for r in rows:
            p = r["parity"]
            for text in p.get("loosened") or []:
                console.print(f"[yellow]{r['target']}[/]: own bar {text} (applied)", highlight=False, soft_wrap=True)
            if allow_metadata_mismatch:
                for text in p.get("metadata_mismatch") or []:
                    console.print(
                        f"[yellow]{r['target']}[/]: metadata mismatch accepted (--allow-metadata-mismatch): {text}",
                        highlight=False,
                        soft_wrap=True,
                    )
    raise SystemExit(EXIT_FAILED if mismatched else exit_code(rows, require_execution))
