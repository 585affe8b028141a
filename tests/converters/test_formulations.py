"""Each export-friendly rewrite equals the module it replaces."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edgevit_deploy.formulations import DepthwiseUpsampleConv, StridedSample, apply_formulations, rewrites_for
from edgevit_deploy.models import create_model


@pytest.mark.parametrize("r", [2, 4])
def test_avgpool_kernel1_equals_strided_slice(r):
    x = torch.randn(2, 5, 16, 24)
    torch.testing.assert_close(StridedSample(r)(x), nn.AvgPool2d(1, r)(x), rtol=0, atol=0)


@pytest.mark.parametrize("r,c", [(2, 6), (4, 3)])
def test_depthwise_convtranspose_equals_upsample_times_kernel(r, c):
    conv = nn.ConvTranspose2d(c, c, r, stride=r, groups=c)
    x = torch.randn(2, c, 5, 7)
    torch.testing.assert_close(DepthwiseUpsampleConv(conv)(x), conv(x), rtol=1e-6, atol=1e-6)


def test_rewrites_leave_other_convtransposes_alone():
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, stride=2, groups=4),   # kernel != stride
                          nn.ConvTranspose2d(4, 8, 2, stride=2),             # not depthwise
                          nn.AvgPool2d(2, 2))                                # kernel != 1
    _, counts = apply_formulations(model, "xnnpack")
    assert counts == {}


@pytest.mark.parametrize("formulation", ["onnx", "xnnpack", "coreml"])
def test_edgevit_formulations_are_exact(formulation):
    m = create_model("edgevit_xxs", img_size=64)
    rewritten, counts = apply_formulations(m, formulation)
    assert rewritten is not m and isinstance(m.blocks1[0].SelfAttn.attn.LocalProp, nn.ConvTranspose2d)
    if formulation == "xnnpack":
        assert counts["depthwise_convtranspose_to_upsample"] == 5 and counts["avgpool_k1_to_slice"] == 5
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
    assert "depthwise_convtranspose_to_upsample" not in names and "twins_window_attention_rank5" not in names
    m = create_model("edgevit_xxs", img_size=64, drop_path_rate=0.1)
    _, counts = apply_formulations(m, "a-future-target")
    assert counts.get("drop_path_off", 0) > 0 and "depthwise_convtranspose_to_upsample" not in counts
