"""What the tests expect of every registered model, cell by cell: the table the zoo export tests derive their
cases from (as optimum's ``tests/exporters/exporters_utils.py`` lists each architecture's expected exports).

The committed ``docs/support_matrix.json`` is a measurement, not the source of the test cases: a regenerated
matrix that marks a cell failed must fail ``tests/matrix/test_zoo_expectations.py`` loudly, not drop that cell's test
quietly. When a cell really changes, change its row here (with the reason) in the same commit as the matrix.

A cell is (model, target, variant); variant is a precision (``fp32``) or a quantization mode (``int8``), the
matrix's ``precision`` field. Every target is a full column (ONNX, TFLite, Core ML and ExecuTorch): every model,
fp32 and int8, expected to pass unless its row names the cell in ``fails`` (or ``not_run``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATRIX_JSON = ROOT / "docs" / "support_matrix.json"

FULL_TARGETS = ("onnx", "tflite", "coreml", "executorch")
VARIANTS = ("fp32", "int8")


class Expect(str, Enum):
    """A cell's expected status, spelled as the matrix spells it."""

    PASSED = "passed"
    PARITY_FAILED = "parity-failed"
    NOT_RUN = "not-run"


@dataclass(frozen=True)
class ModelExpectation:
    """One model's row. ``fails`` and ``not_run`` map ``"target/variant"`` to the reason."""

    random_init: str = "default"
    fails: Mapping[str, str] = field(default_factory=dict)
    not_run: Mapping[str, str] = field(default_factory=dict)

    def cells(self) -> dict[tuple[str, str], Expect]:
        """(target, variant) -> expected status, for every cell the row covers."""
        keys = [(t, v) for t in FULL_TARGETS for v in VARIANTS]
        out = {}
        for target, variant in keys:
            key = f"{target}/{variant}"
            out[target, variant] = (Expect.PARITY_FAILED if key in self.fails
                                    else Expect.NOT_RUN if key in self.not_run else Expect.PASSED)
        return out


#: random init gives degenerate logits (std below the validator's floor on the parity batch): the cells use
#: ``random_init="conditioned"`` (well-conditioned random weights, same architecture)
DEGENERATE = "conditioned"
#: int8 at random-init weights, measured below the acceptance policy's int8 bars (the figures of the run)
INT8_BELOW_BARS = "int8 error above the acceptance policy's bars at random-init weights"
INT8_COLLAPSES = "int8 logits collapse (cosine 0, SQNR 0 dB) at random-init weights"

ZOO_EXPECTATIONS: dict[str, ModelExpectation] = {
    "deit_tiny_patch16_224": ModelExpectation(
        fails={"onnx/int8": f"{INT8_BELOW_BARS} (cosine 0.91 < 0.95, SQNR 7.5 < 10 dB)"}),
    "edgevit_s": ModelExpectation(),
    "edgevit_xs": ModelExpectation(),
    "edgevit_xxs": ModelExpectation(),
    "efficientformer_l1": ModelExpectation(),
    "efficientformer_l3": ModelExpectation(),
    "efficientformer_l7": ModelExpectation(),
    "efficientformerv2_s0": ModelExpectation(),
    "efficientformerv2_s1": ModelExpectation(),
    "efficientformerv2_s2": ModelExpectation(),
    "efficientmod_s": ModelExpectation(),
    "efficientmod_xs": ModelExpectation(),
    "efficientmod_xxs": ModelExpectation(),
    "efficientnet_b0": ModelExpectation(fails={
        "tflite/int8": INT8_COLLAPSES, "coreml/int8": INT8_COLLAPSES, "executorch/int8": INT8_COLLAPSES}),
    "efficientnet_lite0": ModelExpectation(),
    "fcaformer_l1": ModelExpectation(random_init=DEGENERATE),
    "fcaformer_l2": ModelExpectation(random_init=DEGENERATE),
    "levit_128s": ModelExpectation(fails={
        "tflite/int8": f"{INT8_BELOW_BARS} (cosine 0.64 < 0.9, SQNR 4.0 < 8 dB)",
        "coreml/int8": f"{INT8_BELOW_BARS} (cosine 0.51 < 0.95, SQNR 1.3 < 10 dB)",
        "executorch/int8": f"{INT8_BELOW_BARS} (cosine 0.65 < 0.9, SQNR 4.0 < 8 dB)",
    }),
    "levit_384": ModelExpectation(fails={
        "tflite/int8": f"{INT8_BELOW_BARS} (cosine 0.80 < 0.9, SQNR 4.2 < 8 dB)",
        "coreml/int8": f"{INT8_BELOW_BARS} (cosine 0.79 < 0.9, SQNR 4.2 < 8 dB)",
        "executorch/int8": f"{INT8_BELOW_BARS} (cosine 0.80 < 0.9, SQNR 4.3 < 8 dB)",
    }),
    "mobilenetv2_100": ModelExpectation(),
    "mobilenetv3_large_075": ModelExpectation(),
    "mobilevig_b": ModelExpectation(),
    "mobilevig_m": ModelExpectation(),
    "mobilevig_s": ModelExpectation(),
    "mobilevig_ti": ModelExpectation(),
    "mobilevit_s": ModelExpectation(),
    "mobilevit_xs": ModelExpectation(fails={"onnx/int8": f"{INT8_BELOW_BARS} (SQNR 9.6 < 10 dB)"}),
    "mobilevit_xxs": ModelExpectation(fails={
        "tflite/int8": f"{INT8_BELOW_BARS} (cosine 0.93 < 0.95, SQNR 9.2 < 10 dB)",
        "coreml/int8": f"{INT8_BELOW_BARS} (cosine 0.93 < 0.95, SQNR 9.3 < 10 dB)",
    }),
    "mobilevitv2_050": ModelExpectation(fails={
        "onnx/int8": f"{INT8_BELOW_BARS} (cosine 0.79 < 0.95, SQNR 4.3 < 10 dB)",
        "coreml/int8": f"{INT8_BELOW_BARS} (cosine 0.78 < 0.95, SQNR 4.0 < 10 dB)",
    }),
    "mobilevitv2_075": ModelExpectation(
        fails={"onnx/int8": f"{INT8_BELOW_BARS} (cosine 0.79 < 0.95, SQNR 3.7 < 10 dB)"}),
    "mobilevitv2_100": ModelExpectation(),
    "nextvit_base": ModelExpectation(random_init=DEGENERATE),
    "nextvit_large": ModelExpectation(random_init=DEGENERATE),
    "nextvit_small": ModelExpectation(fails={
        "tflite/int8": INT8_COLLAPSES, "coreml/int8": INT8_COLLAPSES, "executorch/int8": INT8_COLLAPSES}),
    "pvt_v2_b0": ModelExpectation(),
    "pvt_v2_b1": ModelExpectation(),
    "tnt_s_patch16_224": ModelExpectation(fails={"onnx/int8": f"{INT8_BELOW_BARS} (SQNR 7.5 < 8 dB)"}),
    "twins_svt_small": ModelExpectation(),
    "vcmamba_b": ModelExpectation(),
    "vcmamba_m": ModelExpectation(),
    "vcmamba_s": ModelExpectation(),
}


def expected_cells() -> dict[tuple[str, str, str], Expect]:
    """(model, target, variant) -> expected status, for the whole table."""
    return {(model, t, v): status for model, row in ZOO_EXPECTATIONS.items() for (t, v), status in row.cells().items()}


def expected_to_pass(target: str, variant: str = "fp32") -> list[str]:
    """The models whose ``target`` x ``variant`` cell is expected to pass, sorted."""
    return sorted(m for (m, t, v), status in expected_cells().items()
                  if (t, v) == (target, variant) and status is Expect.PASSED)


def random_init(name: str) -> str:
    """The random init ``name``'s cells use: ``"default"`` or ``"conditioned"``."""
    return ZOO_EXPECTATIONS[name].random_init


def matrix_cells() -> list[dict]:
    """The cells of the committed docs/support_matrix.json (a measurement the table is checked against)."""
    if not MATRIX_JSON.is_file():
        pytest.fail(f"{MATRIX_JSON} is missing: run scripts/support_matrix.py (it is committed with the repo)")
    return json.loads(MATRIX_JSON.read_text())["cells"]
