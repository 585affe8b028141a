"""The ONNX fp32 cells expected to pass (tests/helpers/zoo_expectations.py, which the committed support
matrix must agree with: tests/matrix/test_zoo_expectations.py), re-checked in CI through the real export pipeline.

To fit the CI budget, the models go into one :class:`ModelGroup` (a single ONNX export covers them all;
every member's logits are then checked separately with the one validator): every model whose ONNX fp32
cell is expected to pass at the group's 64 px; rows whose cells use ``--random-init conditioned`` get the
same conditioning. The fixed-224 EfficientFormer L1/L3/L7 and every
TFLite cell are exported one model per test in tests/converters/test_zoo_export_each.py (a TFLite group is no
cheaper: 6 models took 83.6 s grouped vs 88.2 s one by one, and all 34 grouped did not get through
litert-torch's decomposition pass in 12 min).

EdgeViT and EfficientNet-Lite have their own export tests (tests/converters/test_export*.py, the quantization tests).
"""
from __future__ import annotations

import pytest
import torch
from helpers.zoo_expectations import matrix_cells
from helpers.zoo_fixtures import GROUP_SIZE, ModelGroup, member, onnx_members, small_model

from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.models import ModelConfig
from edgevit_deploy.verify.inputs import parity_inputs
from edgevit_deploy.verify.report import Thresholds
from edgevit_deploy.verify.validator import validate_outputs


def _export_group(tmp_path_factory, names: list[str]):
    import edgevit_deploy

    if not names:
        pytest.fail("no model is expected to pass onnx fp32 at the group size (tests/helpers/zoo_expectations.py)")
    torch.manual_seed(0)
    group = ModelGroup({n: member(n) for n in names}).eval()
    group.deploy_cfg = ModelConfig(name="zoo_group", family="test", input_size=(3, GROUP_SIZE, GROUP_SIZE),
                                   num_classes=1000 * len(names), labels=None)
    out = tmp_path_factory.mktemp("zoo_group_onnx")
    result = edgevit_deploy.export(group, "onnx", out, img_size=GROUP_SIZE)
    return names, group, result.artifacts[0]


@pytest.fixture(scope="session")
def zoo_group_onnx(tmp_path_factory):
    """One ONNX export of the group, made once per session through edgevit_deploy.export."""
    return _export_group(tmp_path_factory, onnx_members())


def test_group_export_passes_parity_for_every_member(zoo_group_onnx):
    names, group, art = zoo_group_onnx
    assert art.error is None, art.error
    assert art.parity.executed and art.parity.passed, art.parity.failures
    # each member on its own: slice the concatenated logits
    x = parity_inputs(group.deploy_cfg, num_random=2, natural=False)
    with torch.no_grad():
        ref = group(torch.from_numpy(x)).numpy()
    got = get_spec("onnx").load_host_runtime().load(art.path).run(x)
    thresholds = Thresholds.for_precision("fp32")
    failed = {}
    for i, name in enumerate(names):
        cols = slice(1000 * i, 1000 * (i + 1))
        report = validate_outputs(ref[:, cols], got[:, cols], thresholds, executor=art.parity.executor)
        if not report.passed:
            failed[name] = report.failures
    assert not failed


def test_matrix_cells_of_tnt_were_exported_with_the_unfold_rewrite():
    """TNT's nn.Unfold is rewritten for every target (formulations_zoo); the matrix records it."""
    cells = [c for c in matrix_cells() if c["model"] == "tnt_s_patch16_224" and c["precision"] == "fp32"
             and c["status"] in ("passed", "parity-failed")]
    assert cells, "the matrix has no exported fp32 TNT cell"
    for c in cells:
        assert c["formulations"].get("unfold_patches_to_reshape") == 1, c["target"]


def test_degenerate_random_init_is_not_counted_as_a_pass():
    """FcaFormer at random init gives logits ~1e-20: comparing them proves nothing, and the validator says so."""
    m = small_model("fcaformer_l1")
    x = parity_inputs(m.deploy_cfg, num_random=2, natural=False)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    report = validate_outputs(ref, ref.copy(), Thresholds.for_precision("fp32"), executor="self")
    assert not report.passed and "degenerate" in report.reason
