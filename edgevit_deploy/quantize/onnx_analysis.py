"""Per-layer sensitivity of an ONNX QDQ model, the way onnxruntime's ``qdq_loss_debug`` tools do it.

Both models are augmented to output every intermediate tensor (``modify_model_output_intermediate_tensors``);
each activation of the QDQ model is matched with its value before quantize/dequantize and with its float
twin (``create_activation_matching``), and weights with their float originals (dequantized here, see
:func:`_weight_matching`).
SQNRs are accumulated image by image (signal and noise energy summed, which equals onnxruntime's
``compute_signal_to_quantization_noice_ratio`` on the concatenation) so that memory stays one image deep.

Each activation ("layer") row also says what Q-HyViT (2023) blames for hybrid-ViT PTQ losses:
- ``kind``: the op producing it (layernorm / softmax / gelu / conv / matmul ...): mixed normalisation
  layers (BatchNorm folded into convs next to LayerNorm) give very different ranges in one network;
- ``min``/``max``/``outlier_ratio`` (max |x| over its 99.9th percentile): wide dynamic ranges;
- ``zero_point`` and ``zero_point_at_limit``: the zero point at the end of the integer range although the
  range crosses zero (clipped: zero-point overflow). A one-sided range (ReLU / ReLU6 outputs) puts the zero
  point at the limit by design and is not flagged.

Fused activations: onnxruntime's QDQ quantizer removes a Relu / Clip that follows a Conv and lets the
quantization range do the clipping, so in the QDQ model the tensor of that name holds the *unclipped* conv
output before its QuantizeLinear. Its "quantization error" is then measured against the clipped value (the
float op applied), or the clipping itself would count as noise (a ReLU6 output would show ~0 dB).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .._lazy import require

log = logging.getLogger(__name__)

_KINDS = {
    "LayerNormalization": "layernorm",
    "Softmax": "softmax",
    "Gelu": "gelu",
    "BatchNormalization": "batchnorm",
    "Conv": "conv",
    "MatMul": "matmul",
    "Gemm": "linear",
    "ConvTranspose": "conv_transpose",
    "Relu": "relu",
    "Clip": "relu6",
    "Add": "add",
    "Mul": "mul",
    "Sigmoid": "sigmoid",
    "AveragePool": "pool",
    "GlobalAveragePool": "pool",
    "ReduceMean": "reduce_mean",
}


def _graph_index(model) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producers, consumers


# ops that only move values: a tensor they produce has the kind of the op that computed its values
_MOVES = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"})


def _kind(node, producers: dict[str, Any]) -> str:
    """The op kind of ``node``; an exact-erf GELU (x * 0.5 * (1 + erf(x / sqrt 2))) is recognised, and a
    reshape / transpose takes the kind of the op behind it (the static quantizer quantizes LayerNorm's output
    after the Reshape that feeds the next MatMul: its range is LayerNorm's)."""
    for _ in range(8):
        if node is None or node.op_type not in _MOVES or node.input[0] not in producers:
            break
        node = producers[node.input[0]]
    if node is None:
        return "input"
    if node.op_type == "Mul":
        for inp in node.input:
            src = producers.get(inp)
            for _ in range(2):
                if src is None:
                    break
                if src.op_type == "Erf":
                    return "gelu"
                src = next((producers[i] for i in src.input if i in producers), None)
    return _KINDS.get(node.op_type, node.op_type.lower())


def _qparams(qdq_model) -> dict[str, tuple[float, int, str]]:
    """activation name -> (scale, zero point, integer dtype) of the QuantizeLinear that quantizes it."""
    numpy_helper = require("onnx.numpy_helper", "onnx")
    inits = {i.name: i for i in qdq_model.graph.initializer}
    out = {}
    for n in qdq_model.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[1] not in inits or len(n.input) < 3 or n.input[2] not in inits:
            continue
        scale = numpy_helper.to_array(inits[n.input[1]])
        zp = numpy_helper.to_array(inits[n.input[2]])
        if scale.size == 1:
            out[n.input[0]] = (float(scale.reshape(())), int(zp.reshape(())), str(zp.dtype))
    return out


class _Accum:
    """Running signal / noise energies and range of one activation."""

    def __init__(self) -> None:
        self.signal = self.qdq_noise = self.pre_signal = self.xmodel_noise = 0.0
        self.lo, self.hi = np.inf, -np.inf
        self.p999: list[float] = []

    def add(
        self, pre: np.ndarray, post: np.ndarray, flt: np.ndarray | None, fused: tuple[float, float] | None = None
    ) -> None:
        pre64, post64 = pre.astype(np.float64).ravel(), post.astype(np.float64).ravel()
        if fused is not None:  # the float Relu / Clip that the QDQ model folded into the quantization range
            pre64 = np.clip(pre64, *fused)
        self.pre_signal += float(np.sum(pre64**2))
        self.qdq_noise += float(np.sum((pre64 - post64) ** 2))
        ref = pre64 if flt is None else flt.astype(np.float64).ravel()
        self.signal += float(np.sum(ref**2))
        if flt is not None:
            self.xmodel_noise += float(np.sum((ref - post64) ** 2))
        self.lo, self.hi = min(self.lo, float(ref.min())), max(self.hi, float(ref.max()))
        self.p999.append(float(np.percentile(np.abs(ref), 99.9)))

    @staticmethod
    def _db(signal: float, noise: float) -> float:
        eps = np.finfo(np.float64).eps
        return float(10 * np.log10(max(signal, eps) / max(noise, eps)))

    def row(self) -> dict[str, float]:
        p999 = float(np.mean(self.p999)) if self.p999 else 0.0
        return {
            "sqnr_db": self._db(self.pre_signal, self.qdq_noise),
            "xmodel_sqnr_db": self._db(self.signal, self.xmodel_noise),
            "min": self.lo,
            "max": self.hi,
            "abs_p999": p999,
            "outlier_ratio": float(max(abs(self.lo), abs(self.hi)) / p999) if p999 > 0 else 1.0,
        }


def _constant(model, name: str) -> float | None:
    numpy_helper = require("onnx.numpy_helper", "onnx")
    for init in model.graph.initializer:
        if init.name == name:
            return float(numpy_helper.to_array(init).reshape(()))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return float(numpy_helper.to_array(node.attribute[0].t).reshape(()))
    return None


def fused_activations(float_model, qdq_model) -> dict[str, tuple[float, float]]:
    """Tensor name -> (low, high) of every float Relu / Clip whose output the QDQ model produces with
    another op (the activation was fused into the producer and its quantization range)."""
    qdq_producers = {o: n.op_type for n in qdq_model.graph.node for o in n.output}
    out: dict[str, tuple[float, float]] = {}
    for node in float_model.graph.node:
        if node.op_type not in ("Relu", "Clip") or qdq_producers.get(node.output[0], node.op_type) == node.op_type:
            continue
        if node.op_type == "Relu":
            out[node.output[0]] = (0.0, np.inf)
            continue
        bounds = [_constant(float_model, i) if i else None for i in list(node.input[1:3]) + [""] * 2][:2]
        attrs = {a.name: a.f for a in node.attribute}  # opset < 11 keeps min / max as attributes
        lo = bounds[0] if bounds[0] is not None else attrs.get("min", -np.inf)
        hi = bounds[1] if bounds[1] is not None else attrs.get("max", np.inf)
        out[node.output[0]] = (float(lo), float(hi))
    return out


def _session(path: Path):
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _activations(sess, name: str, x: np.ndarray) -> dict[str, list[np.ndarray]]:
    from onnxruntime.quantization.qdq_loss_debug import _TENSOR_SAVE_POSTFIX

    outs = sess.run(None, {name: x})
    return {
        o.name[: -len(_TENSOR_SAVE_POSTFIX)]: [v]
        for o, v in zip(sess.get_outputs(), outs)
        if o.name.endswith(_TENSOR_SAVE_POSTFIX)
    }


def analyze(float_path: Path, qdq_path: Path, data: np.ndarray, work: Path) -> dict[str, Any]:
    """Rank the QDQ model's activations by quantization SQNR (worst first) and its weights likewise."""
    onnx = require("onnx", "onnx")
    dbg = require("onnxruntime.quantization.qdq_loss_debug", "onnx")
    aug_float, aug_qdq = work / "aug_float.onnx", work / "aug_qdq.onnx"
    dbg.modify_model_output_intermediate_tensors(str(float_path), str(aug_float))
    dbg.modify_model_output_intermediate_tensors(str(qdq_path), str(aug_qdq))
    float_model = onnx.load(str(float_path))
    qdq_model = onnx.load(str(qdq_path))
    producers, consumers = _graph_index(float_model)
    qparams = _qparams(qdq_model)
    fused = fused_activations(float_model, qdq_model)
    s_float, s_qdq = _session(aug_float), _session(aug_qdq)
    in_name = s_float.get_inputs()[0].name
    acc: dict[str, _Accum] = {}
    for i in range(len(data)):
        x = np.ascontiguousarray(data[i : i + 1], dtype=np.float32)
        matching = dbg.create_activation_matching(_activations(s_qdq, in_name, x), _activations(s_float, in_name, x))
        for name, m in matching.items():
            flt = m.get("float")
            acc.setdefault(name, _Accum()).add(
                m["pre_qdq"][0], m["post_qdq"][0], flt[0] if flt else None, fused.get(name)
            )
    layers = []
    for name, a in acc.items():
        node = producers.get(name)
        row: dict[str, Any] = {
            "layer": name,
            "op_type": node.op_type if node is not None else "input",
            "kind": _kind(node, producers),
            **a.row(),
        }
        if name in qparams:
            scale, zp, dtype = qparams[name]
            info = np.iinfo(np.dtype(dtype))
            crosses_zero = row["min"] < 0 < row["max"]
            row.update(
                scale=scale,
                zero_point=zp,
                activation_dtype=dtype,
                zero_point_at_limit=crosses_zero and zp in (info.min, info.max),
            )
        row["fused_activation"] = name in fused
        row["nodes"] = list(
            dict.fromkeys(([node.name] if node is not None else []) + [c.name for c in consumers.get(name, [])])
        )
        layers.append(row)
    layers.sort(key=lambda r: r["sqnr_db"])
    weight_rows = sorted(weight_errors(float_path, qdq_path), key=lambda r: r["sqnr_db"])
    return {"layers": layers, "weights": weight_rows, "summary": summarize(layers), "samples": len(data)}


def weight_errors(float_path: Path, qdq_path: Path) -> list[dict[str, Any]]:
    """SQNR of every quantized weight tensor against its float original (scalars and all-zero tensors,
    such as freshly initialised biases, have no signal to measure and are skipped)."""
    dbg = require("onnxruntime.quantization.qdq_loss_debug", "onnx")
    rows = []
    for name, (flt, deq) in _weight_matching(float_path, qdq_path).items():
        if flt.ndim == 0 or flt.shape != deq.shape or not np.any(flt):
            continue
        rows.append(
            {
                "weight": name,
                "sqnr_db": float(dbg.compute_signal_to_quantization_noice_ratio(flt, deq)),
                "shape": list(flt.shape),
            }
        )
    return rows


def _weight_matching(float_path: Path, qdq_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each constant weight of the QDQ model (``NAME_quantized`` -> DequantizeLinear), dequantized, with its float
    original ``NAME``. Done here rather than by onnxruntime's ``create_weight_matching``: that one subtracts the
    zero point in the weights' own integer type, which wraps around for uint8 weights (U8U8, the former default), so
    every weight quantized to uint8 showed a negative SQNR."""
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    float_inits = {t.name: t for t in onnx.load(str(float_path), load_external_data=True).graph.initializer}
    qdq = onnx.load(str(qdq_path), load_external_data=True).graph
    inits = {t.name: t for t in qdq.initializer}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node in qdq.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        name = node.input[0].removesuffix("_quantized")
        if name == node.input[0] or name not in float_inits or node.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.int64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zp = (
            numpy_helper.to_array(inits[node.input[2]]).astype(np.int64)
            if len(node.input) > 2 and node.input[2] in inits
            else np.zeros_like(scale, dtype=np.int64)
        )
        if scale.size > 1:  # per channel along ``axis``
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % q.ndim
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        else:
            scale, zp = scale.reshape(()), zp.reshape(())
        out[name] = (numpy_helper.to_array(float_inits[name]).astype(np.float64), (q - zp) * scale)
    return out


def summarize(layers: list[dict[str, Any]], worst: int = 10) -> dict[str, Any]:
    """What makes the worst layers bad: their kinds, outliers and zero points."""
    by_kind: dict[str, list[float]] = {}
    for r in layers:
        by_kind.setdefault(r["kind"], []).append(r["sqnr_db"])
    bottom = layers[:worst]
    return {
        "worst_layers": [r["layer"] for r in bottom],
        "worst_kinds": dict(Counter(r["kind"] for r in bottom)),
        "median_sqnr_db_by_kind": {k: float(np.median(v)) for k, v in sorted(by_kind.items())},
        "wide_range_layers": [r["layer"] for r in layers if r["outlier_ratio"] > 4.0][:worst],
        "zero_point_at_limit": [r["layer"] for r in layers if r.get("zero_point_at_limit")][:worst],
    }
