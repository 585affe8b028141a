"""TFLite int8 exports that litert-torch could not convert before a reformulation.

MobileViG: the ``mobilevig_mrconv_without_zeros_like`` rewrite is equal to ``MRConv4d`` and lets
litert-torch convert the quantized graph. Without it the PT2E int8 conversion of every MobileViG failed
with "Attempting to convert non-NHWC compatible node to NHWC: dequantize_per_tensor_91" (the dequantize of
``x`` shared by ``zeros_like`` and the NHWC ``cat`` loses its shape in litert-torch's layout pass).

FcaFormer: with the authors' list of cross-token groups (group 0 concatenated anew by every later block)
the conversion failed with "'tfl.reshape' op quantization parameters violate the same scale constraint";
the model now keeps the concatenation running (equal: tests/models/test_zoo_papers_models.py) and converts.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgevit_deploy.formulations import apply_formulations
from edgevit_deploy.formulations.zoo import MaxRelativeConvNoZeros, _mobilevig_mrconv
from edgevit_deploy.models.mobilevig import MRConv4d


def _random_mrconv(c: int, k: int, seed: int) -> MRConv4d:
    """An eval-mode MRConv4d with random conv weights and random BatchNorm statistics / affine terms."""
    g = torch.Generator().manual_seed(seed)
    m = MRConv4d(c, 2 * c, K=k).eval()
    conv, bn = m.nn[0], m.nn[1]
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g))
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g))
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g))
    return m


# (C, H, W, K): no neighbour (MobileViG's 2x2 SVGA stage at 64 px; K = H = W), one hop, several hops,
# rectangular, K = 3
MRCONV_SHAPES = [(8, 2, 2, 2), (6, 3, 3, 3), (8, 4, 4, 2), (4, 8, 8, 2), (5, 7, 10, 2), (4, 9, 6, 3)]


@pytest.mark.parametrize("c, h, w, k", MRCONV_SHAPES)
def test_mrconv_without_zeros_like_equals_mrconv(c, h, w, k):
    ref = _random_mrconv(c, k, seed=c + h + w)
    new = _mobilevig_mrconv(ref)
    assert isinstance(new, MaxRelativeConvNoZeros)
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        y_ref, y_new = ref(x), new(x)
    assert y_new.shape == y_ref.shape == (2, 2 * c, h, w)
    assert torch.allclose(y_new, y_ref, rtol=1e-5, atol=1e-5), (y_new - y_ref).abs().max()


def test_mrconv_rewrite_has_no_zeros_like_in_its_exported_graph():
    ref = _random_mrconv(8, 2, seed=0)
    new = _mobilevig_mrconv(ref)
    for size in (2, 4):  # without and with neighbours
        x = torch.randn(1, 8, size, size)

        def targets(m: nn.Module) -> set:
            gm = torch.export.export(m, (x,)).graph_module
            return {n.target for n in gm.graph.nodes if n.op == "call_function"}

        assert torch.ops.aten.zeros_like.default in targets(ref)
        assert torch.ops.aten.zeros_like.default not in targets(new)


def test_mrconv_rewrite_applies_to_mrconv4d_only():
    assert _mobilevig_mrconv(nn.Conv2d(4, 8, 1)) is None
    assert _mobilevig_mrconv(nn.Sequential(nn.Conv2d(4, 8, 1))) is None


@pytest.mark.parametrize("size", [64, 128])
def test_mobilevig_rewritten_for_xnnpack_gives_the_same_logits(size):
    """64 px: the SVGA stage is 2x2 (no neighbour); 128 px: 4x4 (one hop in each direction)."""
    torch.manual_seed(0)
    from edgevit_deploy.models import create_model

    model = create_model("mobilevig_ti", img_size=size, num_classes=10).eval()
    new, counts = apply_formulations(model, "xnnpack")
    assert counts.get("mobilevig_mrconv_without_zeros_like") == 2  # one per Grapher of mobilevig_ti
    graphers = [m for m in new.modules() if type(m).__name__ == "Grapher"]
    assert graphers and all(isinstance(g.graph_conv, MaxRelativeConvNoZeros) for g in graphers)
    _, onnx_counts = apply_formulations(model, "onnx")
    assert "mobilevig_mrconv_without_zeros_like" not in onnx_counts  # only LiteRT needs it
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y_new, y_ref = new(x), model(x)
    assert torch.allclose(y_new, y_ref, rtol=1e-5, atol=1e-4), (y_new - y_ref).abs().max()


@pytest.mark.slow
def test_mobilevig_ti_tflite_int8_converts_runs_and_meets_its_floor(tmp_path):
    import edgevit_deploy as e
    from edgevit_deploy.converters.base import ExportOptions, QuantMode

    r = e.export("mobilevig_ti", "tflite", tmp_path, options=ExportOptions(quantize=QuantMode.INT8),
                 img_size=64, calib_size=8)
    a = r.artifacts[0]
    assert a.error is None, a.error
    assert a.formulation.get("mobilevig_mrconv_without_zeros_like") == 2
    assert a.path is not None and Path(a.path).exists() and a.precision == "int8"
    assert a.parity.executed, a.parity.reason
    assert a.parity.executor.startswith("LiteRT")
    assert a.parity.passed, (a.parity.sqnr_db, a.parity.failures)


@pytest.mark.slow
def test_fcaformer_l1_tflite_int8_converts_runs_and_meets_its_floor(tmp_path):
    import edgevit_deploy as e
    from edgevit_deploy.converters.base import ExportOptions, QuantMode

    r = e.export("fcaformer_l1", "tflite", tmp_path, options=ExportOptions(quantize=QuantMode.INT8),
                 img_size=64, calib_size=8, random_init="conditioned")  # its own init is degenerate
    a = r.artifacts[0]
    assert a.error is None, a.error
    assert a.parity.executed and a.parity.executor.startswith("LiteRT"), a.parity.reason
    assert a.parity.passed, (a.parity.sqnr_db, a.parity.failures)
