"""One call for the export pipeline / CLI: calibrate, quantize, export the float twin, report fidelity.

    path, report = quantize_and_report(model, cfg, get_spec(target), options, out_dir, metadata,
                                       calib_data=DIR_or_None, calib_size=128, seed=0)

``options.quantize`` is the :class:`QuantMode`; ``options.quant`` the typed :class:`QuantSettings`.
Every bad input (a mode the target lacks, ONNX-only settings elsewhere, a missing or empty calibration
folder, ``calib_size <= 0``) is rejected before any slow step.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..converters.base import ArtifactMetadata, ExportOptions, QuantMode
from ..converters.table import TargetSpec
from ..errors import QuantizationError
from ..models._config import ModelConfig
from .base import PT2E_PER_LAYER_TARGETS, QuantResult, QuantSettings, check_quant_request
from .bias_correction import BiasCorrectionReport, bias_correct
from .calibration import CalibrationSet, check_calib_size, load_calibration
from .fidelity import FidelityReport, build_report
from .onnx_modules import split_patterns

log = logging.getLogger(__name__)


def check_request(spec: TargetSpec, options: ExportOptions, calib_size: int) -> QuantSettings:
    """Raise on every request problem that can be seen without running anything."""
    mode = check_quant_request(spec, options)  # the mode, the options and the per-layer settings against the table
    check_calib_size(calib_size)
    if options.quant.calib_method == "reconstruct" and mode is not QuantMode.INT8:
        raise QuantizationError(
            f"--calib-method reconstruct learns int8 weight rounding: use --quantize int8, not {mode}"
        )
    if "bias_correction" in options.quant.given() and mode is not QuantMode.INT8:
        raise QuantizationError(
            f"bias correction (--no-bias-correction) is a setting of static int8: use --quantize int8, not {mode}"
        )
    return options.quant


def correct_biases(
    spec: TargetSpec, model: nn.Module, calib: CalibrationSet, settings: QuantSettings
) -> tuple[nn.Module, BiasCorrectionReport]:
    """Static int8: ``model`` with its biases corrected for the weight rounding of ``spec``'s quantizer (its
    grid: :func:`.reconstruct.target_qmax`), or ``model`` itself and why not (turned off; ``reconstruct``)."""
    if settings.calib_method == "reconstruct":
        return model, BiasCorrectionReport(False, "skipped: --calib-method reconstruct learns the weight rounding")
    if not settings.bias_correction:
        return model, BiasCorrectionReport(False, "turned off (--no-bias-correction)")
    from .reconstruct import target_qmax

    target = str(spec.target)
    # --exclude names module paths (those layers stay float: no correction); on onnx a pattern starting with
    # "/" names ONNX nodes instead, whose float layers get their uncorrected bias back in the graph
    # (onnx_modules.restore_float_biases)
    exclude = settings.exclude if target in PT2E_PER_LAYER_TARGETS else split_patterns(settings.exclude)[1]
    return bias_correct(model, calib.data, target_qmax(target, settings.activation_dtype), exclude=exclude)


def run_quantizer(
    spec: TargetSpec,
    model: nn.Module,
    example: torch.Tensor,
    out_path: Path,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
) -> QuantResult:
    """The target's quantizer (named by the target table) on one model; with ``--calib-method reconstruct``,
    on the model whose weights the block reconstruction put on the target's grid (done here, once); otherwise,
    for static int8, on the model whose biases :func:`correct_biases` corrected for the weight rounding
    (``QuantSettings.bias_correction``, default on). Both are recorded in ``QuantResult.details``."""
    if options.quantize != QuantMode.INT8:
        return spec.load_quantizer().quantize(model, example, out_path, options, metadata, calib)
    rec = None
    if options.quant.calib_method == "reconstruct":
        from .reconstruct import reconstruct_for_target

        model, rec = reconstruct_for_target(str(spec.target), model, calib.data, options.quant)
    original = model
    model, corrected = correct_biases(spec, model, calib, options.quant)
    result = spec.load_quantizer().quantize(model, example, out_path, options, metadata, calib)
    excluded = set(result.details.get("excluded_modules", []))
    searched = [m for m in result.details.get("kept_in_float_layers", []) if m not in excluded]
    by_module = (
        str(spec.target) in PT2E_PER_LAYER_TARGETS or result.details.get("target_sqnr", {}).get("units") == "modules"
    )
    if corrected.applied and searched and by_module:
        result, corrected = _requantize_with_plan(spec, original, example, out_path, options, metadata, calib, result)
    if rec is not None:
        result.details["reconstruction"] = rec.to_dict()
    result.details["bias_correction"] = corrected.to_dict()
    return result


def _requantize_with_plan(
    spec: TargetSpec,
    model: nn.Module,
    example: torch.Tensor,
    out_path: Path,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
    searched: QuantResult,
) -> tuple[QuantResult, BiasCorrectionReport]:
    """``--target-sqnr`` kept layers in float after the biases were corrected for their rounding, which no
    longer happens (EfficientNet-Lite2: the search met 22 dB on its images, the artifact read 18.2 dB). The
    plan it found becomes an exclusion: the biases are corrected again without those layers and the model is
    quantized with that plan (a second conversion, no second search); the report keeps the search."""
    plan = list(searched.details["kept_in_float_layers"])  # module paths (with the --exclude'd modules)
    # on onnx, the --exclude patterns naming ONNX nodes stay as they were
    nodes = [] if str(spec.target) in PT2E_PER_LAYER_TARGETS else split_patterns(options.quant.exclude)[0]
    quant = replace(options.quant, exclude=tuple(nodes + plan), target_sqnr=None, analyze=False)
    log.info("int8: %d layer(s) kept in float by the search; biases corrected again without them", len(plan))
    model, corrected = correct_biases(spec, model, calib, quant)
    result = spec.load_quantizer().quantize(model, example, out_path, replace(options, quant=quant), metadata, calib)
    for key in ("excluded_modules", "exclude_unmatched", "analysis", "block_analysis", "target_sqnr"):
        if key in searched.details:
            result.details[key] = searched.details[key]
        else:
            result.details.pop(key, None)
    result.details["kept_in_float_layers"] = plan
    result.details["bias_correction_redone_for_the_plan"] = True
    return result, corrected


def export_float_twin(
    spec: TargetSpec,
    model: nn.Module,
    example: torch.Tensor,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    out_dir: Path,
    name: str,
) -> Path:
    """The float artifact of the same target (its default precision): the size / latency baseline."""
    fopts = replace(options, quantize=None, quant=QuantSettings(), precision=spec.default_precision)
    path = Path(out_dir) / spec.artifact_name(name, fopts)
    fmeta = replace(metadata, precision=str(spec.default_precision))
    return spec.load_converter().convert(model, example, path, fopts, fmeta)


def quantize_and_report(
    model: nn.Module,
    cfg: ModelConfig,
    spec: TargetSpec,
    options: ExportOptions,
    out_dir: str | Path,
    metadata: ArtifactMetadata,
    calib_data: str | Path | None = None,
    calib_size: int = 128,
    seed: int = 0,
    float_artifact: Path | None = None,
    coreml_executor: str = "auto",
    latency_runs: int = 20,
    pretrained: bool | None = None,
    reference: nn.Module | None = None,
) -> tuple[Path, FidelityReport]:
    """Quantize ``model`` (eval mode, already rewritten for the target) and measure it against fp32.

    ``reference``: the fp32 PyTorch model the report compares with (default ``model``; the export
    pipeline passes the model before the target's rewrites).
    ``float_artifact``: the float artifact of the same target if the caller exported one already;
    otherwise one is exported next to the quantized one. ``pretrained``: real weights (adds the top-1
    agreement floor); by default, whether ``model.checkpoint_sha256`` names a checkpoint.
    """
    check_request(spec, options, calib_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    calib, held = load_calibration(cfg, calib_data, calib_size, seed)
    example = torch.from_numpy(calib.data[:1].copy())
    out_path = out_dir / spec.artifact_name(metadata.model, options)  # the export's own name for the file
    qmeta = replace(metadata, precision=str(options.quantize))
    result = run_quantizer(spec, model, example, out_path, options, qmeta, calib)
    if float_artifact is None:
        float_artifact = export_float_twin(spec, model, example, options, metadata, out_dir, metadata.model)
    reference = model if reference is None else reference
    if pretrained is None:
        sha = getattr(reference, "checkpoint_sha256", None) or getattr(model, "checkpoint_sha256", "random-init")
        pretrained = sha != "random-init"
    report = build_report(
        reference,
        cfg,
        spec,
        result,
        float_artifact,
        calib,
        held,
        pretrained,
        coreml_executor=coreml_executor,
        latency_runs=latency_runs,
    )
    return result.path, report
