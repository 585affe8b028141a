"""SiLU in int8 and attention's activation x activation matmuls in float (issue #15, "Speed", MobileViT-XS).

MobileViT's convs and MLPs use SiLU. In float between two int8 convs it cost a DequantizeLinear / DEQUANTIZE and
a QuantizeLinear / QUANTIZE over a full feature map plus a float sigmoid and multiply: MobileViT-XS int8 ran at
1.51x fp32 on onnxruntime and 0.91x on LiteRT (docs/quantization.md "Speed"). Now:

- onnxruntime: the SiLU's Sigmoid and Mul are quantized (QLinearSigmoid, QLinearMul); every other Sigmoid / Mul
  and every MatMul of two activations stay float (``kernel_float_nodes``: QLinearMatMul and the QLinearSoftmax
  it brings are slower than float there);
- LiteRT / ExecuTorch: the formulation spells ``nn.SiLU`` as ``x * sigmoid(x)`` (``silu_as_sigmoid_mul``),
  which litert-torch's quantizer annotates (int8 LOGISTIC and MUL, inside XNNPACK).

Structure and exactness only; the speed is measured by benchmarks/quant_speed.py.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions, QuantMode
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.formulations import apply_formulations
from edgevit_deploy.formulations.registry import rewrites_for
from edgevit_deploy.formulations.rewrites import SigmoidMulSiLU
from edgevit_deploy.quantize import onnx as qonnx
from edgevit_deploy.quantize.base import QuantSettings
from edgevit_deploy.quantize.calibration import CalibrationSet
from edgevit_deploy.verify.metrics import sqnr_db


class _ConvSiLUAttention(nn.Module):
    """conv -> SiLU -> tokens -> one attention head (q k^T scaled, softmax, attn v) -> MLP with SiLU -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.act = nn.SiLU()
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)
        self.fc1, self.act2, self.fc2 = nn.Linear(16, 32), nn.SiLU(), nn.Linear(32, 16)
        self.head = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.act(self.conv(x)).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        a = (q @ k.transpose(1, 2) * 0.25).softmax(-1)
        t = t + self.proj(a @ v)
        t = t + self.fc2(self.act2(self.fc1(t)))
        return self.head(t.mean(1))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return _ConvSiLUAttention().eval()


def _data(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 12, 12)).astype(np.float32)


def _meta() -> ArtifactMetadata:
    return ArtifactMetadata(model="conv_silu_attention", input_shape=(1, 3, 12, 12), layout="NCHW",
                            mean=(0.5,) * 3, std=(0.5,) * 3, toolkit_version="test",
                            checkpoint_sha256="random-init", precision="int8", num_classes=8)


# ------------------------------------------------------------------------------------------ formulation
def test_sigmoid_mul_silu_equals_silu_and_serves_only_the_xnnpack_targets():
    x = torch.linspace(-12, 12, 4096).reshape(4, 1024)
    torch.testing.assert_close(SigmoidMulSiLU()(x), nn.SiLU()(x), rtol=0, atol=1e-6)
    serving = {f for f in ("onnx", "xnnpack", "coreml", "executorch")
               if "silu_as_sigmoid_mul" in {r.name for r in rewrites_for(f)}}
    assert serving == {"xnnpack", "executorch"}  # onnx exports nn.SiLU as Sigmoid + Mul already
    new, counts = apply_formulations(_model(), "xnnpack")
    assert counts.get("silu_as_sigmoid_mul") == 2 and not any(type(m) is nn.SiLU for m in new.modules())
    x = torch.from_numpy(_data(4))
    with torch.no_grad():
        torch.testing.assert_close(new(x), _model()(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ onnxruntime
def _silu_graph():
    """y = x * sigmoid(x) (a SiLU), z = y * sigmoid(g) (a gate: not a SiLU), w = y * 0.5, p = z @ w^T, q = p @ W."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="silu/Sigmoid"),
        helper.make_node("Mul", ["s", "x"], ["y"], name="silu/Mul"),  # operands the other way round
        helper.make_node("Sigmoid", ["g"], ["sg"], name="gate/Sigmoid"),
        helper.make_node("Mul", ["y", "sg"], ["z"], name="gate/Mul"),
        helper.make_node("Mul", ["y", "half"], ["w"], name="scale/Mul"),
        helper.make_node("Transpose", ["w"], ["wt"], name="t", perm=[1, 0]),
        helper.make_node("MatMul", ["z", "wt"], ["p"], name="act/MatMul"),
        helper.make_node("MatMul", ["p", "W"], ["q"], name="weight/MatMul"),
    ]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4])  # noqa: E731
    return helper.make_graph(nodes, "g", [vi("x"), vi("g")], [vi("q")], [w, half])


def test_kernel_float_nodes_are_act_x_act_matmuls_and_every_sigmoid_or_mul_outside_a_silu():
    graph = _silu_graph()
    assert [(s.name, m.name) for s, m in qonnx._silus(graph)] == [("silu/Sigmoid", "silu/Mul")]
    assert qonnx.kernel_float_nodes(graph) == {
        "gate/Sigmoid": "Sigmoid outside a SiLU",
        "gate/Mul": "Mul outside a SiLU",
        "scale/Mul": "Mul outside a SiLU",
        "act/MatMul": "MatMul of two activations",
    }
    # a Sigmoid read by something else as well is no SiLU's
    graph.node.append(helper.make_node("Relu", ["s"], ["r"], name="other"))
    assert qonnx._silus(graph) == []


@pytest.fixture(scope="module")
def onnx_int8(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    work = tmp_path_factory.mktemp("silu_onnx")
    data = _data()
    meta = _meta()
    float_path = qonnx.preprocess(
        qonnx.export_float(_model(), torch.from_numpy(data[:1]), work / "f.onnx", ExportOptions(), meta),
        work / "f_pre.onnx",
    )
    prepared = work / "f_prepared.onnx"
    qonnx.prepare_float_graph(float_path, prepared)
    sq = qonnx.StaticQuantizer(prepared, CalibrationSet(data, "test"), QuantSettings(), work)
    return prepared, sq.quantize(work / "q.onnx", []), data


def _optimized_ops(path: Path, out: Path) -> Counter:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(out)
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(out)).graph.node)


def test_onnxruntime_runs_silu_in_int8_and_attention_matmuls_in_float(onnx_int8, tmp_path):
    float_path, q_path, data = onnx_int8
    ops = _optimized_ops(q_path, tmp_path / "opt.onnx")
    # both SiLUs as a table lookup and an int8 multiply, nothing of them left in float
    assert ops["QLinearSigmoid"] == 2 and ops["QLinearMul"] == 2 and ops["Sigmoid"] == 0, ops
    # q k^T and attn v write float (a scaled product may fuse into FusedMatMul; onnxruntime may read int8 inputs
    # that come dequantized through a Split / Transpose with MatMulIntegerToFloat), the softmax between them float
    assert ops["MatMul"] + ops["FusedMatMul"] + ops["MatMulIntegerToFloat"] == 2, ops
    assert ops["QLinearMatMul"] == 0, ops
    assert ops["QLinearSoftmax"] == 0 and ops["Softmax"] == 1, ops
    assert ops["QLinearConv"] == 1 and ops["QGemm"] >= 4, ops  # the weights' products int8
    # the QDQ file itself: the SiLU's Sigmoid reads a dequantized tensor, the attention MatMuls do not
    graph = onnx.load(str(q_path)).graph
    producers = {o: n for n in graph.node for o in n.output}
    for n in graph.node:
        if n.op_type == "Sigmoid":
            assert producers[n.input[0]].op_type == "DequantizeLinear", n.name
    kernel_float = qonnx.kernel_float_nodes(onnx.load(str(float_path)).graph)
    assert Counter(kernel_float.values()) == {"MatMul of two activations": 2, "Mul outside a SiLU": 1}
    # and it computes the model: int8 against the float graph on the calibration images
    assert sqnr_db(_ort_run(float_path, data), _ort_run(q_path, data)) > 25.0


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = qonnx.input_name(path)
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


# ------------------------------------------------------------------------------------------ LiteRT
def _tflite_ops(path: Path) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return Counter(f"{op['op_name']}/{np.dtype(tensors[op['outputs'][0]]['dtype']).name}"
                   for op in interp._get_ops_details())


@pytest.mark.slow
def test_litert_int8_runs_the_formulated_silu_as_int8_logistic_and_mul(tmp_path):
    from edgevit_deploy.quantize.tflite import quantize

    data = _data()
    example = torch.from_numpy(data[:1])
    options = ExportOptions(quantize=QuantMode.INT8, quant={"bias_correction": False})
    formulated, _ = apply_formulations(_model(), get_spec("tflite").formulation)
    after = _tflite_ops(quantize(formulated, example, tmp_path / "silu.tflite", options, _meta(),
                                 CalibrationSet(data, "test")).path)
    assert after["LOGISTIC/int8"] == 2 and after["LOGISTIC/float32"] == 0, after
    assert after["MUL/int8"] >= 2, after
    # the authors' nn.SiLU: no quantizer annotates aten.silu, so it ran in float between DEQUANTIZE and QUANTIZE
    before = _tflite_ops(quantize(_model(), example, tmp_path / "authors.tflite", options, _meta(),
                                  CalibrationSet(data, "test")).path)
    assert before["LOGISTIC/int8"] == 0 and before["LOGISTIC/float32"] == 2, before
    assert before["DEQUANTIZE/float32"] > after["DEQUANTIZE/float32"], (before, after)
