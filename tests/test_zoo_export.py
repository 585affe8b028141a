"""The support matrix's "passed" ONNX / TFLite fp32 cells, re-checked in CI through the real export pipeline.

To fit the CI budget, one model per family (the cheapest whose ONNX and TFLite fp32 cells both passed in
the committed docs/support_matrix.json) goes into one :class:`ModelGroup`: a single export per target covers
them all, and every member's logits are checked separately with the one validator. The other members of each
family share their building blocks; their own cells are exported by scripts/support_matrix.py. EdgeViT and
EfficientNet-Lite have their own export tests (tests/test_export*.py, the quantization tests).
"""
from __future__ import annotations

import pytest
import torch

from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.models import ModelConfig, get_model_config
from edgevit_deploy.verify.inputs import parity_inputs
from edgevit_deploy.verify.report import Thresholds
from edgevit_deploy.verify.validator import validate_outputs
from zoo_fixtures import ModelGroup, matrix_passed, small_model, small_size

GROUP_SIZE = 64
TESTED_ELSEWHERE = {"edgevit", "efficientnet_lite"}


def representatives() -> list[str]:
    both = set(matrix_passed("onnx")) & set(matrix_passed("tflite"))
    best: dict[str, str] = {}
    for name in sorted(both, key=lambda n: (get_model_config(n).gmacs or 0.0, n)):
        family = get_model_config(name).family
        if family not in TESTED_ELSEWHERE and small_size(name) == GROUP_SIZE:
            best.setdefault(family, name)
    return sorted(best.values())


@pytest.fixture(scope="session")
def zoo_group_export(tmp_path_factory):
    """One ONNX and one TFLite export of the group, made once per session through edgevit_deploy.export."""
    import edgevit_deploy

    names = representatives()
    if not names:
        pytest.fail("no model passed both ONNX and TFLite fp32 in docs/support_matrix.json; rerun the matrix")
    torch.manual_seed(0)
    group = ModelGroup({n: small_model(n) for n in names}).eval()
    group.deploy_cfg = ModelConfig(name="zoo_group", family="test", input_size=(3, GROUP_SIZE, GROUP_SIZE),
                                   num_classes=1000 * len(names), labels=None)
    out = tmp_path_factory.mktemp("zoo_group")
    result = edgevit_deploy.export(group, ["onnx", "tflite"], out, img_size=GROUP_SIZE)
    return names, group, result


def test_every_family_of_the_matrix_is_represented():
    both = set(matrix_passed("onnx")) & set(matrix_passed("tflite"))
    families = {get_model_config(n).family for n in both}
    group = {get_model_config(n).family for n in representatives()}
    expected = {f for f in families if f not in TESTED_ELSEWHERE and f != "efficientformer"}  # 224-only
    assert expected <= group


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_group_export_passes_parity_for_every_member(zoo_group_export, target):
    names, group, result = zoo_group_export
    art = next(a for a in result.artifacts if a.target == target)
    assert art.error is None, art.error
    assert art.parity.executed and art.parity.passed, art.parity.failures
    # each member on its own: slice the concatenated logits
    x = parity_inputs(group.deploy_cfg, num_random=2, natural=False)
    with torch.no_grad():
        ref = group(torch.from_numpy(x)).numpy()
    got = get_spec(target).load_host_runtime().load(art.path).run(x)
    thresholds = Thresholds.for_precision("fp32")
    failed = {}
    for i, name in enumerate(names):
        cols = slice(1000 * i, 1000 * (i + 1))
        report = validate_outputs(ref[:, cols], got[:, cols], thresholds, executor=art.parity.executor)
        if not report.passed:
            failed[name] = report.failures
    assert not failed


def test_xnnpack_formulation_rewrote_the_zoo_modules(zoo_group_export):
    names, _, result = zoo_group_export
    tflite = next(a for a in result.artifacts if a.target == "tflite")
    if "tnt_s_patch16_224" in names:
        assert tflite.formulation.get("unfold_patches_to_reshape") == 1
    assert tflite.formulation.get("drop_path_off", 0) > 0
