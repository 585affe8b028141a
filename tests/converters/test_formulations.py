"""Each export-friendly rewrite equals the module it replaces."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgevit_deploy.formulations import DepthwiseUpsampleConv, StridedSample, apply_formulations, rewrites_for
from edgevit_deploy.formulations.rewrites import TokenGridSample, TokenSampledSparseAttn
from edgevit_deploy.models import create_model
from edgevit_deploy.models.edgevit import GlobalSparseAttn


@pytest.mark.parametrize("r", [2, 4])
def test_avgpool_kernel1_equals_strided_slice(r):
    x = torch.randn(2, 5, 16, 24)
    torch.testing.assert_close(StridedSample(r)(x), nn.AvgPool2d(1, r)(x), rtol=0, atol=0)


@pytest.mark.parametrize(("r", "c", "bias"), [(2, 6, True), (4, 3, True), (4, 5, False)])
def test_depthwise_convtranspose_equals_upsample_times_kernel(r, c, bias):
    conv = nn.ConvTranspose2d(c, c, r, stride=r, groups=c, bias=bias)
    x = torch.randn(2, c, 5, 7)
    with torch.no_grad():  # one product (and the bias) per output pixel, as in the transposed conv
        torch.testing.assert_close(DepthwiseUpsampleConv(conv)(x), conv(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("r", "h", "w"), [(2, 8, 6), (4, 8, 16)])
def test_token_grid_sample_is_the_strided_pooling_of_the_map(r, h, w):
    x = torch.randn(2, h * w, 5)
    pooled = nn.AvgPool2d(1, r)(x.transpose(1, 2).reshape(2, 5, h, w)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(TokenGridSample(r)(x, h, w), pooled, rtol=0, atol=0)


@pytest.mark.parametrize(("sr", "heads"), [(2, 4), (4, 1)])
def test_token_sampled_attention_equals_the_authors_and_keeps_its_names(sr, heads):
    torch.manual_seed(1)
    block = nn.ModuleList([GlobalSparseAttn(32, heads, sr_ratio=sr).eval()])
    rewritten, counts = apply_formulations(block, "xnnpack")
    assert counts["edgevit_sampler_on_tokens"] == 1 and isinstance(rewritten[0], TokenSampledSparseAttn)
    assert isinstance(rewritten[0].sampler, TokenGridSample) and isinstance(block[0].sampler, nn.AvgPool2d)
    # the same module paths and state dict: --exclude / --analyze names are the authors'
    assert rewritten.state_dict().keys() == block.state_dict().keys()
    H, W = 8, 16
    x = torch.randn(2, H * W, 32)
    # the xnnpack formulation also scales the queries (tested below); against the authors' module in that order
    assert rewritten[0].scale_queries and not block[0].scale_queries
    reference = copy.deepcopy(block[0])
    reference.scale_queries = True
    with torch.no_grad():  # data movement only: the same ops on the same values
        torch.testing.assert_close(rewritten[0](x, H, W), reference(x, H, W), rtol=0, atol=0)
    plain = nn.ModuleList([GlobalSparseAttn(32, 2, sr_ratio=1)])  # sr 1: plain attention, nothing to sample
    assert "edgevit_sampler_on_tokens" not in apply_formulations(plain, "xnnpack")[1]


@pytest.mark.parametrize(("sr", "heads"), [(1, 2), (2, 4)])
def test_queries_scaled_before_the_product_equal_the_authors_logits(sr, heads):
    """LiteRT int8: ``(q * scale) k^T`` instead of ``(q k^T) * scale`` (no int8 MUL on the logits, hence no int8
    BATCH_MATMUL outside XNNPACK). The same sums up to float rounding; a switch on the module, names unchanged."""
    torch.manual_seed(2)
    block = nn.ModuleList([GlobalSparseAttn(32, heads, sr_ratio=sr).eval()])
    rewritten, counts = apply_formulations(block, "xnnpack")
    assert counts["edgevit_queries_scaled"] == 1 and rewritten[0].scale_queries and not block[0].scale_queries
    assert rewritten.state_dict().keys() == block.state_dict().keys()
    q, k = torch.randn(2, heads, 16, 32 // heads), torch.randn(2, heads, 4, 32 // heads)
    authors, scaled = block[0].logits(q, k), rewritten[0].logits(q, k)
    torch.testing.assert_close(scaled, authors, rtol=1e-6, atol=1e-6)
    H, W = 8, 8
    x = torch.randn(2, H * W, 32)
    with torch.no_grad():
        torch.testing.assert_close(rewritten[0](x, H, W), block[0](x, H, W), rtol=1e-5, atol=1e-6)
    for other in ("onnx", "executorch", "coreml"):  # their int8 graphs keep the authors' order
        assert "edgevit_queries_scaled" not in apply_formulations(block, other)[1]


def test_in_place_rewrites_compose_and_a_replacement_ends_the_turn(monkeypatch):
    from edgevit_deploy.formulations import registry

    seen: list[str] = []

    def flip(m):
        if isinstance(m, nn.Linear) and not getattr(m, "flipped", False):
            m.flipped = True
            seen.append("flip")
            return m
        return None

    def wrap(m):
        if isinstance(m, nn.Linear):
            seen.append("wrap")
            return nn.Sequential(m)
        return None

    def never(m):
        seen.append("never")
        return nn.Identity() if isinstance(m, nn.Linear) else None

    rws = [registry.RegisteredRewrite(n, f, frozenset({"test"})) for n, f in (("flip", flip), ("wrap", wrap), ("never", never))]
    monkeypatch.setattr(registry, "_REWRITES", rws)
    monkeypatch.setattr(registry, "_LOADED", True)
    model = nn.ModuleList([nn.Linear(2, 2)])
    rewritten, counts = apply_formulations(model, "test")
    assert counts == {"flip": 1, "wrap": 1}  # the in-place flip, then the wrap; "never" is not offered the Linear
    assert isinstance(rewritten[0], nn.Sequential) and rewritten[0][0].flipped and not hasattr(model[0], "flipped")
    assert seen == ["flip", "wrap"]


@pytest.mark.parametrize("formulation", ["onnx", "xnnpack", "coreml"])
def test_edgevit_formulations_are_exact(formulation):
    m = create_model("edgevit_xxs", img_size=64)
    rewritten, counts = apply_formulations(m, formulation)
    assert rewritten is not m and isinstance(m.blocks1[0].SelfAttn.attn.LocalProp, nn.ConvTranspose2d)
    if formulation == "xnnpack":  # the 5 sampled attentions: sampler on the tokens, LocalProp a broadcast product
        assert counts["depthwise_convtranspose_to_broadcast"] == 5 and counts["edgevit_sampler_on_tokens"] == 5
        assert counts["edgevit_queries_scaled"] == 7  # every attention, the 5 sampled ones and the 2 plain ones
        assert "avgpool_k1_to_slice" not in counts  # no pooling left in the graph to rewrite
    if formulation == "onnx":  # the sampler on the tokens; onnxruntime keeps the authors' ConvTranspose
        assert counts["edgevit_sampler_on_tokens"] == 5 and "depthwise_convtranspose_to_broadcast" not in counts
    if formulation == "coreml":
        assert "edgevit_sampler_on_tokens" not in counts
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), m(x), rtol=1e-5, atol=1e-5)


def test_drop_path_in_training_mode_leaves_no_bernoulli():
    m = create_model("edgevit_xxs", img_size=64, drop_path_rate=0.1)
    rewritten, counts = apply_formulations(m, "onnx")
    assert counts.get("drop_path_off", 0) > 0
    rewritten.train()  # even if someone leaves it in training mode, no random op remains
    graph = torch.export.export(rewritten.eval(), (torch.randn(1, 3, 64, 64),)).graph
    assert not any("bernoulli" in str(n.target) for n in graph.nodes)


def test_every_formulation_has_rewrites_registered():
    for f in ("onnx", "xnnpack", "coreml"):
        assert rewrites_for(f)


def test_a_new_targets_formulation_gets_the_rewrites_for_every_target():
    """The formulation names live in the target table only: a rewrite meant for every target (drop-path off)
    applies to a formulation the rewrite modules have never heard of, target-specific ones do not."""
    names = {r.name for r in rewrites_for("a-future-target")}
    assert "drop_path_off" in names and "fold_patches_to_reshape" in names
    assert "depthwise_convtranspose_to_broadcast" not in names and "twins_window_attention_rank5" not in names
    m = create_model("edgevit_xxs", img_size=64, drop_path_rate=0.1)
    _, counts = apply_formulations(m, "a-future-target")
    assert counts.get("drop_path_off", 0) > 0 and "depthwise_convtranspose_to_broadcast" not in counts
