"""The ONNX int8 artifact computes the same thing in onnxruntime's fused int8 kernels as in a float simulation
of its QDQ graph. On x86 CPUs without VNNI (AVX2 only) onnxruntime's uint8 x int8 kernels saturate when the
weights use the full 8-bit range (EdgeViT-XXS: 2.1 dB fused against 21.8 dB simulated); the portable S8S8
form (activation_dtype int8) keeps weights within 7 bits so that it is right on whichever CPU runs it; the
default U8S8 form keeps 8 bits and needs onnxruntime's session.x64quantprecision=1 on such CPUs."""
from __future__ import annotations

import numpy as np

from edgevit_deploy.quantize.calibration import load_calibration
from edgevit_deploy.verify.metrics import sqnr_db
from helpers.quant_fixtures import model, quantized


def _weights(path) -> dict[str, np.ndarray]:
    """int8 weight tensors of a QDQ graph: the initializers that a DequantizeLinear reads, of rank >= 2."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            arr = numpy_helper.to_array(inits[node.input[0]])
            if arr.dtype == np.int8 and arr.ndim >= 2:
                out[node.input[0]] = arr
    return out


def test_int8_weights_stay_within_seven_bits():
    path, _ = quantized("edgevit_xxs", "onnx", quant=(("activation_dtype", "int8"),))
    weights = _weights(path)
    assert len(weights) > 40  # the convolutions and matrix products are quantized
    # symmetric 7-bit grid [-64, 64]: a pair of uint8 x int8 products, 2 * 255 * 64, fits in int16
    assert all(np.abs(w.astype(np.int32)).max() <= 64 for w in weights.values()), \
        {k: (int(w.min()), int(w.max())) for k, w in weights.items() if np.abs(w.astype(np.int32)).max() > 64}


def _run(path, x: np.ndarray, optimize: bool) -> np.ndarray:
    import onnxruntime as ort

    from edgevit_deploy.verify.runtimes import x86_without_vnni

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if x86_without_vnni():  # as the toolkit's host runtime does: non-saturating kernels for 8-bit int8 weights
        so.add_session_config_entry("session.x64quantprecision", "1")
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def test_fused_int8_kernels_agree_with_the_simulated_qdq_graph():
    path, _ = quantized("edgevit_xxs", "onnx")
    _, held = load_calibration(model("edgevit_xxs").deploy_cfg, None, 16, 0)
    x = held.data[:12]
    simulated, fused = _run(path, x, optimize=False), _run(path, x, optimize=True)
    # the integer kernels round differently from the float simulation (24 dB apart on an AVX2 CPU with 7-bit
    # weights); saturating 8-bit weights put them 2.5 dB apart
    assert sqnr_db(simulated, fused) >= 15.0


def test_default_onnx_int8_is_u8s8_with_eight_bit_int8_weights():
    import onnx
    from onnx import numpy_helper

    path, report = quantized("edgevit_xxs", "onnx")
    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    weights = [numpy_helper.to_array(inits[n.input[0]]) for n in graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    weights = [w for w in weights if w.ndim >= 2]
    # int8 weights (U8S8: onnxruntime's VNNI / ARM dot-product kernels) on the full 8-bit grid; U8U8 sent
    # EfficientNet-Lite0's depthwise convolutions to a kernel 20x slower (docs/quantization.md, "Speed")
    assert len(weights) > 40 and all(w.dtype == np.int8 for w in weights)
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) > 64
    assert report.to_dict()["quantization"]["activation_dtype"] == "uint8"
