"""Each zoo rewrite is proven equal to the module it replaces, and applied where it should be only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.zoo_fixtures import small_model, small_size
from torch import nn

from edgevit_deploy.formulations import apply_formulations, rewrites_for
from edgevit_deploy.formulations.zoo import (
    BroadcastLinearSelfAttention,
    PatchFold,
    PatchUnfold,
    SplitFusionMobileVitBlock,
    _fold,
    _linear_attention,
    _unfold,
)

SHAPES = [  # (C, H, W, kernel): square, rectangular, sizes not divisible by the kernel
    (3, 16, 16, 4), (5, 12, 20, (2, 4)), (2, 14, 9, 4), (1, 7, 7, 7),
]


@pytest.mark.parametrize("c, h, w, k", SHAPES)
def test_patch_unfold_equals_unfold(c, h, w, k):
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(1))
    ref = nn.Unfold(k, stride=k)
    new = _unfold(ref)
    assert isinstance(new, PatchUnfold)
    assert torch.equal(new(x), ref(x))


@pytest.mark.parametrize("c, h, w, k", SHAPES)
def test_patch_fold_equals_fold(c, h, w, k):
    kh, kw = (k, k) if isinstance(k, int) else k
    blocks = (h // kh) * (w // kw)
    x = torch.randn(2, c * kh * kw, blocks, generator=torch.Generator().manual_seed(2))
    ref = nn.Fold((h, w), k, stride=k)
    new = _fold(ref)
    assert isinstance(new, PatchFold)
    assert torch.equal(new(x), ref(x))


@pytest.mark.parametrize("module", [
    nn.Unfold(3, stride=1), nn.Unfold(4, stride=4, padding=1), nn.Unfold(2, stride=2, dilation=2),
    nn.Fold((8, 8), 3, stride=2), nn.Conv2d(3, 3, 2, stride=2),
])
def test_overlapping_or_padded_patches_are_left_alone(module):
    assert _unfold(module) is None and _fold(module) is None


def test_zoo_rewrites_are_registered_for_every_target():
    for formulation in ("onnx", "xnnpack", "coreml"):
        names = {r.name for r in rewrites_for(formulation)}
        assert {"unfold_patches_to_reshape", "fold_patches_to_reshape"} <= names


def test_tnt_rewritten_for_xnnpack_gives_the_same_logits():
    name = "tnt_s_patch16_224"
    model = small_model(name)
    new, counts = apply_formulations(model, "xnnpack")
    assert counts.get("unfold_patches_to_reshape") == 1
    assert not any(isinstance(m, nn.Unfold) for m in new.modules())
    s = small_size(name)
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(new(x), model(x), rtol=0, atol=1e-6)


class _FoldHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fold = nn.Fold((16, 16), 4, stride=4)

    def forward(self, x):
        return self.fold(x) * 2.0


def test_fold_rewrite_makes_col2im_exportable_to_onnx_opset17(tmp_path):
    import onnxruntime as ort

    model = _FoldHead().eval()
    x = torch.randn(1, 48, 16)
    with pytest.raises(Exception, match="col2im"):
        torch.onnx.export(model, (x,), str(tmp_path / "raw.onnx"), dynamo=False, opset_version=17)
    rewritten, counts = apply_formulations(model, "onnx")
    assert counts == {"fold_patches_to_reshape": 1}
    path = tmp_path / "fold.onnx"
    torch.onnx.export(rewritten, (x,), str(path), dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(y, model(x).numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("patches", [1, 4, 9])
def test_broadcast_linear_attention_equals_timm(patches):
    from timm.models.mobilevit import LinearSelfAttention

    torch.manual_seed(0)
    ref = LinearSelfAttention(32).eval()
    new = _linear_attention(ref)
    assert isinstance(new, BroadcastLinearSelfAttention)
    x = torch.randn(2, 32, 4, patches)
    with torch.no_grad():
        assert torch.allclose(new(x), ref(x), rtol=0, atol=1e-6)
    assert _linear_attention(nn.Linear(2, 2)) is None


def test_mobilevitv2_rewritten_for_xnnpack_gives_the_same_logits():
    name = "mobilevitv2_050"
    model = small_model(name)
    new, counts = apply_formulations(model, "xnnpack")
    assert counts.get("linear_attention_broadcast", 0) > 0
    _, onnx_counts = apply_formulations(model, "onnx")
    assert "linear_attention_broadcast" not in onnx_counts  # only LiteRT needs it
    x = torch.randn(2, 3, small_size(name), small_size(name), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(new(x), model(x), rtol=0, atol=1e-5)


def _randomise_batchnorms(model: nn.Module, seed: int) -> None:
    """Random running statistics and affine terms (the init's 0 / 1 would make a BatchNorm fold trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.5 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))


@pytest.mark.parametrize("size", [64, 96])  # 96: the last stage's 3x3 map is interpolated to the 2x2 patches
def test_mobilevit_fusion_split_gives_the_same_logits_without_a_concatenation(size):
    from edgevit_deploy.models import create_model

    torch.manual_seed(0)
    model = create_model("mobilevit_xs", img_size=size).eval()
    _randomise_batchnorms(model, size)
    new, counts = apply_formulations(model, "executorch")
    assert counts["mobilevit_fusion_split"] == 3
    assert sum(isinstance(m, SplitFusionMobileVitBlock) for m in new.modules()) == 3
    for other in ("onnx", "xnnpack", "coreml"):
        assert "mobilevit_fusion_split" not in apply_formulations(model, other)[1]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(new(x), ref, rtol=0, atol=1e-5 * float(ref.abs().max())), (new(x) - ref).abs().max()
    graph = torch.export.export(new, (x[:1],)).graph
    assert not [n for n in graph.nodes if n.target == torch.ops.aten.cat.default]
