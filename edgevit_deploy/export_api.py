"""The public export API: one call exports a model to one or every target and checks parity."""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ._atomic import sha256_of
from ._atomic import write_text as atomic_write_text
from ._version import __version__
from .converters.base import ArtifactMetadata, ExportOptions, Precision, QuantMode, QuantSettings, Target, Variant
from .converters.table import TARGETS, TargetSpec, get_spec
from .errors import ConversionError, EdgeVitDeployError, OutputDirError, UnsupportedOptionError, first_line
from .export_common import apply_random_init, artifact_size
from .formulations import apply_formulations
from .models import ModelConfig, create_model
from .models._conditioning import RANDOM_INIT_CHOICES
from .models._registry import check_img_size, check_num_classes
from .verify.parity import check_parity
from .verify.report import ParityReport

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, str], None]  # (target, phase) with phase in {"export", "verify", "done"}


@dataclass
class ArtifactResult:
    target: str
    path: Path | None
    precision: Variant  # the float precision or quantization mode (report.json's "precision")
    size_bytes: int | None
    export_s: float | None
    parity: ParityReport
    error: str | None = None
    formulation: dict[str, int] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    fidelity: Any = None  # quantize.fidelity.FidelityReport when the artifact was quantized
    file: str | None = None  # the artifact's file name in the output folder (also when the export failed)
    variant: str | None = None  # ExportOptions.variant: with the target, what the row is about
    sha256: str | None = None  # of the file this row checked: a reader compares it before trusting the row
    notes: dict[str, Any] = field(default_factory=dict)  # converter findings (ExecuTorch: non-delegated ops)

    @property
    def ok(self) -> bool:
        return self.error is None and (self.parity.passed or not self.parity.executed)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "target": self.target,
            "path": str(self.path) if self.path else None,
            "precision": str(self.precision),
            "size_bytes": self.size_bytes,
            "export_s": self.export_s,
            "parity": self.parity.to_dict(),
            "error": self.error,
            "formulation": self.formulation,
            "file": self.file or (self.path.name if self.path else None),
            "variant": self.variant,
            "sha256": self.sha256,
        }
        if self.quantization is not None:
            d["quantization"] = self.quantization
        if self.notes:
            d["notes"] = self.notes
        return d


@dataclass
class ExportResult:
    model: str
    config: ModelConfig
    checkpoint_sha256: str
    out_dir: Path
    artifacts: list[ArtifactResult] = field(default_factory=list)
    random_init: str = "default"  # "conditioned": well-conditioned random weights (structure-only check)
    kept_rows: list[dict[str, Any]] = field(default_factory=list)  # other artifacts' rows already in report.json

    @property
    def ok(self) -> bool:
        """True when every export succeeded and every executed parity check passed."""
        return all(a.error is None and (a.parity.passed or not a.parity.executed) for a in self.artifacts)

    def row(self, artifact: ArtifactResult) -> dict[str, Any]:
        """An artifact's row, with the model it belongs to (a report may merge several runs)."""
        return {
            "model": self.model,
            "input_size": list(self.config.input_size),
            "checkpoint_sha256": self.checkpoint_sha256,
            **artifact.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        d = {
            "model": self.model,
            "toolkit_version": __version__,
            "checkpoint_sha256": self.checkpoint_sha256,
            "input_size": list(self.config.input_size),
            "artifacts": [self.row(a) for a in self.artifacts] + self.kept_rows,
        }
        if self.random_init != "default":
            d["random_init"] = self.random_init
        return d

    def write_report(self, path: Path | None = None) -> Path:
        """Write ``report.json`` atomically: this run's rows first, then the kept rows of earlier runs."""
        path = path or self.out_dir / "report.json"
        try:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str))
        except OSError as exc:  # e.g. a full disk: the previous report.json is still whole
            raise OutputDirError(
                f"cannot write {str(path)!r}: {exc.strerror or exc}. Free some space or "
                "choose another folder with --out."
            ) from exc
        return path


def previous_rows(report_path: Path, superseded: set[str]) -> list[dict[str, Any]]:
    """Rows of an earlier ``report.json`` about files this run does not write (merge by artifact file, i.e.
    model + target + variant). Rows about a file this run replaces are dropped *before* it is replaced, so
    that no row ever vouches for a file it did not check; an unreadable report is not merged."""
    if not report_path.is_file():
        return []
    try:
        old = json.loads(report_path.read_text())
        rows = old["artifacts"]
        if not isinstance(rows, list):
            raise TypeError("'artifacts' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "%s is not a report this tool wrote (%s); it will be replaced, its rows are not kept", report_path, exc
        )
        return []
    kept = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        row = {k: old.get(k) for k in ("model", "input_size", "checkpoint_sha256") if k in old} | row
        name = row.get("file") or (Path(row["path"]).name if row.get("path") else None)
        if name not in superseded:
            kept.append(row)
    return kept


def resolve_targets(target: str | Target | Sequence[str | Target]) -> list[TargetSpec]:
    if isinstance(target, (str, Target)):
        names = list(TARGETS) if str(target) == "all" else [target]
    else:
        names = list(target)
    return [get_spec(t) for t in names]


def check_out_dir(out_dir: str | Path) -> None:
    """Raise OutputDirError when ``out_dir`` cannot be created or written, without creating anything."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputDirError(
            f"cannot write to output folder {str(out)!r}: it is an existing file, not a folder. "
            "Choose another folder with --out."
        )
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputDirError(
            f"cannot write to output folder {str(out)!r}: {str(parent)!r} is a file, not a folder. "
            "Choose another folder with --out."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputDirError(
            f"cannot write to output folder {str(out)!r}: {str(parent)!r} is not writable. "
            "Choose another folder with --out."
        )


def prepare_out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".edgevit-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(
            f"cannot write to output folder {str(out)!r}: {exc.strerror or exc}. Choose another folder with --out."
        ) from exc
    return out


def build_metadata(
    name: str, cfg: ModelConfig, sha: str, options: ExportOptions, precision: str, random_init: str = "default"
) -> ArtifactMetadata:
    c, h, w = cfg.input_size
    shape = (options.batch_size, h, w, c) if options.nhwc else (options.batch_size, c, h, w)
    return ArtifactMetadata(
        model=name,
        input_shape=shape,
        layout=options.layout.value,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        toolkit_version=__version__,
        checkpoint_sha256=sha,
        precision=precision,
        num_classes=cfg.num_classes,
        random_init=random_init,
    )


def _model_and_config(
    model_or_name: str | nn.Module, checkpoint: str | Path | None, img_size: int | None, num_classes: int | None
) -> tuple[str, nn.Module, ModelConfig, str]:
    if isinstance(model_or_name, nn.Module):
        model = model_or_name.eval()
        cfg = getattr(model, "deploy_cfg", None) or ModelConfig(
            name=type(model).__name__.lower(), family="user", labels=None
        )
        if img_size is not None:
            check_img_size(img_size, cfg)
            cfg = cfg.with_img_size(img_size)
        if num_classes is not None:
            check_num_classes(num_classes)
            cfg = replace(cfg, num_classes=num_classes)
        else:
            with torch.no_grad():
                out = model(torch.zeros(1, *cfg.input_size))
            cfg = replace(cfg, num_classes=int(out.shape[-1]))
        return cfg.name, model, cfg, getattr(model, "checkpoint_sha256", "random-init")
    model = create_model(model_or_name, checkpoint=checkpoint, img_size=img_size, num_classes=num_classes)
    return model_or_name, model, cast(ModelConfig, model.deploy_cfg), str(model.checkpoint_sha256)


def export(
    model_or_name: str | nn.Module,
    target: str | Target | Sequence[str | Target] = "all",
    out_dir: str | Path = "out",
    options: ExportOptions | None = None,
    checkpoint: str | Path | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    verify: bool = True,
    coreml_executor: str = "auto",
    calib_data: str | Path | None = None,
    calib_size: int = 128,
    progress: ProgressFn | None = None,
    random_init: str = "default",
) -> ExportResult:
    """Export ``model_or_name`` to ``target`` (``onnx``, ``tflite``, ``coreml``, ``all`` or a list) in ``out_dir``.

    Every artifact is checked against PyTorch (unless ``verify=False``); ``report.json`` is rewritten after
    each artifact so that partial results stay on disk when a later target fails or the run is interrupted.
    Conversion failures are recorded per artifact (``error``) rather than raised, so one failing target does
    not hide the others; :attr:`ExportResult.ok` tells whether everything passed.

    ``random_init``: without trained weights, ``"default"`` keeps the model's own seeded initialisation;
    ``"conditioned"`` gives it well-conditioned random weights (random norm affine terms and layer scales,
    BatchNorm statistics measured on parity-like inputs, unit-spread logits), for a structure-only check of
    models whose own init gives degenerate logits. The report records it (``random_init``).
    """
    options = options or ExportOptions()
    specs = resolve_targets(target)
    # every input is checked before the output folder is created or anything heavy is loaded
    validate_request(
        specs,
        options,
        num_classes=num_classes,
        calib_data=calib_data,
        calib_size=calib_size,
        random_init=random_init,
        checkpoint=checkpoint,
    )
    check_out_dir(out_dir)
    name, model, cfg, sha = _model_and_config(model_or_name, checkpoint, img_size, num_classes)
    if random_init != "default" and model is model_or_name:  # never rewrite the caller's own module
        model = copy.deepcopy(model)
    apply_random_init(model, cfg, sha, random_init)
    out = prepare_out_dir(out_dir)
    result = ExportResult(model=name, config=cfg, checkpoint_sha256=sha, out_dir=out, random_init=random_init)
    # rows of earlier runs stay, except those about files this run replaces: dropped before they are replaced
    result.kept_rows = previous_rows(out / "report.json", planned_files(specs, name, options))
    result.write_report()
    for spec in specs:
        result.artifacts.append(
            _export_one(
                spec,
                name,
                model,
                cfg,
                sha,
                options,
                out,
                verify,
                coreml_executor,
                calib_data,
                calib_size,
                progress,
                random_init,
            )
        )
        result.write_report()
    return result


QUANT_FLAGS = {
    "calib_method": "--calib-method",
    "activation_dtype": "--activation-dtype",
    "int8_io": "--int8-io",
    "analyze": "--analyze",
    "exclude": "--exclude",
    "target_sqnr": "--target-sqnr",
    "bias_correction": "--no-bias-correction",
}


def validate_request(
    specs: Sequence[TargetSpec],
    options: ExportOptions,
    num_classes: int | None = None,
    calib_data: str | Path | None = None,
    calib_size: int = 128,
    random_init: str = "default",
    checkpoint: str | Path | None = None,
) -> None:
    """Raise on every input problem that can be seen without loading a model or writing a file."""
    for spec in specs:
        spec.validate(options)
    if num_classes is not None:
        check_num_classes(num_classes)
    if random_init not in RANDOM_INIT_CHOICES:
        raise UnsupportedOptionError(f"random_init={random_init!r}: choose from {', '.join(RANDOM_INIT_CHOICES)}")
    if random_init != "default" and checkpoint is not None:
        raise UnsupportedOptionError(
            f"--random-init {random_init} replaces random weights, but --checkpoint "
            "gives trained weights; drop one of them"
        )
    from .quantize.calibration import check_calib_folder, check_calib_size

    check_calib_size(calib_size)
    if options.quantize is None:
        given = options.quant.given()
        if given:
            flags = ", ".join(QUANT_FLAGS.get(k, k) for k in given)
            raise UnsupportedOptionError(
                f"{flags} only apply to a quantized export; add --quantize MODE (e.g. --quantize int8) or drop them"
            )
        return
    from .quantize.pipeline import check_request

    for spec in specs:  # the quantizer's own request checks (modes, settings, ONNX-only per-layer options)
        check_request(spec, options, calib_size)
    if options.quantize == QuantMode.INT8_DYNAMIC and {"analyze", "target_sqnr"} & set(options.quant.given()):
        raise UnsupportedOptionError(
            "--analyze and --target-sqnr compare calibrated activations, which "
            "--quantize int8-dynamic does not have; use --quantize int8"
        )
    if calib_data is not None:
        check_calib_folder(Path(calib_data))


def planned_files(specs: Sequence[TargetSpec], name: str, options: ExportOptions) -> set[str]:
    """File names this export writes (artifacts, and the float twins of quantized ones)."""
    names: set[str] = set()
    for spec in specs:
        opts = replace(options, precision=options.precision or spec.default_precision)
        names.add(spec.artifact_name(name, opts))
        if opts.quantize is not None:
            twin = replace(opts, quantize=None, quant=QuantSettings(), precision=spec.default_precision)
            names.add(spec.artifact_name(name, twin))
    return names


def _export_one(
    spec: TargetSpec,
    name: str,
    model: nn.Module,
    cfg: ModelConfig,
    sha: str,
    options: ExportOptions,
    out: Path,
    verify: bool,
    coreml_executor: str,
    calib_data: str | Path | None,
    calib_size: int,
    progress: ProgressFn | None,
    random_init: str = "default",
) -> ArtifactResult:
    opts = replace(options, precision=options.precision or spec.default_precision)
    variant = opts.artifact_variant()
    path = out / spec.artifact_name(name, opts)
    meta = build_metadata(name, cfg, sha, opts, str(variant), random_init)
    example = torch.randn(opts.batch_size, *cfg.input_size, generator=torch.Generator().manual_seed(0))
    export_model, counts = apply_formulations(model, spec.formulation)
    if progress:
        progress(str(spec.target), "export")
    t0 = time.perf_counter()
    quant_info: dict[str, Any] | None = None
    quant_report = None
    notes: dict[str, Any] = {}
    try:
        if opts.quantize is not None:
            from .quantize.pipeline import quantize_and_report

            path, quant_report = quantize_and_report(
                export_model,
                cfg,
                spec,
                opts,
                out,
                meta,
                reference=model,
                calib_data=calib_data,
                calib_size=calib_size,
                coreml_executor=coreml_executor,
            )
            quant_info = quant_report.to_dict()
        else:
            converter = spec.load_converter()
            converter.convert(export_model, example, path, opts, meta)
            notes = dict(getattr(converter, "notes", None) or {})
    except Exception as exc:  # every failure is this target's row; the other targets still run
        if isinstance(exc, EdgeVitDeployError):
            err: EdgeVitDeployError = exc
            log.error("%s: %s", spec.target, err)
        else:  # a converter bug we did not anticipate: still a per-target failure
            err = ConversionError(str(spec.target), first_line(exc))
            log.exception("%s", err)
        return ArtifactResult(
            str(spec.target),
            None,
            variant,
            None,
            round(time.perf_counter() - t0, 2),
            ParityReport.not_executed(f"export failed: {err}"),
            error=str(err),
            formulation=counts,
            file=path.name,
            variant=opts.variant,
        )
    export_s = round(time.perf_counter() - t0, 2)
    digest = sha256_of(path)  # the bytes the parity check below reads
    if verify:
        if progress:
            progress(str(spec.target), "verify")
        # a quantized artifact is judged on held-out natural images against its mode's fidelity floors
        parity = (
            quant_report.parity
            if quant_report is not None
            else check_parity(model, cfg, path, spec, str(variant), coreml_executor=coreml_executor)
        )
    else:
        parity = ParityReport.not_executed("verification skipped (--no-verify)")
    if progress:
        progress(str(spec.target), "done")
    return ArtifactResult(
        str(spec.target),
        path,
        variant,
        artifact_size(path),
        export_s,
        parity,
        formulation=counts,
        quantization=quant_info,
        fidelity=quant_report,
        file=path.name,
        variant=opts.variant,
        sha256=digest,
        notes=notes,
    )


__all__ = ["ArtifactResult", "ExportResult", "Precision", "export", "resolve_targets", "validate_request"]
