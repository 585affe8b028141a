"""The static ONNX int8 graph that runs fast in onnxruntime (issue #15, "Speed"): which op types carry Q/DQ,
which int8 kernels onnxruntime fuses them into, float islands left alone, U8S8 with per-channel int8 weights;
and the float-graph rewrites before quantization (GELU fusion, untied initializers), each proven exact.
Structure only: speed itself is measured by benchmarks/quant_speed.py, never asserted here."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers.quant_fixtures import quantized
from onnx import TensorProto, helper, numpy_helper

from edgevit_deploy.quantize.onnx import STATIC_OP_TYPES, fuse_gelu, prepare_float_graph, untie_initializers


def _session(model_or_path, optimize: bool = False, optimized_out: Path | None = None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
    src = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _run(model_or_path, x: np.ndarray) -> np.ndarray:
    s = _session(model_or_path)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


# ------------------------------------------------------------------------------------ GELU fusion
def _erf_gelu_model(swap: bool = False, half: float = 0.5, opset: int = 20):
    """y = x * (erf(x / sqrt 2) + 1) * 0.5 as torch exports nn.GELU(); ``swap``: operands the other way round."""
    c = {"sqrt2": np.float32(np.sqrt(2.0)), "one": np.float32(1.0), "half": np.float32(half)}
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in c.items()]
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"], name="/act/Div"),
        helper.make_node("Erf", ["d"], ["e"], name="/act/Erf"),
        helper.make_node("Add", ["one", "e"] if swap else ["e", "one"], ["a"], name="/act/Add"),
        helper.make_node("Mul", ["a", "x"] if swap else ["x", "a"], ["m"], name="/act/Mul"),
        helper.make_node("Mul", ["half", "m"] if swap else ["m", "half"], ["y"], name="/act/Mul_1"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m


@pytest.mark.parametrize("swap", [False, True])
def test_erf_gelu_becomes_one_gelu_op_computing_the_same(swap):
    x = np.linspace(-6, 6, 128, dtype=np.float32).reshape(2, 64)
    m = _erf_gelu_model(swap)
    before = _run(m, x)
    assert fuse_gelu(m) == 1
    assert [n.op_type for n in m.graph.node] == ["Gelu"]
    assert m.graph.node[0].name == "/act/Gelu"
    after = _run(m, x)
    # the same function: exact-erf GELU, within float32 rounding of the decomposed form
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def test_a_different_constant_is_not_a_gelu():
    m = _erf_gelu_model(half=0.4)
    assert fuse_gelu(m) == 0
    assert Counter(n.op_type for n in m.graph.node)["Erf"] == 1


def test_prepare_upgrades_an_older_opset_to_fuse_and_stays_exact(tmp_path):
    x = np.linspace(-4, 4, 128, dtype=np.float32).reshape(2, 64)
    src = tmp_path / "gelu17.onnx"
    onnx.save(_erf_gelu_model(opset=17), src)
    info = prepare_float_graph(src, tmp_path / "prepared.onnx")
    assert info["gelu_fused"] == 1 and info["opset"] == 20
    np.testing.assert_allclose(_run(tmp_path / "prepared.onnx", x), _run(src, x), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------- untied initializers
def _shared_bias_model():
    """A Gemm and a LayerNorm reading one (deduplicated) bias initializer."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
             numpy_helper.from_array(np.ones(8, np.float32), "gamma")]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc"),
             helper.make_node("LayerNormalization", ["h", "gamma", "b"], ["y"], name="ln", axis=-1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def test_a_float_op_gets_its_own_copy_of_a_weight_a_quantized_op_reads():
    m = _shared_bias_model()
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    before = _run(m, x)
    assert untie_initializers(m) == 1
    gemm, ln = m.graph.node
    assert gemm.input[2] == "b" and ln.input[2] != "b"
    np.testing.assert_array_equal(_run(m, x), before)  # the same values, bit for bit
    m2 = _shared_bias_model()
    assert untie_initializers(m2, quantized_op_types=("Conv",)) == 0  # nothing quantized reads it: kept shared


# -------------------------------------------------------------------------- the quantized graphs
def _graph(path):
    return onnx.load(str(path)).graph


def _weight_dqs(graph):
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return [(n, inits, consumers.get(n.output[0], [])) for n in graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits]


def test_only_ops_with_int8_kernels_carry_quantized_weights_per_channel():
    path, _ = quantized("edgevit_xxs", "onnx")
    graph = _graph(path)
    readers = Counter()
    for dq, inits, users in _weight_dqs(graph):
        arr = numpy_helper.to_array(inits[dq.input[0]])
        for u in users:
            readers[u.op_type] += 1
        if arr.ndim >= 2:  # a weight: int8, one scale per output channel (axis 0 of a Conv's, 1 of a MatMul's)
            scale = numpy_helper.to_array(inits[dq.input[1]])
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            assert arr.dtype == np.int8
            assert scale.size == arr.shape[axis] > 1, dq.name
    assert set(readers) <= {"Conv", "MatMul", "Gemm"}, readers  # no LayerNorm / BatchNorm reads a DQ'd constant
    assert readers["Conv"] > 20 and readers["Gemm"] > 10


def test_default_activations_are_uint8_and_weights_use_eight_bits():
    path, report = quantized("edgevit_xxs", "onnx")
    graph = _graph(path)
    inits = {i.name: i for i in graph.initializer}
    zps = [numpy_helper.to_array(inits[n.input[2]]) for n in graph.node
           if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype == np.uint8 for z in zps)
    weights = [numpy_helper.to_array(inits[dq.input[0]]) for dq, inits, _ in _weight_dqs(graph)]
    weights = [w for w in weights if w.ndim >= 2]
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == 127  # the full 8-bit grid
    q = report.to_dict()["quantization"]
    assert q["kernels"] == "U8S8" and q["quantized_op_types"] == list(STATIC_OP_TYPES)
    assert q["float_for_speed"]["MatMul of two activations"] == 14  # 7 attentions' q k^T and attn v


def test_float_islands_have_no_qdq_inside_and_gelu_is_one_op():
    path, report = quantized("edgevit_xxs", "onnx")
    graph = _graph(path)
    ops = Counter(n.op_type for n in graph.node)
    assert ops["Gelu"] == 12 and ops["Erf"] == 0
    assert report.to_dict()["quantization"]["float_graph"]["gelu_fused"] == 12
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    # every QuantizeLinear quantizes the output of an op quantized on purpose (its int8 kernel writes it) or
    # the input of one: a float op's output is never quantized only to be dequantized for another float op
    for q in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        src = producers.get(q.input[0])
        users = {u.op_type for dq in consumers.get(q.output[0], []) for u in consumers.get(dq.output[0], [])}
        assert (src is not None and src.op_type in STATIC_OP_TYPES) or users & set(STATIC_OP_TYPES), (q.name, users)
    # so LayerNorm and Softmax read float tensors: no Q -> DQ pair in front of them
    for n in graph.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            src = producers.get(n.input[0])
            assert src is None or src.op_type != "DequantizeLinear", n.name


def test_onnxruntime_runs_every_quantized_op_in_an_int8_kernel(tmp_path):
    path, _ = quantized("edgevit_xxs", "onnx")
    out = tmp_path / "optimized.onnx"
    _session(path, optimize=True, optimized_out=out)
    ops = Counter(n.op_type for n in _graph(out).node)
    # every Conv / Gemm fused into its int8 kernel; the MatMuls left in float are attention's products of two
    # activations (q k^T, attn v: kernel_float_nodes), 7 attentions x 2, the scaled q k^T as a FusedMatMul
    assert ops["Conv"] == 0 and ops["Gemm"] == 0, ops
    assert ops["MatMul"] + ops["FusedMatMul"] == 14 and ops["QLinearMatMul"] == 0, ops
    assert ops["QLinearConv"] > 20 and ops["QGemm"] > 10, ops
    # no int8 element-wise op: the float islands stay float
    assert not {"QLinearAdd", "QLinearMul", "QLinearSoftmax", "QLinearAveragePool", "QLinearSigmoid"} & set(ops), ops
    assert ops["Gelu"] == 12 and ops["LayerNormalization"] > 0


def test_relu6_is_folded_into_the_conv_output_range():
    path, _ = quantized("efficientnet_lite0", "onnx")
    ops = Counter(n.op_type for n in _graph(path).node)
    assert ops["Conv"] > 40 and ops["Clip"] == 0 and ops["Relu"] == 0, ops
    assert ops["Add"] > 0  # the residual adds stay float, between a DQ and a Q


@pytest.mark.parametrize("machine, flags, expected", [
    ("x86_64", "fpu avx2 avx512f", True),          # AVX2 / AVX-512 without VNNI: u8s8 would saturate
    ("x86_64", "fpu avx2 avx512f avx512_vnni", False),
    ("x86_64", "fpu avx2 avx_vnni", False),
    ("aarch64", "fp asimd asimddp", False),         # ARM: the option does not apply
])
def test_onnx_host_runtime_asks_for_non_saturating_kernels_only_without_vnni(monkeypatch, machine, flags, expected):
    from edgevit_deploy.verify import runtimes

    monkeypatch.setattr(runtimes.platform, "machine", lambda: machine)
    monkeypatch.setattr(runtimes.Path, "read_text", lambda self, *a, **k: f"processor : 0\nflags : {flags}\n")
    assert runtimes.x86_without_vnni() is expected
