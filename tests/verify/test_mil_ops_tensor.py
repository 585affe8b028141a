"""Per-op tests against torch: layout ops (reshape, transpose, slicing with masks and negative strides,
concat / split / stack, pad modes, gather), reductions, matmul / linear / einsum and resampling."""
from __future__ import annotations

import pytest
from helpers.mil_cases_tensor import CASES
from helpers.mil_fixtures import assert_case, case_ids, run_cases


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("mil_tensor"), target="iOS18")


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_op_matches_torch(results, case):
    assert_case(results, case)
