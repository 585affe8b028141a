"""``edgevit-export``: export a model to ONNX / TFLite / Core ML / ExecuTorch and check parity against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..converters.base import EtBackend, ExportOptions, Precision, QuantMode, QuantSettings
from ..converters.coreml import DEPLOYMENT_TARGETS
from ..converters.table import ONNX_EXPORTERS, backend_names, target_names
from ..models._conditioning import RANDOM_INIT_CHOICES
from ..quantize.base import ACTIVATION_DTYPES, CALIB_METHODS
from ..verify.runtimes import CoremlHost
from ._common import (
    OneLineCommand,
    choice_of,
    console,
    err_console,
    exit_code,
    handle_errors,
    parity_table,
    print_reasons,
    setup_logging,
    split_csv,
)
from ._models_table import models_table


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--model", "-m", "model", help="Registered name (see --list-models), timm:NAME, file.py:factory or module:factory."
)
@click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    default=("all",),
    show_default=True,
    help=f"One of {', '.join(target_names())}, all; repeat or comma-separate for several.",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="State dict (.pth/.pt), raw or under 'model' / 'state_dict'; loaded with weights_only=True.",
)
@click.option(
    "--random-init",
    type=choice_of(RANDOM_INIT_CHOICES),
    default="default",
    show_default=True,
    help="Without --checkpoint: 'default' keeps the model's own seeded random init; 'conditioned' "
    "gives well-conditioned random weights (random norm affine terms and layer scales, BatchNorm "
    "statistics measured on sample inputs, unit-spread logits) so that parity checks the structure of "
    "models whose own init gives degenerate logits.",
)
@click.option("--img-size", type=int, help="Input size (a multiple of 32). Default: the model's.")
@click.option("--num-classes", type=int, help="Classifier size. Default: the model's (1000).")
@click.option(
    "--precision",
    type=choice_of(p.value for p in Precision),
    help="fp32 or fp16. Default per target: fp32 for ONNX / TFLite / ExecuTorch, fp16 for Core ML.",
)
@click.option("--dynamic-batch", is_flag=True, help="ONNX: a dynamic batch dimension.")
@click.option("--nhwc", is_flag=True, help="TFLite: take NHWC input, as camera pipelines feed.")
@click.option(
    "--image-input",
    is_flag=True,
    help="Core ML: ImageType input (0..255 RGB, mean/std folded in) and a classifier output with labels.",
)
@click.option(
    "--min-deployment-target",
    type=choice_of(DEPLOYMENT_TARGETS),
    default="iOS16",
    show_default=True,
    help="Core ML minimum deployment target.",
)
@click.option(
    "--onnx-exporter",
    type=choice_of(list(ONNX_EXPORTERS)),
    default="torchscript",
    show_default=True,
    help="torch.onnx exporter (torchscript gives the faster onnxruntime graph here).",
)
@click.option(
    "--et-backend",
    type=choice_of(backend_names()),
    help="ExecuTorch delegate: xnnpack (default), "
    "portable (reference kernels, no delegate) or coreml (lowers anywhere, runs on macOS / iOS).",
)
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (>= 17).")
@click.option(
    "--quantize",
    type=choice_of(q.value for q in QuantMode),
    help="Post-training quantization mode; each target supports the modes its table row lists.",
)
@click.option(
    "--calib-data",
    type=click.Path(path_type=Path),
    help="Calibration images: a flat folder or "
    "ImageFolder (train/<class>/*.jpeg). Default: built-in sample photographs.",
)
@click.option("--calib-size", type=int, default=128, show_default=True, help="Calibration images to use.")
@click.option(
    "--calib-method",
    type=choice_of(CALIB_METHODS),
    help="Calibration method (default minmax; percentile / entropy: ONNX; reconstruct: every int8 target, "
    "block reconstruction of the weight rounding, ~minutes).",
)
@click.option(
    "--activation-dtype",
    type=choice_of(ACTIVATION_DTYPES),
    help="ONNX activation type (default uint8: U8S8, 8-bit int8 weights; int8: S8S8, 7-bit int8 weights, portable).",
)
@click.option(
    "--no-bias-correction",
    is_flag=True,
    help="int8: do not correct the biases for the weight rounding (static int8 corrects them by default).",
)
@click.option("--int8-io", is_flag=True, help="TFLite int8: int8 input/output tensors (default float).")
@click.option("--analyze", is_flag=True, help="int8: per-layer (ONNX) / per-block (PT2E) sensitivity.")
@click.option(
    "--exclude",
    multiple=True,
    help="int8: keep the PyTorch modules matching this glob in float (blocks.0, conv_stem, head; "
    "on onnx a glob starting with / names ONNX nodes: /head/*) (repeatable).",
)
@click.option(
    "--target-sqnr",
    type=float,
    help="int8: keep blocks in float (most noise per latency cost first) until SQNR (dB) is met.",
)
@click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder (artifacts and report.json).",
)
@click.option("--no-verify", is_flag=True, help="Skip the parity check.")
@click.option(
    "--coreml-executor",
    type=choice_of(CoremlHost.executors),
    default="auto",
    show_default=True,
    help="Who runs Core ML for parity: MLModel.predict (macOS), the reference ML Program executor, or both (macOS).",
)
@click.option("--require-execution", is_flag=True, help="Exit non-zero when a parity check could not run here.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout instead of the table.")
@click.option("--list-models", is_flag=True, help="List registered models with their figures and exit.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@handle_errors
def main(
    model: str | None,
    targets: tuple[str, ...],
    checkpoint: Path | None,
    random_init: str,
    img_size: int | None,
    num_classes: int | None,
    precision: str | None,
    dynamic_batch: bool,
    nhwc: bool,
    image_input: bool,
    min_deployment_target: str,
    onnx_exporter: str,
    et_backend: str | None,
    opset: int,
    quantize: str | None,
    calib_data: Path | None,
    calib_size: int,
    calib_method: str | None,
    activation_dtype: str | None,
    no_bias_correction: bool,
    int8_io: bool,
    analyze: bool,
    exclude: tuple[str, ...],
    target_sqnr: float | None,
    out: Path,
    no_verify: bool,
    coreml_executor: str,
    require_execution: bool,
    as_json: bool,
    list_models: bool,
    verbose: int,
) -> None:
    """Export a model to deployable files and check each against PyTorch."""
    setup_logging(verbose)
    if list_models:
        console.print(models_table())
        return
    if not model:
        raise click.UsageError("--model is required (or --list-models).")
    from .. import export_api

    target_list = split_csv(targets)
    target_arg = "all" if "all" in target_list else target_list
    options = ExportOptions(
        precision=Precision(precision) if precision else None,
        dynamic_batch=dynamic_batch,
        nhwc=nhwc,
        image_input=image_input,
        minimum_deployment_target=min_deployment_target,
        onnx_opset=opset,
        onnx_exporter=onnx_exporter,
        et_backend=EtBackend(et_backend.lower()) if et_backend else None,
        quantize=QuantMode(quantize) if quantize else None,
        quant=QuantSettings.from_options(
            quant_settings(calib_method, activation_dtype, int8_io, analyze, exclude, target_sqnr, no_bias_correction)
        ),
    )
    n_targets = len(export_api.resolve_targets(target_arg))
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(f"{model}: loading", total=n_targets)
        labels = {"export": "exporting to", "verify": "checking parity of", "done": "done with"}

        def on_progress(target: str, phase: str) -> None:
            bar.update(task, description=f"{model}: {labels[phase]} {target}", advance=int(phase == "done"))

        result = export_api.export(
            model,
            target_arg,
            out,
            options=options,
            checkpoint=checkpoint,
            img_size=img_size,
            num_classes=num_classes,
            verify=not no_verify,
            coreml_executor=coreml_executor,
            calib_data=calib_data,
            calib_size=calib_size,
            progress=on_progress,
            random_init=random_init,
        )
    report_path = result.write_report()
    rows = [dict(a.to_dict(), file=Path(a.path).name if a.path else None) for a in result.artifacts]
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        console.print(parity_table(f"{result.model} @ {result.config.img_size}px -> {out}", rows))
        print_reasons(rows)
        _print_notes(rows)
        _print_quant(result)
        console.print(f"report: {report_path}", highlight=False)
    raise SystemExit(exit_code(rows, require_execution))


def quant_settings(
    calib_method: str | None,
    activation_dtype: str | None,
    int8_io: bool,
    analyze: bool,
    exclude: tuple[str, ...],
    target_sqnr: float | None,
    no_bias_correction: bool = False,
) -> dict:
    """Only the settings the user gave: each quantizer checks them against its target."""
    given = {
        "bias_correction": False if no_bias_correction else None,
        "calib_method": calib_method,
        "activation_dtype": activation_dtype,
        "int8_io": int8_io or None,
        "analyze": analyze or None,
        "exclude": list(exclude) or None,
        "target_sqnr": target_sqnr,
    }
    return {k: v for k, v in given.items() if v is not None}


def _print_notes(rows: list[dict]) -> None:
    """Ops a delegate left to slower kernels (ExecuTorch: portable kernels outside XNNPACK), by name."""
    for r in rows:
        notes = r.get("notes") or {}
        outside = notes.get("non_delegated_ops") or ((r.get("quantization") or {}).get("quantization") or {}).get(
            "non_delegated_ops"
        )
        if outside:
            ops = ", ".join(f"{k} x{v}" for k, v in outside.items())
            console.print(
                f"[yellow]{r['target']}[/]: {sum(outside.values())} op(s) outside the "
                f"{notes.get('backend', 'xnnpack')} delegate (portable kernels): {ops}",
                highlight=False,
                soft_wrap=True,
            )


def _print_quant(result) -> None:
    from ._quant_table import quant_tables

    for table in quant_tables(result):
        console.print(table)
