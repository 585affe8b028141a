"""The edge passes the XNNPACK lowering runs (``converters/_executorch_passes.py``) and the executorch
formulation's timm rewrites: each op they respell was left to the portable kernels before, none is after, and
the lowered program still computes what PyTorch does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgevit_deploy.converters.base import EtBackend
from edgevit_deploy.converters.executorch import lower_to_pte, non_delegated_ops
from edgevit_deploy.formulations import apply_formulations, rewrites_for


class DataMovement(nn.Module):
    """Every op the passes respell, around delegated linears: a rank-4 matmul (expand), ``unbind`` (split +
    squeeze), a select, a split, ``unsqueeze`` on a leading axis, token and spatial means."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, 16)
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, 2, 8).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)).softmax(-1)  # rank-4 matmuls
        y = self.proj((attn @ v).transpose(1, 2).reshape(B, N, 16))
        first = y[:, 0]  # select
        a, b = y.split([6, 10], dim=-1)
        grid = a.transpose(1, 2).reshape(B, 6, 2, N // 2).unsqueeze(1)  # unsqueeze on a leading axis
        spatial = grid.squeeze(1).mean((2, 3))  # rank-4 mean without keepdim
        return torch.cat([first, b.mean(1), spatial], dim=-1)  # token mean of a rank-3 tensor


def _outside_without_passes(module: nn.Module, x: torch.Tensor) -> dict[str, int]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(module, (x,))
    return non_delegated_ops(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]))


def _run(path, x: torch.Tensor) -> torch.Tensor:
    from executorch.runtime import Runtime

    return Runtime.get().load_program(path).load_method("forward").execute([x])[0]


def test_passes_delegate_the_data_movement_ops_and_keep_the_result(tmp_path):
    torch.manual_seed(0)
    model = DataMovement().eval()
    x = torch.randn(1, 8, 16)
    before = _outside_without_passes(model, x)
    respelled = {
        "aten.expand_copy.default",
        "aten.squeeze_copy.dims",
        "aten.select_copy.int",
        "aten.split_with_sizes_copy.default",
        "aten.mean.dim",
    }
    assert respelled <= set(before), before
    path = tmp_path / "moves.pte"
    outside = lower_to_pte(torch.export.export(model, (x,)), path, EtBackend.XNNPACK, {})
    assert outside == {}
    torch.testing.assert_close(_run(path, x), model(x), rtol=1e-5, atol=1e-5)


def test_portable_programs_are_not_rewritten(tmp_path):
    torch.manual_seed(0)
    model = DataMovement().eval()
    x = torch.randn(1, 8, 16)
    path = tmp_path / "portable.pte"
    assert lower_to_pte(torch.export.export(model, (x,)), path, EtBackend.PORTABLE, {}) == {}
    torch.testing.assert_close(_run(path, x), model(x), rtol=1e-5, atol=1e-5)


def test_timm_layer_norm_and_attention_are_rewritten_exactly():
    from timm.layers import LayerNorm, LayerNorm2d
    from timm.layers.attention import Attention

    torch.manual_seed(1)
    model = nn.Sequential(LayerNorm(32), Attention(32, num_heads=4, qkv_bias=True), nn.LayerNorm(32)).eval()
    assert model[1].fused_attn is True
    x = torch.randn(2, 9, 32)
    rewritten, counts = apply_formulations(model, "executorch")
    assert counts["layer_norm_as_matmul"] == 2 and counts["timm_attention_unfused"] == 1
    assert rewritten[1].fused_attn is False and model[1].fused_attn is True  # the user's model is untouched
    torch.testing.assert_close(rewritten(x), model(x), rtol=1e-5, atol=1e-5)
    # a LayerNorm subclass that permutes is not a last-axis LayerNorm; other targets keep SDPA
    _, counts2d = apply_formulations(nn.Sequential(LayerNorm2d(4)), "executorch")
    assert counts2d == {}
    for other in ("onnx", "xnnpack", "coreml"):
        assert "timm_attention_unfused" not in {r.name for r in rewrites_for(other)}


@pytest.mark.parametrize("name", ["deit_tiny_patch16_224"])
def test_a_timm_vit_is_fully_delegated(name, tmp_path):
    """DeiT-Tiny at 64 px: 207 ops outside XNNPACK with the authors' modules and no passes (LayerNorm, SDPA's
    masking, unbind's squeezes, the matmuls' expands, the class token's select); none with the formulation."""
    from edgevit_deploy.models import create_model

    torch.manual_seed(0)
    model = create_model(name, img_size=64).eval()
    formulated, counts = apply_formulations(model, "executorch")
    assert counts["timm_attention_unfused"] == 12 and counts["layer_norm_as_matmul"] == 25
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "vit.pte"
    assert lower_to_pte(torch.export.export(formulated, (x,)), path, EtBackend.XNNPACK, {}) == {}
    torch.testing.assert_close(_run(path, x), model(x), rtol=1e-4, atol=1e-4)


class ConvSoftmax(nn.Module):
    """MobileViT-v2's linear attention in small: a conv, then a softmax over the last axis of its rank-4 output
    (a slice of its channels, as the model's split is after the passes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 9, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[:, 1:] * y[:, :1].softmax(-1) + y.softmax(-1)[:, 1:]


def test_last_axis_softmax_of_a_channels_last_tensor_is_computed_over_the_right_axis(tmp_path):
    """executorch 1.5.1's XNNPACK delegate, without the pass, computes it over the wrong axis (the first
    assertion shows the runtime's error, so the test notices the day a release fixes it); with it, exact."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    model = ConvSoftmax().eval()
    x = torch.randn(1, 3, 4, 5)
    program = torch.export.export(model, (x,))
    raw = tmp_path / "raw.pte"
    raw.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    assert float((_run(raw, x) - model(x)).abs().max()) > 0.1
    path = tmp_path / "fixed.pte"
    lower_to_pte(program, path, EtBackend.XNNPACK, {})
    torch.testing.assert_close(_run(path, x), model(x), rtol=1e-5, atol=1e-5)


class ChannelSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 9, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.conv(x).split([1, 4, 4], dim=1)
        return k * q.sigmoid() + v


def test_a_channel_split_is_left_to_the_portable_kernels_in_a_quantized_program_only(tmp_path):
    """MobileViT-v2 075's int8 program stopped in the XNNPACK runtime (error 0x10) with its channel split as
    delegated slices; float programs take the slices, quantized ones keep the split outside."""
    from edgevit_deploy.quantize.executorch import xnnpack_quantizer
    from edgevit_deploy.quantize.pt2e import calibrate_pt2e

    torch.manual_seed(0)
    model = ChannelSplit().eval()
    x = torch.randn(1, 3, 4, 4)
    assert lower_to_pte(torch.export.export(model, (x,)), tmp_path / "f.pte", EtBackend.XNNPACK, {}) == {}
    quantized = calibrate_pt2e(model, x, xnnpack_quantizer(), torch.randn(4, 3, 4, 4).numpy())
    outside = lower_to_pte(torch.export.export(quantized, (x,)), tmp_path / "q.pte", EtBackend.XNNPACK, {})
    assert outside.get("aten.split_with_sizes_copy.default") == 1, outside
    got, want = _run(tmp_path / "q.pte", x).flatten(), model(x).detach().flatten()
    assert torch.isfinite(got).all() and float(torch.nn.functional.cosine_similarity(got, want, dim=0)) > 0.9
