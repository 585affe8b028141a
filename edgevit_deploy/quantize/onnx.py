"""ONNX int8 with onnxruntime.quantization: static QDQ (calibrated) and dynamic.

Static: fp32 export (the lead's :class:`~edgevit_deploy.converters.onnx.OnnxConverter`), onnxruntime's
pre-processing (``quant_pre_process``: symbolic shape inference, graph optimisation), then
``quantize_static`` in QDQ format with per-channel int8 weights, int8 or uint8 activations and the
minmax / percentile / entropy calibrator. The activation ranges are computed once and cached, so that
``exclude`` and the ``target_sqnr`` search re-quantize without re-calibrating.

``target_sqnr``: the per-layer analysis (:mod:`.onnx_analysis`) ranks activations by their quantization
SQNR; the nodes around the worst ones are kept in float (1, 2, 4, ... of them) until the output SQNR
against the float model, on calibration images, reaches the target.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._atomic import atomic_path
from .._lazy import require
from ..converters.base import ArtifactMetadata, ExportOptions, Precision, QuantMode
from ..converters.table import get_spec
from ..verify.metrics import sqnr_db
from .base import QuantizationError, QuantResult, QuantSettings, check_quant_request, match_names
from .calibration import CalibrationSet

log = logging.getLogger(__name__)

SEARCH_SAMPLES = 16  # calibration images the target-SQNR search evaluates the output SQNR on

# Weights are quantized to 7 bits ([-64, 64], onnxruntime's ``reduce_range``). onnxruntime's x86 int8 kernels
# on CPUs without VNNI (AVX2 only: e.g. AMD EPYC before Zen 4) multiply uint8 x int8 pairs with VPMADDUBSW,
# which saturates its int16 sums when the weights use the full 8-bit range; the fused kernels then compute
# wrong results that a float simulation of the same QDQ graph does not show. Measured on such a CPU
# (onnxruntime 1.22.1 and 1.32.0 alike): EdgeViT-XXS @64 static int8 2.1 dB SQNR with 8-bit weights, 21.7 dB
# with 7-bit ones (21.8 dB unfused); dynamic 28.1 -> 35.6 dB. The cost elsewhere is one bit of weight
# precision (about 0.1 dB here); the artifact must be right on whichever x86 CPU runs it.
REDUCE_RANGE = True


class _Reader:
    """onnxruntime CalibrationDataReader over a CalibrationSet (one image per batch)."""

    def __init__(self, input_name: str, data: np.ndarray):
        self.input_name = input_name
        self.data = data
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.data):
            return None
        x = self.data[self.i : self.i + 1]
        self.i += 1
        return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0

    def __iter__(self):
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


def export_float(
    model: nn.Module, example: torch.Tensor, out_path: Path, options: ExportOptions, metadata: ArtifactMetadata
) -> Path:
    from ..converters.onnx import OnnxConverter

    fp32 = replace(options, quantize=None, quant=QuantSettings(), precision=Precision.FP32)
    return OnnxConverter().convert(model, example, out_path, fp32, metadata)


def preprocess(float_path: Path, out_path: Path) -> Path:
    """onnxruntime's quantization pre-processing (shape inference and graph optimisation)."""
    qs = require("onnxruntime.quantization.shape_inference", "onnx")
    qs.quant_pre_process(str(float_path), str(out_path), skip_symbolic_shape=False)
    return out_path


def node_names(model_path: Path) -> list[str]:
    onnx = require("onnx", "onnx")
    return [n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node]


def input_name(model_path: Path) -> str:
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in inits)


class StaticQuantizer:
    """Static QDQ quantization of one pre-processed float model with cached calibration ranges."""

    def __init__(self, float_path: Path, calib: CalibrationSet, settings: QuantSettings, work: Path):
        self.q = require("onnxruntime.quantization", "onnx")
        self.float_path = float_path
        self.settings = settings
        self.calib = calib
        self.cache = work / "calibration_cache.json"
        self.input_name = input_name(float_path)
        self.nodes = node_names(float_path)

    @property
    def method(self):
        return {
            "minmax": self.q.CalibrationMethod.MinMax,
            "percentile": self.q.CalibrationMethod.Percentile,
            "entropy": self.q.CalibrationMethod.Entropy,
        }[self.settings.calib_method]

    @property
    def activation_type(self):
        return self.q.QuantType.QInt8 if self.settings.activation_dtype == "int8" else self.q.QuantType.QUInt8

    @property
    def weight_type(self):
        # U8U8 with uint8 activations: onnxruntime's u8u8 kernels do not saturate, so weights keep 8 bits
        return self.q.QuantType.QInt8 if self.settings.activation_dtype == "int8" else self.q.QuantType.QUInt8

    @property
    def reduce_range(self) -> bool:
        # int8 weights (U8S8 / S8S8) need 7 bits on AVX2 CPUs without VNNI; uint8 weights (U8U8) do not
        return REDUCE_RANGE if self.settings.activation_dtype == "int8" else False

    def quantize(self, out_path: Path, exclude_nodes: list[str]) -> Path:
        # asymmetric activations (onnxruntime's default): ReLU6 / GELU / Softmax outputs are one-sided, and
        # a symmetric grid would spend half of its codes on values that never occur
        extra: dict[str, Any] = {"ActivationSymmetric": False}
        if self.settings.calib_method == "percentile":
            extra["CalibPercentile"] = self.settings.percentile
        reader = None if self.cache.is_file() else _Reader(self.input_name, self.calib.data)
        self.q.quantize_static(
            str(self.float_path),
            str(out_path),
            calibration_data_reader=reader,
            quant_format=self.q.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=self.reduce_range,
            activation_type=self.activation_type,
            weight_type=self.weight_type,
            nodes_to_exclude=list(exclude_nodes),
            calibrate_method=self.method,
            extra_options=extra,
            calibration_cache_path=str(self.cache),
        )
        return out_path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from ..verify.runtimes import OnnxRuntimeHost

    return OnnxRuntimeHost().load(path, threads=1).run(x)


def _new_nodes_only(ranking: list[dict[str, Any]], base_exclude: list[str]) -> list[dict[str, Any]]:
    """Drop ranked layers whose nodes are all kept in float already (by --exclude or a worse layer)."""
    seen = set(base_exclude)
    out = []
    for row in ranking:
        if not set(row["nodes"]) <= seen:
            out.append(row)
            seen.update(row["nodes"])
    return out


def search_float_layers(
    sq: StaticQuantizer,
    ranking: list[dict[str, Any]],
    base_exclude: list[str],
    target_db: float,
    work: Path,
    out_path: Path,
) -> dict[str, Any]:
    """Keep the nodes around the worst-ranked activations in float until the output SQNR meets
    ``target_db``: 1, 2, 4... activations, at most ``settings.max_float_layers``."""
    ranking = _new_nodes_only(ranking, base_exclude)
    x = sq.calib.data[:SEARCH_SAMPLES]
    ref = _run(sq.float_path, x)
    steps: list[dict[str, Any]] = [
        {"float_layers": 0, "excluded_nodes": list(base_exclude), "sqnr_db": sqnr_db(ref, _run(out_path, x))}
    ]
    best = steps[0]
    k = 1
    limit = min(sq.settings.max_float_layers, len(ranking))
    while best["sqnr_db"] < target_db and k <= limit:
        layers = ranking[:k]
        nodes = list(dict.fromkeys(base_exclude + [n for r in layers for n in r["nodes"]]))
        trial = work / f"trial_{k}.onnx"
        sq.quantize(trial, nodes)
        step = {
            "float_layers": k,
            "layers": [r["layer"] for r in layers],
            "excluded_nodes": nodes,
            "sqnr_db": sqnr_db(ref, _run(trial, x)),
        }
        steps.append(step)
        log.info("target-SQNR search: %d layer(s) in float -> %.2f dB", k, step["sqnr_db"])
        if step["sqnr_db"] > best["sqnr_db"]:
            best = step
            shutil.copyfile(trial, out_path)
        if k == limit:
            break
        k = min(k * 2, limit)
    return {
        "target_sqnr_db": target_db,
        "met": best["sqnr_db"] >= target_db,
        "steps": steps,
        "kept_in_float_layers": best.get("layers", []),
        "kept_in_float_nodes": best["excluded_nodes"],
        "search_sqnr_db": best["sqnr_db"],
        "search_samples": len(x),
    }


def quantize(
    model: nn.Module,
    example: torch.Tensor,
    out_path: Path,
    options: ExportOptions,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
) -> QuantResult:
    settings = options.quant
    mode = check_quant_request(get_spec("onnx"), options)  # modes and settings from the table
    if mode is QuantMode.INT8_DYNAMIC and (settings.target_sqnr is not None or settings.analyze):
        raise QuantizationError("--target-sqnr and --analyze need calibrated activations: use --quantize int8")
    from ..converters.onnx import write_metadata

    out_path = Path(out_path)
    # quantized, analysed and stamped under a temporary name, then renamed: never half a file under out_path
    with tempfile.TemporaryDirectory(prefix="edgevit-onnx-quant-") as tmp, atomic_path(out_path) as staged:
        work = Path(tmp)
        float_path = preprocess(
            export_float(model, example, work / "float.onnx", options, metadata), work / "float_pre.onnx"
        )
        if mode is QuantMode.INT8_DYNAMIC:
            details = _dynamic(float_path, staged, settings)
        else:
            details = _static(float_path, staged, settings, calib, work)
        write_metadata(staged, {**metadata.as_strings(), "edgevit_deploy.precision": str(mode)})
    return QuantResult(out_path, str(mode), details)


# Dynamic quantization is for the matrix products (attention, MLPs, classifier): onnxruntime's dynamic
# ConvInteger collapses convolutional networks (EfficientNet-Lite0: 4.4 dB SQNR, 62 % top-1 agreement; with
# MatMul / Gemm only: 41 dB, 100 %; benchmarks/quant_fidelity.py), as its documentation warns ("static for
# CNNs"). Convolutions stay float here; use --quantize int8 (static) to quantize them.
DYNAMIC_OP_TYPES = ("MatMul", "Gemm")


def _dynamic(float_path: Path, out_path: Path, settings: QuantSettings) -> dict[str, Any]:
    q = require("onnxruntime.quantization", "onnx")
    excluded, unmatched = match_names(node_names(float_path), settings.exclude)
    q.quantize_dynamic(
        str(float_path),
        str(out_path),
        per_channel=True,
        reduce_range=REDUCE_RANGE,
        weight_type=q.QuantType.QInt8,
        nodes_to_exclude=excluded,
        op_types_to_quantize=list(DYNAMIC_OP_TYPES),
    )
    return {
        "method": "onnxruntime quantize_dynamic",
        "weights": "int8 per-channel (7-bit range)",
        "quantized_op_types": list(DYNAMIC_OP_TYPES),
        "activations": "quantized at run time (uint8); convolutions stay float",
        "excluded_nodes": excluded,
        "exclude_unmatched": unmatched,
    }


def _static(
    float_path: Path, out_path: Path, settings: QuantSettings, calib: CalibrationSet, work: Path
) -> dict[str, Any]:
    from .onnx_reconstruct import static_quantizer  # reconstruct: weights on the learned 7-bit grid

    sq = static_quantizer(float_path, calib, settings, work)
    excluded, unmatched = match_names(sq.nodes, settings.exclude)
    sq.quantize(out_path, excluded)
    details: dict[str, Any] = {
        "method": "onnxruntime quantize_static (QDQ)",
        "calibration_method": settings.calib_method,
        "weights": (
            "int8 per-channel (symmetric, 7-bit range)"
            if settings.activation_dtype == "int8"
            else "uint8 per-channel (8-bit, U8U8)"
        ),
        "activation_dtype": settings.activation_dtype,
        "calibration_images": calib.count,
        "excluded_nodes": excluded,
        "exclude_unmatched": unmatched,
        "kept_in_float_layers": [],
        "kept_in_float_nodes": list(excluded),
    }
    if settings.analyze or settings.target_sqnr is not None:
        from .onnx_analysis import analyze

        analysis = analyze(float_path, out_path, calib.data[:SEARCH_SAMPLES], work)
        details["analysis"] = analysis
        if settings.target_sqnr is not None:
            search = search_float_layers(sq, analysis["layers"], excluded, settings.target_sqnr, work, out_path)
            details.update(
                kept_in_float_layers=search["kept_in_float_layers"],
                kept_in_float_nodes=search["kept_in_float_nodes"],
                target_sqnr=search,
            )
            if not search["met"]:
                log.warning(
                    "--target-sqnr %.1f dB not met with %d layers in float (best %.2f dB); raise "
                    "max_float_layers or lower the target",
                    settings.target_sqnr,
                    len(search["kept_in_float_layers"]),
                    search["search_sqnr_db"],
                )
    return details
