"""THE validator: every check collected, one typed error, and it can fail."""
from __future__ import annotations

import numpy as np
import pytest

from edgevit_deploy.errors import ParityError
from edgevit_deploy.verify.metrics import cosine, sqnr_db, topk_agreement
from edgevit_deploy.verify.report import Thresholds
from edgevit_deploy.verify.validator import validate_outputs

RNG = np.random.default_rng(0)
REF = RNG.standard_normal((6, 1000)).astype(np.float32)


def test_identical_outputs_pass_with_exact_metrics():
    r = validate_outputs(REF, REF.copy(), Thresholds.for_precision("fp32"), executor="x")
    assert r.passed and r.executed and r.max_abs == 0 and r.top1_agreement == 1 and r.top5_agreement == 1
    assert r.sqnr_db == float("inf") and r.cosine == pytest.approx(1.0)


def test_every_failed_check_is_collected_then_one_error():
    cand = REF[::-1].copy()  # other samples' logits: everything is wrong
    with pytest.raises(ParityError) as e:
        validate_outputs(REF, cand, Thresholds.for_precision("fp32"), executor="x", raise_on_failure=True)
    msgs = " ".join(e.value.failures)
    assert len(e.value.failures) == 3
    assert "max abs error" in msgs and "cosine" in msgs and "top-1 agreement" in msgs
    assert e.value.report is not None and not e.value.report.passed


def test_small_noise_passes_fp16_but_not_fp32():
    cand = REF + RNG.normal(0, 2e-3, REF.shape).astype(np.float32)
    assert not validate_outputs(REF, cand, Thresholds.for_precision("fp32"), "x").passed
    assert validate_outputs(REF, cand, Thresholds.for_precision("fp16"), "x").passed


def test_shape_mismatch_and_non_finite():
    r = validate_outputs(REF, REF[:, :10], Thresholds.for_precision("fp32"), "x")
    assert not r.passed and "shape" in r.reason
    bad = REF.copy()
    bad[0, 0] = np.nan
    r = validate_outputs(REF, bad, Thresholds.for_precision("fp32"), "x")
    assert not r.passed and any("non-finite" in f for f in r.failures)


def test_degenerate_reference_is_not_a_pass():
    flat = np.full((3, 10), 1e-20, np.float32)
    r = validate_outputs(flat, flat.copy(), Thresholds.for_precision("fp32"), "x")
    assert not r.passed and "degenerate" in r.reason


def test_metric_definitions():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert cosine(a, a) == pytest.approx(1.0) and cosine(a, -a) == pytest.approx(-1.0)
    assert sqnr_db(a, a * 1.1) == pytest.approx(20.0)  # noise is 10% of signal amplitude
    ref = np.array([[0.0, 1.0, 2.0, 3.0]])
    assert topk_agreement(ref, np.array([[0.0, 1.0, 3.0, 2.0]]), 1) == 0.0
    assert topk_agreement(ref, np.array([[0.0, 1.0, 3.0, 2.0]]), 2) == 1.0
