"""``edgevit-verify``: re-run the parity check on artifacts that already exist (the step a user's CI runs)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import (choice_of, console, exit_code, handle_errors, parity_table, print_reasons, setup_logging)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", "model", required=True, help="The model the artifacts were exported from.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="The checkpoint they were exported with.")
@click.option("--img-size", type=int, help="Input size. Default: read from the artifact's metadata.")
@click.option("--precision", help="Override the precision recorded in the artifact (sets the thresholds).")
@click.option("--coreml-executor", type=choice_of(["auto", "native", "reference", "both"]), default="auto",
              show_default=True)
@click.option("--require-execution", is_flag=True, help="Exit non-zero when a parity check could not run here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", count=True)
@handle_errors
def main(artifacts: tuple[Path, ...], model: str, checkpoint: Path | None, img_size: int | None,
         precision: str | None, coreml_executor: str, require_execution: bool, as_json: bool, verbose: int) -> None:
    """Check existing ARTIFACTS (.onnx, .tflite, .mlpackage, .pte) against PyTorch; same report and exit codes as
    edgevit-export."""
    setup_logging(verbose)
    from ..verify.artifact import verify_artifact

    rows = []
    for path in artifacts:
        v = verify_artifact(path, model, checkpoint=checkpoint, img_size=img_size, coreml_executor=coreml_executor,
                            precision=precision)
        rows.append({"target": v.target, "path": str(v.path), "file": v.path.name, "precision": v.precision,
                     "size_bytes": v.size_bytes, "export_s": None, "parity": v.parity.to_dict(), "error": None})
    if as_json:
        click.echo(json.dumps({"model": model, "artifacts": rows}, indent=2, default=str))
    else:
        console.print(parity_table(f"{model}: parity of existing artifacts", rows))
        print_reasons(rows)
    raise SystemExit(exit_code(rows, require_execution))
