"""Per-op tests of the reference ML Program executor against torch: element-wise ops and activations
(broadcasting, integer division semantics, fp16 rounding)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers.mil_cases_elementwise import CASES
from helpers.mil_fixtures import assert_case, case_ids, fp16_round, run_cases


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("mil_elementwise"))


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_op_matches_torch(results, case):
    assert_case(results, case)


def test_fp16_outputs_are_rounded_not_fp32(results):
    got = results["fp16_add"][0][0]
    exact = np.array([1.0, 1000.0, 3e-4], np.float32) + np.array([1e-3, 0.3, 1e-7], np.float32)
    assert not np.array_equal(got, exact), "fp16 program computed in plain fp32"
    np.testing.assert_array_equal(got, fp16_round(fp16_round(np.array([1.0, 1000.0, 3e-4])) + fp16_round(np.array([1e-3, 0.3, 1e-7]))))
    assert np.isinf(results["fp16_mul_overflow"][0][0][0]), "90000 overflows fp16 and must become inf"
