"""The ExecuTorch formulation's rewrites equal the modules they replace (LayerNorm as matrix products, EdgeViT's
attention as 3-D bmm, its depthwise transposed conv as a broadcast product), and lowered to XNNPACK they leave
nothing of theirs outside the delegate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgevit_deploy.converters.executorch import non_delegated_ops
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.formulations import apply_formulations, rewrites_for
from edgevit_deploy.formulations.rewrites import (
    BmmGlobalSparseAttn,
    BroadcastDepthwiseConvTranspose,
    MatmulLayerNorm,
)
from edgevit_deploy.models import create_model
from edgevit_deploy.models.edgevit import GlobalSparseAttn


@pytest.mark.parametrize(("c", "eps"), [(64, 1e-5), (48, 1e-6), (7, 1e-3)])
def test_matmul_layer_norm_equals_layer_norm(c, eps):
    torch.manual_seed(0)
    norm = nn.LayerNorm(c, eps=eps)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, c, 37).transpose(1, 2) * 3 + 1  # non-contiguous, off-centre, as in EdgeViT's patch embed
    torch.testing.assert_close(MatmulLayerNorm(norm)(x), norm(x), rtol=1e-5, atol=1e-5)


def test_matmul_layer_norm_without_affine_and_rewrite_scope():
    norm = nn.LayerNorm(16, elementwise_affine=False)
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(MatmulLayerNorm(norm)(x), norm(x), rtol=1e-5, atol=1e-5)
    # only plain last-axis LayerNorms, and only for the executorch formulation
    from timm.layers import LayerNorm2d

    model = nn.Sequential(nn.LayerNorm([4, 4]), LayerNorm2d(4), nn.LayerNorm(4))  # LayerNorm2d permutes NCHW
    _, counts = apply_formulations(model, "executorch")
    assert counts == {"layer_norm_as_matmul": 1}
    for other in ("onnx", "xnnpack", "coreml"):
        mine = {"layer_norm_as_matmul", "edgevit_attention_bmm", "depthwise_convtranspose_to_broadcast"}
        assert not mine & {r.name for r in rewrites_for(other)}


@pytest.mark.parametrize(("r", "c", "bias"), [(2, 6, True), (4, 3, True), (4, 5, False)])
def test_broadcast_depthwise_convtranspose_is_exact(r, c, bias):
    conv = nn.ConvTranspose2d(c, c, r, stride=r, groups=c, bias=bias)
    x = torch.randn(2, c, 5, 7)
    with torch.no_grad():  # one product (and the bias) per output pixel, as in the transposed conv
        torch.testing.assert_close(BroadcastDepthwiseConvTranspose(conv)(x), conv(x), rtol=0, atol=1e-6)
    others = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, stride=2, groups=4), nn.ConvTranspose2d(4, 8, 2, stride=2))
    assert apply_formulations(others, "executorch")[1] == {}


@pytest.mark.parametrize(("sr", "heads"), [(1, 2), (2, 4), (4, 1)])
def test_bmm_attention_equals_the_authors(sr, heads):
    torch.manual_seed(1)
    attn = GlobalSparseAttn(32, heads, sr_ratio=sr).eval()
    H = W = 8
    x = torch.randn(2, H * W, 32)
    with torch.no_grad():
        torch.testing.assert_close(BmmGlobalSparseAttn(attn)(x, H, W), attn(x, H, W), rtol=1e-5, atol=1e-5)


def test_edgevit_executorch_formulation_is_exact():
    m = create_model("edgevit_xxs", img_size=64)
    rewritten, counts = apply_formulations(m, get_spec("executorch").formulation)
    # 23 LayerNorms (4 patch embeds, 2 per attention block x 7, 5 inside the sampled attentions), 7 attentions
    assert counts["layer_norm_as_matmul"] == 23 and counts["edgevit_attention_bmm"] == 7
    assert counts["depthwise_convtranspose_to_broadcast"] == 5  # the sampled attentions' LocalProp
    assert isinstance(rewritten.blocks1[0].SelfAttn.attn, BmmGlobalSparseAttn)
    assert isinstance(rewritten.blocks1[0].SelfAttn.attn.attn.norm, MatmulLayerNorm)  # reached through the wrapper
    assert isinstance(m.blocks1[0].SelfAttn.attn, GlobalSparseAttn)  # the original is untouched
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), m(x), rtol=1e-5, atol=1e-5)


def test_rewritten_attention_block_is_fully_delegated():
    """One sampled attention block (sr 2) with its LayerNorms: before, native_layer_norm / expand_copy /
    select_copy run outside XNNPACK; after, nothing."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgevit_deploy.models.edgevit import SelfAttn

    torch.manual_seed(2)
    block = SelfAttn(32, 2, sr_ratio=2).eval()
    x = torch.randn(1, 32, 8, 8)

    def outside(module: nn.Module) -> dict[str, int]:
        program = torch.export.export(module.eval(), (x,))
        return non_delegated_ops(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]))

    before = outside(block)
    assert {"aten.native_layer_norm.default", "aten.select_copy.int", "aten.expand_copy.default"} <= set(before)
    rewritten, counts = apply_formulations(block, "executorch")
    assert counts["depthwise_convtranspose_to_broadcast"] == 1
    assert outside(rewritten) == {}
