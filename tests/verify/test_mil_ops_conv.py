"""Per-op tests against torch: conv / conv_transpose / pools / norms (pad types, groups, strides,
dilations, ceil mode, 1-D and 3-D)."""
from __future__ import annotations

import pytest
from helpers.mil_cases_conv import CASES
from helpers.mil_fixtures import assert_case, case_ids, run_cases


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("mil_conv"))


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_op_matches_torch(results, case):
    assert_case(results, case)
