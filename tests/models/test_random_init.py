"""Well-conditioned random weights (``edgevit_deploy.models.well_conditioned``, ``--random-init conditioned``):
a structure-only parity check for models whose own random init gives degenerate logits."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgevit_deploy
from edgevit_deploy.errors import UnsupportedOptionError
from edgevit_deploy.models import create_model, well_conditioned
from edgevit_deploy.verify.inputs import parity_inputs
from edgevit_deploy.verify.parity import reference_outputs
from edgevit_deploy.verify.validator import DEGENERATE_STD

BIN = Path(sys.executable).parent
SIZE = 64


def _spread(model: nn.Module) -> float:
    """The validator's measure: std of PyTorch's logits on the parity batch."""
    return float(np.std(reference_outputs(model, parity_inputs(model.deploy_cfg)).astype(np.float64)))


@pytest.mark.parametrize("name", ["nextvit_base", "fcaformer_l1"])
def test_well_conditioned_makes_degenerate_logits_non_degenerate(name):
    model = create_model(name, img_size=SIZE)
    assert _spread(model) < DEGENERATE_STD  # the model's own init: degenerate (else this test proves nothing)
    twin = copy.deepcopy(model)
    convs = {n: m.weight.clone() for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    well_conditioned(model, SIZE)
    logits = reference_outputs(model, parity_inputs(model.deploy_cfg))
    assert np.isfinite(logits).all()
    assert _spread(model) > 0.1
    assert not model.training
    # the architecture and the convolutions' random weights are kept
    assert all(torch.equal(m.weight, convs[n]) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    # deterministic: the same random init conditioned again gives the same logits
    well_conditioned(twin, SIZE)
    np.testing.assert_array_equal(reference_outputs(twin, parity_inputs(twin.deploy_cfg)), logits)


def test_well_conditioned_redraws_a_zero_initialised_head():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 5))
    nn.init.zeros_(model[5].weight)
    nn.init.zeros_(model[5].bias)
    well_conditioned(model, 16)
    with torch.no_grad():
        y = model(torch.randn(8, 3, 16, 16))
    assert 0.3 < float(y.std()) < 3.0
    assert not torch.equal(model[1].running_var, torch.ones(8))  # measured statistics, not the identity


def _run(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_cli_random_init_conditioned_passes_onnx_parity_and_default_is_refused(tmp_path):
    common = ("--model", "fcaformer_l1", "--target", "onnx", "--img-size", SIZE)
    r = _run(BIN / "edgevit-export", *common, "--random-init", "conditioned", "--out", tmp_path / "cond")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "cond" / "report.json").read_text())
    parity = report["artifacts"][0]["parity"]
    assert report["random_init"] == "conditioned"
    assert parity["executed"] and parity["passed"], parity
    assert 1e-9 < parity["max_abs"] < 1e-3  # a real comparison, not two vanishing outputs
    # the artifact remembers how it was initialised: edgevit-verify rebuilds the same weights
    artifact = next((tmp_path / "cond").glob("*.onnx"))
    r = _run(BIN / "edgevit-verify", artifact, "--model", "fcaformer_l1")
    assert r.returncode == 0, r.stdout + r.stderr

    r = _run(BIN / "edgevit-export", *common, "--out", tmp_path / "default")
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads((tmp_path / "default" / "report.json").read_text())
    parity = report["artifacts"][0]["parity"]
    assert "random_init" not in report
    assert parity["executed"] and not parity["passed"]
    assert "degenerate" in parity["reason"] and "--random-init conditioned" in parity["reason"]


def test_api_random_init_refuses_trained_weights_and_unknown_modes(tmp_path):
    ck = tmp_path / "w.pth"
    torch.save(create_model("edgevit_xxs", img_size=SIZE).state_dict(), ck)
    with pytest.raises(UnsupportedOptionError, match="trained weights"):
        edgevit_deploy.export("edgevit_xxs", "onnx", tmp_path / "a", checkpoint=ck, img_size=SIZE,
                              random_init="conditioned")
    with pytest.raises(UnsupportedOptionError, match="conditioned"):
        edgevit_deploy.export("edgevit_xxs", "onnx", tmp_path / "b", img_size=SIZE, random_init="kaiming")
    assert not list((tmp_path / "a").glob("*.onnx")) and not list((tmp_path / "b").glob("*.onnx"))
