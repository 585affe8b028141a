"""Every TFLite fp32 cell expected to pass (tests/helpers/zoo_expectations.py, which the committed support
matrix must agree with), and the ONNX cells the 64 px group of tests/converters/test_zoo_export.py cannot hold
(EfficientFormer L1/L3/L7 are fixed at 224), and representatives of the ExecuTorch column, exported again in
CI through ``edgevit_deploy.export`` one model per test and held to the one validator's fp32 thresholds.

Same weights as the matrix (seeded random init; ``--random-init conditioned`` for the rows marked † there)
and the same input size (the ``size`` column; tests/matrix/test_zoo_expectations.py checks both). One model per
test so that pytest-xdist spreads them over the workers (``SPREAD_ACROSS_WORKERS``, see conftest.py): the
TFLite column is ~22 min of worker time here (15-82 s per model).
EdgeViT and EfficientNet-Lite are exported by their own tests (tests/converters/test_export.py, the quantization tests).
"""
from __future__ import annotations

import pytest
from helpers.zoo_expectations import expected_to_pass
from helpers.zoo_fixtures import TESTED_ELSEWHERE, member, onnx_members, small_size

from edgevit_deploy.models import get_model_config

SPREAD_ACROSS_WORKERS = True


def _ours(name: str) -> bool:
    return get_model_config(name).family not in TESTED_ELSEWHERE


TFLITE = [n for n in expected_to_pass("tflite") if _ours(n)]
ONNX_OUTSIDE_GROUP = [n for n in expected_to_pass("onnx") if _ours(n) and n not in onnx_members()]
#: ExecuTorch representatives (the whole column is the support matrix's; ~20-50 s per model here): each stands
#: for a fix of the ExecuTorch path - MobileViT-v2's channel split + last-axis softmax (the channels-last softmax
#: pass; it failed parity without it), PVT-v2's timm attention and LayerNorm (fully delegated only with the
#: formulation), LeViT's strided subsample and attention-bias gather (left to the portable kernels, by name),
#: MobileViG's graph convolutions (a CNN-GNN hybrid)
EXECUTORCH = ["levit_128s", "mobilevig_ti", "mobilevitv2_050", "pvt_v2_b0"]
CASES = (
    [("tflite", n) for n in TFLITE]
    + [("onnx", n) for n in ONNX_OUTSIDE_GROUP]
    + [("executorch", n) for n in EXECUTORCH if n in expected_to_pass("executorch")]
)
_EXECUTORS = {"tflite": "LiteRT", "onnx": "onnxruntime", "executorch": "ExecuTorch"}


def test_every_passed_cell_is_covered():
    """The expectation table still feeds this file: an emptied table must not pass quietly."""
    assert len(TFLITE) >= 30, TFLITE  # the table expects 37 TFLite fp32 passes beside EdgeViT/Lite0
    assert {"efficientformer_l1", "efficientformer_l3", "efficientformer_l7"} <= set(ONNX_OUTSIDE_GROUP)
    assert len([c for c in CASES if c[0] == "executorch"]) == len(EXECUTORCH)  # each representative passes


@pytest.mark.slow
@pytest.mark.parametrize("target,name", CASES, ids=[f"{t}-{n}" for t, n in CASES])
def test_export_passes_parity(target, name, tmp_path):
    import edgevit_deploy

    size = small_size(name)
    result = edgevit_deploy.export(member(name), target, tmp_path, img_size=size)
    art = result.artifacts[0]
    assert art.error is None, art.error
    assert art.parity.executed, art.parity.reason
    assert art.parity.passed, (art.parity.reason, art.parity.failures)
    assert art.parity.executor.startswith(_EXECUTORS[target]), art.parity.executor
