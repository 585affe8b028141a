"""ONNX int8 with onnxruntime.quantization: static QDQ (calibrated) and dynamic.

Static: fp32 export (the lead's :class:`~edgevit_deploy.converters.onnx.OnnxConverter`), onnxruntime's
pre-processing (``quant_pre_process``: symbolic shape inference, graph optimisation), the speed rewrites of
:func:`prepare_float_graph` (exact-erf GELU -> one ``Gelu`` op, weights shared with float ops untied), then
``quantize_static`` in QDQ format restricted to :data:`STATIC_OP_TYPES` (the ops with fast int8 kernels in
onnxruntime's CPU provider: Conv, MatMul, Gemm, and the Relu / Clip its QDQ quantizer folds into their
output range, and SiLU's Sigmoid and Mul). Everything else (LayerNorm, GELU, Softmax, residual Add, pooling,
reshapes, attention's products of two activations: :func:`kernel_float_nodes`) runs in float
between one DequantizeLinear and one QuantizeLinear: contiguous float islands instead of a Q/DQ pair around
every op. Weights per-channel symmetric int8; activations uint8 (default, U8S8: onnxruntime's VNNI kernels
on x86, its dot-product kernels on ARM; 8-bit weights) or int8 (S8S8 with weights in a 7-bit range, the
form that needs no session option on x86 CPUs without VNNI: :data:`REDUCE_RANGE`); the minmax /
percentile / entropy calibrator. The activation ranges are computed once and cached, so that ``exclude`` and the
``target_sqnr`` search re-quantize without re-calibrating.

``exclude`` / ``target_sqnr`` speak module paths as on the PT2E targets (:mod:`.onnx_modules` maps the
nodes to modules; an ``exclude`` pattern starting with ``/`` names ONNX nodes). ``target_sqnr`` runs the float
fallback search of every target (:mod:`.fallback`: module blocks weighed by their MACs and Q/DQ boundaries),
measured with onnxruntime on the re-quantized graph against the float model; the layers it keeps in float get
their uncorrected biases. A graph whose node names carry no module scopes falls back to the per-activation
search: the analysis (:mod:`.onnx_analysis`) ranks activations by their quantization SQNR and the nodes around
the worst ones are kept in float (1, 2, 4, ... of them) until the target is reached.

Speed on this 2-core AVX-512 VNNI host, 224x224, 1 thread (``benchmarks/quant_speed.py``; per-op
profiles in ``docs/quantization.md``, "Speed"): U8U8 (the previous default) sent EfficientNet-Lite0's
convolutions to onnxruntime's slow u8u8 path (int8 6x slower than fp32); U8S8 makes it 0.4x fp32.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
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


def activation_floor() -> float | None:
    """onnxruntime's calibrators scale by the observed range with no floor (a zero range gets scale 1)."""
    return None


SEARCH_SAMPLES = 16  # calibration images the target-SQNR search evaluates the output SQNR on

# Weights are quantized to 7 bits ([-64, 64], onnxruntime's ``reduce_range``). onnxruntime's x86 int8 kernels
# on CPUs without VNNI (AVX2 only: e.g. AMD EPYC before Zen 4) multiply uint8 x int8 pairs with VPMADDUBSW,
# which saturates its int16 sums when the weights use the full 8-bit range; the fused kernels then compute
# wrong results that a float simulation of the same QDQ graph does not show. Measured on such a CPU
# (onnxruntime 1.22.1 and 1.32.0 alike): EdgeViT-XXS @64 static int8 2.1 dB SQNR with 8-bit weights, 21.7 dB
# with 7-bit ones (21.8 dB unfused); dynamic 28.1 -> 35.6 dB. The cost elsewhere is one bit of weight
# precision: about 0.1 dB on EdgeViT-XXS, but 4.3 dB on EfficientNet-Lite0 (17.1 -> 12.8 dB, held-out top-1
# 92 -> 81 %, under the 85 % floor). So only the portable S8S8 form (``activation_dtype="int8"``) keeps
# 7-bit weights. The default U8S8 form keeps 8 bits: exact with VNNI (VPDPBUSD sums into int32) and on ARM;
# on an x86 CPU without VNNI, onnxruntime must be told to use its non-saturating kernels, session option
# X64_QUANT_PRECISION = "1" (the toolkit's host runtime, verify/runtimes.py, sets it on such CPUs). U8U8, the
# former default, is not saturating either, but its convolutions ran over 10x slower than U8S8 here (Lite0).
REDUCE_RANGE = True
X64_QUANT_PRECISION = "session.x64quantprecision"

# The op types the static path quantizes: those with int8 kernels that beat fp32 in onnxruntime's CPU
# provider (QLinearConv, QGemm, QLinearMatMul after its QDQ fusions) and the activations its quantizer folds
# into their output range (Relu, Clip). Quantizing the rest as well (LayerNorm's neighbours, GELU's Mul /
# Div, Softmax, Add, pooling) put a Q/DQ pair or a com.microsoft QLinear* op around each of them, slower
# than the float op (EdgeViT-XXS: QLinearMul, QLinearAdd, QLinearSoftmax and 150 DequantizeLinear).
#
# SiLU, ``x * sigmoid(x)`` (MobileViT's convs and MLPs), is quantized too: its Sigmoid and Mul (only those: a Mul
# or Sigmoid that is not a SiLU's stays float, :func:`kernel_float_nodes`). In float between the conv's
# DequantizeLinear and the next QuantizeLinear it is three ops (the QDQ passes give the Sigmoid and the Mul a
# DequantizeLinear each, so onnxruntime's QuickGelu fusion does not apply) plus a Q/DQ pair over a full feature
# map; as QLinearSigmoid (a table lookup) and QLinearMul it stays in uint8. MobileViT-XS, 224 px, 1 thread:
# int8 1.51x -> 0.84x fp32 with the act x act MatMuls below (docs/quantization.md "Speed").
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm", "Relu", "Clip", "Sigmoid", "Mul")
GELU_OPSET = 20  # the ONNX opset that has Gelu


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


def _constant_values(graph) -> dict[str, float]:
    """Scalar constants of ``graph`` (initializers and Constant nodes) by tensor name."""
    from onnx import numpy_helper

    out: dict[str, float] = {}
    for init in graph.initializer:
        if int(np.prod(init.dims)) == 1:
            out[init.name] = float(numpy_helper.to_array(init).reshape(()))
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            if arr.size == 1:
                out[node.output[0]] = float(arr.reshape(()))
    return out


def _erf_gelus(graph) -> list[tuple[str, list[Any], str]]:
    """Each exact-erf GELU of ``graph``, ``Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)`` as torch exports
    ``nn.GELU()`` (operands of the Muls and of the Add in either order): (x, its five nodes, output)."""
    consts = _constant_values(graph)
    producers = {o: n for n in graph.node for o in n.output}
    users: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def only_user(name: str, op_type: str) -> Any | None:
        us = users.get(name, [])
        return us[0] if len(us) == 1 and us[0].op_type == op_type else None

    def other(node, name: str) -> str | None:
        rest = [i for i in node.input if i != name]
        return rest[0] if len(rest) == 1 else None

    def is_const(name: str | None, value: float) -> bool:
        return name is not None and name in consts and abs(consts[name] - value) <= 1e-6 * max(1.0, abs(value))

    found = []
    for erf in graph.node:
        if erf.op_type != "Erf":
            continue
        div = producers.get(erf.input[0])
        if div is None or div.op_type != "Div" or not is_const(div.input[1], float(np.sqrt(2.0))):
            continue
        x = div.input[0]
        add = only_user(erf.output[0], "Add")
        if add is None or not is_const(other(add, erf.output[0]), 1.0):
            continue
        mul = only_user(add.output[0], "Mul")
        if mul is None or other(mul, add.output[0]) != x:
            continue
        half = only_user(mul.output[0], "Mul")
        if half is None or not is_const(other(half, mul.output[0]), 0.5):
            continue
        if len(users.get(div.output[0], [])) != 1:
            continue
        found.append((x, [div, erf, add, mul, half], half.output[0]))
    return found


def fuse_gelu(model) -> int:
    """Replace every exact-erf GELU of ``model`` (an ``onnx.ModelProto`` of opset >= 20) with one ONNX
    ``Gelu`` node (``approximate="none"``: the same function, ``x * 0.5 * (1 + erf(x / sqrt 2))``).

    onnxruntime fuses this pattern itself in a float model, but not in a QDQ model, whose GELU input comes
    from a DequantizeLinear that its QDQ passes duplicate per consumer (one for the Div, one for the Mul):
    five float ops instead of one (EdgeViT-XXS: Erf + Div + Mul + Add 1.6 ms against 0.9 ms fused). As one
    op, GELU is a float island the static quantizer leaves alone. Returns the number of GELUs fused."""
    helper = require("onnx.helper", "onnx")
    graph = model.graph
    gelus = _erf_gelus(graph)
    if not gelus:
        return 0
    drop = {id(n) for _, nodes, _ in gelus for n in nodes}
    first = {id(nodes[0]): (x, nodes, y) for x, nodes, y in gelus}
    kept = []
    for node in graph.node:
        if id(node) in first:
            x, nodes, y = first[id(node)]
            name = nodes[1].name.rsplit("/", 1)[0] + "/Gelu" if "/" in nodes[1].name else f"{nodes[1].name}_gelu"
            kept.append(helper.make_node("Gelu", [x], [y], name=name, approximate="none"))
        elif id(node) not in drop:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    consts = {i for _, nodes, _ in gelus for n in nodes for i in n.input}
    unused = [init for init in graph.initializer if init.name in consts and init.name not in used]
    for init in unused:  # the GELUs' own constants (sqrt 2, 1, 0.5)
        graph.initializer.remove(init)
    return len(gelus)


def untie_initializers(model, quantized_op_types: tuple[str, ...] = STATIC_OP_TYPES) -> int:
    """Give the float consumers of an initializer that a quantized op also reads their own copy.

    The exporter merges equal constants (e.g. the zero biases of a seeded model): a bias shared by a Gemm and
    a LayerNorm was quantized for the Gemm (int32 + DequantizeLinear) and the LayerNorm then read it through
    that DequantizeLinear: a rounded constant and one more op per float consumer (45 in EdgeViT-XXS).
    Returns the number of copies made."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            if name in inits:
                readers.setdefault(name, []).append(node)
    copies = 0
    for name, nodes in readers.items():
        if not any(n.op_type in quantized_op_types for n in nodes):
            continue
        for k, node in enumerate(n for n in nodes if n.op_type not in quantized_op_types):
            twin = type(inits[name])()
            twin.CopyFrom(inits[name])
            twin.name = f"{name}_float{k}"
            graph.initializer.append(twin)
            for i, inp in enumerate(node.input):
                if inp == name:
                    node.input[i] = twin.name
            copies += 1
    return copies


def prepare_float_graph(
    float_path: Path, out_path: Path, quantized_op_types: tuple[str, ...] = STATIC_OP_TYPES
) -> dict[str, Any]:
    """The float graph the quantizers start from: :func:`fuse_gelu` (after converting to opset
    :data:`GELU_OPSET` when the model is older and has a GELU to fuse) and :func:`untie_initializers`.
    Both are exact (tests/quantize/test_quant_onnx_speed.py). Writes ``out_path``; returns what changed."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(float_path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    info: dict[str, Any] = {"gelu_fused": 0, "initializers_untied": 0, "opset": opset}
    if _erf_gelus(model.graph) and opset < GELU_OPSET:
        version_converter = require("onnx.version_converter", "onnx")
        try:
            model = version_converter.convert_version(model, GELU_OPSET)
            info["opset"] = GELU_OPSET
        except Exception as exc:  # an op the converter lacks: GELU stays decomposed
            log.info("opset %d -> %d conversion failed (%s); GELU is not fused", opset, GELU_OPSET, exc)
    if info["opset"] >= GELU_OPSET:
        info["gelu_fused"] = fuse_gelu(model)
    info["initializers_untied"] = untie_initializers(model, quantized_op_types)
    onnx.save(model, str(out_path))
    return info


def node_names(model_path: Path) -> list[str]:
    onnx = require("onnx", "onnx")
    return [n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node]


def input_name(model_path: Path) -> str:
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in inits)


def _silus(graph) -> list[tuple[Any, Any]]:
    """Each SiLU of ``graph`` as torch exports ``nn.SiLU()`` (opset < 24): ``Mul(x, Sigmoid(x))``, operands in
    either order, the Sigmoid read by that Mul only: (sigmoid node, mul node)."""
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in dict.fromkeys(n.input):
            readers[i] = readers.get(i, 0) + 1
    found = []
    for mul in graph.node:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        for x, s in (tuple(mul.input), tuple(reversed(mul.input))):
            sig = producers.get(s)
            if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x and readers.get(s) == 1:
                found.append((sig, mul))
                break
    return found


def kernel_float_nodes(graph) -> dict[str, str]:
    """Nodes of a quantized op type (:data:`STATIC_OP_TYPES`) that stay float because onnxruntime's int8 form of
    them is slower than float on its CPU provider: {node name: why}.

    - a MatMul of two activations (attention's ``q @ k^T``, ``attn @ v``): QLinearMatMul, and the DQ -> Softmax
      -> Q between the two that onnxruntime then fuses into QLinearSoftmax, ran slower than the float MatMul and
      Softmax (MobileViT-XS: 2.84 + 3.41 ms against 1.54 + 0.80 ms; 1.51x -> 1.22x fp32 with them in float;
      EdgeViT-XXS 0.83x -> 0.82x, EfficientFormer-L1: docs/quantization.md "Speed");
    - a Sigmoid or Mul that is not part of a SiLU (:func:`_silus`): QLinearMul around a scale or a gate is a
      Q/DQ pair more than the float op."""
    constants = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    in_silu = {n.output[0] for pair in _silus(graph) for n in pair}  # protobuf wrappers have no stable id()
    out: dict[str, str] = {}
    for n in graph.node:
        if not n.name:
            continue
        if n.op_type == "MatMul" and not any(i in constants for i in n.input):
            out[n.name] = "MatMul of two activations"
        elif n.op_type in ("Sigmoid", "Mul") and n.output[0] not in in_silu:
            out[n.name] = f"{n.op_type} outside a SiLU"
    return out


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
        onnx = require("onnx", "onnx")
        #: left float whatever is asked: onnxruntime's int8 kernel for them is slower (:func:`kernel_float_nodes`)
        self.kernel_float = kernel_float_nodes(onnx.load(str(float_path), load_external_data=False).graph)

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
        # int8 weights: U8S8 (uint8 activations) is onnxruntime's fast pair on x86 (VNNI) and ARM; U8U8
        # took EfficientNet-Lite0's convolutions to a path 6x slower than fp32 on this host
        return self.q.QuantType.QInt8

    @property
    def reduce_range(self) -> bool:
        # S8S8 (activation_dtype int8) is the portable form: 7-bit weights, right without any session option
        # on x86 CPUs without VNNI; U8S8 keeps 8 bits (see REDUCE_RANGE and X64_QUANT_PRECISION)
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
            nodes_to_exclude=list(dict.fromkeys([*exclude_nodes, *self.kernel_float])),
            op_types_to_quantize=list(STATIC_OP_TYPES),
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
    reference: np.ndarray | None = None,
) -> dict[str, Any]:
    """Keep the nodes around the worst-ranked activations in float until the output SQNR meets
    ``target_db``: 1, 2, 4... activations, at most ``settings.max_float_layers``. ``reference``: the float
    outputs on the first :data:`SEARCH_SAMPLES` calibration images (default: the float ONNX graph's; a
    bias-corrected model's float graph is not the float model, so the caller passes the uncorrected one's)."""
    ranking = _new_nodes_only(ranking, base_exclude)
    x = sq.calib.data[:SEARCH_SAMPLES]
    ref = _run(sq.float_path, x) if reference is None else reference
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
        pre_path = preprocess(
            export_float(model, example, work / "float.onnx", options, metadata), work / "float_pre.onnx"
        )
        dynamic = mode is QuantMode.INT8_DYNAMIC
        float_path = work / "float_prepared.onnx"
        prepared = prepare_float_graph(pre_path, float_path, DYNAMIC_OP_TYPES if dynamic else STATIC_OP_TYPES)
        if dynamic:
            details = _dynamic(float_path, staged, settings)
        else:
            details = _static(model, example, float_path, staged, settings, calib, work)
        details["float_graph"] = prepared
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


def _float_reference(model: nn.Module, calib: CalibrationSet) -> np.ndarray:
    """The search's reference: the float model's outputs on its images, with the biases a bias correction
    changed put back (:func:`.bias_correction.with_uncorrected_biases`; the corrected float model is ~19 dB
    away from fp32 on EfficientNet-Lite0, and the search measured against it)."""
    from .bias_correction import uncorrected_biases, with_uncorrected_biases

    original = with_uncorrected_biases(model, list(uncorrected_biases(model))).eval()
    x = calib.data[:SEARCH_SAMPLES]
    with torch.no_grad():
        return np.concatenate(
            [original(torch.from_numpy(np.ascontiguousarray(x[i : i + 1]))).numpy() for i in range(len(x))]
        )


def _static(
    model: nn.Module,
    example: torch.Tensor,
    float_path: Path,
    out_path: Path,
    settings: QuantSettings,
    calib: CalibrationSet,
    work: Path,
) -> dict[str, Any]:
    from .onnx_modules import ModuleNodes, OnnxMeasure, split_patterns
    from .onnx_reconstruct import static_quantizer  # reconstruct: weights on the learned grid

    sq = static_quantizer(float_path, calib, settings, work)
    mods = ModuleNodes(model, float_path)
    node_patterns, module_patterns = split_patterns(settings.exclude)
    excluded, unmatched = match_names(sq.nodes, node_patterns)
    excluded_modules, unmatched_modules = mods.match(module_patterns)
    base_nodes = list(dict.fromkeys(excluded + mods.nodes_of(excluded_modules)))
    x = calib.data[:SEARCH_SAMPLES]
    reference = _float_reference(model, calib) if settings.target_sqnr is not None else None
    measure = OnnxMeasure(sq, mods, base_nodes, model, x, reference, work)
    measure.quantize(out_path, base_nodes)
    details: dict[str, Any] = {
        "method": "onnxruntime quantize_static (QDQ)",
        "calibration_method": settings.calib_method,
        "weights": (
            "int8 per-channel (symmetric, 7-bit range)"
            if sq.reduce_range
            else f"int8 per-channel (symmetric, 8-bit; x86 without VNNI: {X64_QUANT_PRECISION}=1)"
        ),
        "kernels": "U8S8" if settings.activation_dtype == "uint8" else "S8S8",
        "quantized_op_types": list(STATIC_OP_TYPES),
        # nodes of those types onnxruntime runs faster in float (kernel_float_nodes), by reason
        "float_for_speed": {r: n for r, n in sorted(Counter(sq.kernel_float.values()).items())},
        "activation_dtype": settings.activation_dtype,
        "calibration_images": calib.count,
        "excluded_nodes": base_nodes,
        "excluded_modules": excluded_modules,
        "exclude_unmatched": unmatched + unmatched_modules,
        "kept_in_float_layers": list(excluded_modules),
        "kept_in_float_nodes": list(base_nodes),
    }
    if settings.analyze or settings.target_sqnr is not None:  # per activation: the report's "worst layers"
        from .onnx_analysis import analyze

        details["analysis"] = analyze(float_path, out_path, x, work)
    if settings.target_sqnr is None:
        return details
    from .fallback import analyze as analyze_blocks
    from .fallback import module_macs, search
    from .reconstruct import find_blocks

    order = find_blocks(model, example)
    if mods.covers(order):  # the search of every target: module blocks weighed by their latency cost
        blocks = analyze_blocks(
            measure, order, module_macs(model, example), model, "each block quantized alone (onnxruntime QDQ)"
        )
        found = search(measure, blocks, order, excluded_modules, settings.target_sqnr, settings.max_float_layers)
        plan = excluded_modules + found["kept_in_float_layers"]
        nodes = measure.float_nodes(plan)
        measure.quantize(out_path, nodes)
        details.update(
            block_analysis=blocks,
            kept_in_float_layers=plan,
            kept_in_float_nodes=nodes,
            target_sqnr={**found, "units": "modules", "kept_in_float_nodes": nodes},
        )
    else:  # node names without module scopes: the worst activations' nodes, 1, 2, 4...
        log.info("onnx --target-sqnr: the graph's node names do not name modules; searching by activation")
        found = search_float_layers(
            sq, details["analysis"]["layers"], base_nodes, settings.target_sqnr, work, out_path, reference
        )
        details.update(
            kept_in_float_layers=found["kept_in_float_layers"],
            kept_in_float_nodes=found["kept_in_float_nodes"],
            target_sqnr={**found, "units": "activations"},
        )
    if not found["met"]:
        log.warning(
            "--target-sqnr %.1f dB not met with %d layers in float (best %.2f dB); raise "
            "max_float_layers or lower the target",
            settings.target_sqnr,
            len(found["kept_in_float_layers"]),
            found["search_sqnr_db"],
        )
    return details
