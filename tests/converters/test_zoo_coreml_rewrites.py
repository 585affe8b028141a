"""The rewrites that make TNT and Twins convert to Core ML: equal to the modules they replace, free of what
coremltools refuses (rank-6 tensors, ``aten.alias``), and the whole models pass parity through the reference
ML Program executor."""
from __future__ import annotations

import pytest
import torch
from helpers.zoo_fixtures import small_model, small_size
from torch import nn

from edgevit_deploy.formulations import apply_formulations, rewrites_for
from edgevit_deploy.formulations.zoo import (
    PatchFold,
    PatchUnfold,
    Rank5LocallyGroupedAttn,
    _fold,
    _twins_window_attention,
    _unfold,
)

TNT = "tnt_s_patch16_224"
TWINS = "twins_svt_small"


def _exported_graph(module: nn.Module, *args) -> torch.fx.Graph:
    return torch.export.export(module.eval(), args).run_decompositions({}).graph


def _max_rank(graph: torch.fx.Graph) -> int:
    ranks = [0]
    for node in graph.nodes:
        vals = node.meta.get("val")
        for v in vals if isinstance(vals, (list, tuple)) else [vals]:
            if isinstance(v, torch.Tensor):
                ranks.append(v.dim())
    return max(ranks)


def _has_alias(graph: torch.fx.Graph) -> bool:
    return any(node.op == "call_function" and "alias" in str(node.target) for node in graph.nodes)


# ------------------------------------------------------------------------------ Twins window attention
TWINS_CASES = [  # (dim, heads, ws, H, W): divisible, padded on both sides, padded on one, one window
    (64, 2, 7, 14, 14), (64, 4, 4, 6, 10), (32, 1, 2, 5, 8), (48, 3, 8, 8, 8),
]


def _twins_attn(dim: int, heads: int, ws: int, fused: bool) -> nn.Module:
    from timm.models.twins import LocallyGroupedAttn

    torch.manual_seed(0)
    attn = LocallyGroupedAttn(dim, num_heads=heads, ws=ws).eval()
    attn.fused_attn = fused
    return attn


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("dim, heads, ws, h, w", TWINS_CASES)
def test_rank5_window_attention_equals_timm(dim, heads, ws, h, w, fused):
    ref = _twins_attn(dim, heads, ws, fused)
    new = _twins_window_attention(ref)
    assert isinstance(new, Rank5LocallyGroupedAttn)
    x = torch.randn(2, h * w, dim, generator=torch.Generator().manual_seed(h * 100 + w))
    with torch.no_grad():
        got, want = new(x, (h, w)), ref(x, (h, w))
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-6), (got - want).abs().max()


def test_rank5_window_attention_is_rank5_where_timm_is_rank6():
    ref = _twins_attn(64, 4, 4, fused=True)
    x = torch.randn(1, 6 * 10, 64)

    class Call(nn.Module):
        def __init__(self, attn: nn.Module):
            super().__init__()
            self.attn = attn

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.attn(t, (6, 10))

    assert _max_rank(_exported_graph(Call(ref), x)) == 6  # what Core ML refuses
    assert _max_rank(_exported_graph(Call(_twins_window_attention(ref)), x)) <= 5


def test_twins_rewrite_applies_to_timm_attention_only_and_for_coreml_only():
    assert _twins_window_attention(nn.Linear(4, 4)) is None
    assert "twins_window_attention_rank5" in {r.name for r in rewrites_for("coreml")}
    for formulation in ("onnx", "xnnpack"):  # those targets convert timm's own module
        assert "twins_window_attention_rank5" not in {r.name for r in rewrites_for(formulation)}


# -------------------------------------------------------------------------------- patch (un)folding
@pytest.mark.parametrize("h, w, k", [(64, 64, 4), (16, 12, (4, 2)), (14, 9, 4)])
def test_patch_unfold_exports_without_alias_or_rank6(h, w, k):
    x = torch.randn(2, 3, h, w)
    graph = _exported_graph(_unfold(nn.Unfold(k, stride=k)), x)
    assert not _has_alias(graph)
    assert _max_rank(graph) <= 4


@pytest.mark.parametrize("h, w, k", [(16, 16, 4), (14, 9, 4)])
def test_patch_fold_exports_with_rank4_at_most(h, w, k):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(2, 3 * kh * kw, (h // kh) * (w // kw))
    graph = _exported_graph(_fold(nn.Fold((h, w), k, stride=k)), x)
    assert not _has_alias(graph)
    assert _max_rank(graph) <= 4


def test_patch_rewrites_still_equal_torch_on_a_batch_of_one():
    """The batch is merged with the channels inside the rewrites: B = 1 (what is exported) and B = 3."""
    for b in (1, 3):
        x = torch.randn(b, 5, 12, 20)
        assert torch.equal(PatchUnfold((2, 4))(x), nn.Unfold((2, 4), stride=(2, 4))(x))
        cols = torch.randn(b, 5 * 8, 30)
        assert torch.equal(PatchFold((12, 20), (2, 4))(cols), nn.Fold((12, 20), (2, 4), stride=(2, 4))(cols))


# ---------------------------------------------------------------------------------- whole models
@pytest.mark.parametrize("name, rewrite, count", [
    (TNT, "unfold_patches_to_reshape", 1), (TWINS, "twins_window_attention_rank5", 9),
])
def test_models_rewritten_for_coreml_give_the_same_logits(name, rewrite, count):
    model = small_model(name)
    new, counts = apply_formulations(model, "coreml")
    assert counts.get(rewrite) == count
    s = small_size(name)
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(new(x), model(x), rtol=0, atol=1e-5)


class _CoremlExports:
    """fp32 Core ML export + reference-executor parity of a zoo model, made at most once per session."""

    def __init__(self, factory: pytest.TempPathFactory):
        self.factory = factory
        self.cache: dict[str, object] = {}

    def __getitem__(self, name: str):
        if name not in self.cache:
            import edgevit_deploy
            from edgevit_deploy.converters.base import ExportOptions, Precision

            out = self.factory.mktemp(f"coreml_{name}")
            res = edgevit_deploy.export(small_model(name), "coreml", out,
                                        options=ExportOptions(precision=Precision.FP32),
                                        coreml_executor="reference")
            self.cache[name] = res.artifacts[0]
        return self.cache[name]


@pytest.fixture(scope="session")
def zoo_coreml_exports(tmp_path_factory):
    return _CoremlExports(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("name, rewrite", [(TNT, "unfold_patches_to_reshape"),
                                           (TWINS, "twins_window_attention_rank5")])
def test_model_converts_to_coreml_and_passes_reference_parity(zoo_coreml_exports, name, rewrite):
    art = zoo_coreml_exports[name]
    assert art.error is None, art.error
    assert art.formulation.get(rewrite, 0) > 0
    assert art.parity.executor == "coreml-reference (fp32)"
    assert art.parity.executed and art.parity.passed, art.parity.failures
