"""Every op the reference executor implements is exercised by a per-op test case against torch."""
from __future__ import annotations

from helpers import mil_cases_conv, mil_cases_elementwise, mil_cases_quant, mil_cases_tensor
from helpers.mil_fixtures import build_program

from edgevit_deploy.verify.mil import supported_ops

# exercised by model-level tests instead: the classifier of --image-input exports (test_mil_edgevit),
# iOS18 compressed weights from coremltools.optimize (test_mil_quant.test_compressed_weights_...)
COVERED_BY_MODEL_TESTS = {"classify", "constexpr_blockwise_shift_scale"}


def test_every_supported_op_has_a_case():
    seen: set[str] = set()
    for module, target in ((mil_cases_elementwise, "iOS16"), (mil_cases_conv, "iOS16"),
                           (mil_cases_tensor, "iOS18"), (mil_cases_quant, "iOS17")):
        prog, _ = build_program(module.CASES, target)
        seen |= {op.op_type for op in prog.functions["main"].operations}
    missing = set(supported_ops()) - seen - COVERED_BY_MODEL_TESTS
    assert not missing, f"ops without a per-op test: {sorted(missing)}"
