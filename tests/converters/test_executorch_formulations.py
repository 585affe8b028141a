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
    DepthwiseUpsampleConv,
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
        mine = {"layer_norm_as_matmul", "edgevit_attention_bmm"}
        assert not mine & {r.name for r in rewrites_for(other)}
    # the broadcast product of the depthwise transposed conv serves both XNNPACK targets
    assert {f for f in ("onnx", "xnnpack", "coreml", "executorch")
            if "depthwise_convtranspose_to_broadcast" in {r.name for r in rewrites_for(f)}} == {"xnnpack", "executorch"}


def test_only_kernel_equals_stride_depthwise_convtransposes_become_broadcast_products():
    # the product's exactness: tests/converters/test_formulations.py (the rewrite serves both XNNPACK targets)
    others = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, stride=2, groups=4), nn.ConvTranspose2d(4, 8, 2, stride=2))
    assert apply_formulations(others, "executorch")[1] == {}
    mine = nn.Sequential(nn.ConvTranspose2d(4, 4, 2, stride=2, groups=4))
    assert isinstance(apply_formulations(mine, "executorch")[0][0], DepthwiseUpsampleConv)


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


# ------------------------------------------------------------------ VCMamba: one constant shared by two nodes
def test_separate_delta_bias_equals_the_authors_mixer():
    from edgevit_deploy.formulations.zoo import SeparateDeltaBiasMamba2D
    from edgevit_deploy.models.vcmamba import PlainMamba2D

    torch.manual_seed(3)
    mixer = PlainMamba2D(16, d_state=4, chunk_size=5).eval()
    with torch.no_grad():
        mixer.dt_proj.bias.normal_()  # far from the init: a bias added once, or twice over, shows
    rewritten = SeparateDeltaBiasMamba2D(mixer)
    assert rewritten.delta_bias is not mixer.dt_proj.bias and rewritten.inner is mixer
    assert set(rewritten.state_dict()) == {f"inner.{k}" for k in mixer.state_dict()}  # the copy is no weight
    x = torch.randn(2, 16, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), mixer(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(rewritten.delta_bias, mixer.dt_proj.bias, rtol=0, atol=0)


def test_delta_bias_option_keeps_the_copy_equal_and_the_state_dict():
    from edgevit_deploy.models.vcmamba import PlainMamba2D

    torch.manual_seed(4)
    shared = PlainMamba2D(16, d_state=4).eval()
    separate = PlainMamba2D(16, d_state=4, delta_bias="separate").eval()
    assert shared.delta_bias is None and separate.delta_bias is not None
    assert set(separate.state_dict()) == set(shared.state_dict())
    with torch.no_grad():
        shared.dt_proj.bias.normal_()
    separate.load_state_dict(shared.state_dict(), strict=True)  # the post-hook refreshes the copy
    assert separate.delta_bias is not separate.dt_proj.bias
    torch.testing.assert_close(separate.delta_bias, shared.dt_proj.bias, rtol=0, atol=0)
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(separate(x), shared(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="delta_bias"):
        PlainMamba2D(16, delta_bias="twice")  # type: ignore[arg-type]


def test_vcmamba_executorch_formulation_is_exact_and_scoped():
    from edgevit_deploy.formulations.zoo import SeparateDeltaBiasMamba2D

    m = create_model("vcmamba_s", img_size=64)
    rewritten, counts = apply_formulations(m, get_spec("executorch").formulation)
    assert counts["vcmamba_separate_delta_bias"] == 4  # the last stage's 4 Mamba layers
    assert isinstance(rewritten.network[-1][-1].mamba, SeparateDeltaBiasMamba2D)
    assert isinstance(rewritten.network[-1][-1].mamba.inner.norm, MatmulLayerNorm)  # reached through the wrapper
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), m(x), rtol=1e-5, atol=1e-5)
    for other in ("onnx", "xnnpack", "coreml"):
        assert "vcmamba_separate_delta_bias" not in {r.name for r in rewrites_for(other)}
    built_separate = create_model("vcmamba_s", img_size=64, delta_bias="separate")
    assert "vcmamba_separate_delta_bias" not in apply_formulations(built_separate, "executorch")[1]


@pytest.mark.slow
def test_vcmamba_s_pte_loads_from_file_and_passes_parity(tmp_path):
    """The export's parity check loads the .pte from its file in a child process (the target's isolated runs):
    a SIGSEGV there is a failed check naming the signal, not the end of pytest. Without the rewrite it crashed."""
    import edgevit_deploy

    assert get_spec("executorch").isolated_runs
    result = edgevit_deploy.export("vcmamba_s", "executorch", tmp_path, img_size=64)
    (art,) = result.artifacts
    assert art.error is None and art.path.is_file()
    assert art.formulation["vcmamba_separate_delta_bias"] == 4
    assert art.parity.executed, art.parity.reason
    assert art.parity.passed, (art.parity.reason, art.parity.failures)
    assert art.parity.max_abs is not None and art.parity.max_abs < 1e-4


_SHARED_BIAS_PROGRAM = """
import sys
import torch
from torch import nn
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
from executorch.runtime import Runtime


class LinearPlusBias(nn.Module):
    def __init__(self, separate: bool):
        super().__init__()
        self.lin = nn.Linear(4, 8)
        self.extra = nn.Parameter(self.lin.bias.detach().clone()) if separate else None

    def forward(self, x):
        return self.lin(x) + (self.lin.bias if self.extra is None else self.extra)


separate, path = sys.argv[1] == "separate", sys.argv[2]
torch.manual_seed(0)
m = LinearPlusBias(separate).eval()
x = torch.randn(2, 4)
program = to_edge_transform_and_lower(torch.export.export(m, (x,)), partitioner=[XnnpackPartitioner()])
with open(path, "wb") as f:
    f.write(program.to_executorch().buffer)
out = Runtime.get().load_program(path).load_method("forward").execute([x])[0]
torch.testing.assert_close(out, m(x), rtol=0, atol=1e-5)
"""


@pytest.mark.parametrize("bias", ["shared", "separate"])
def test_a_constant_shared_by_two_xnnpack_nodes_crashes_executorch_1_5(tmp_path, bias):
    """``linear(x) + linear.bias`` lowered to XNNPACK, saved, loaded from its file and run, in a child process:
    executorch 1.5.1 dies with SIGSEGV (why ``vcmamba_separate_delta_bias`` exists); with a copy of the bias it
    runs. When an upgrade stops the crash, this test fails: the rewrite may then be dropped."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "program.py"
    script.write_text(_SHARED_BIAS_PROGRAM)
    proc = subprocess.run(
        [sys.executable, str(script), bias, str(tmp_path / "m.pte")], capture_output=True, text=True, timeout=600
    )
    if bias == "separate":
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:
        assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stderr[-2000:])
