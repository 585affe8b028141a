"""Measured causes of int8 failures in the support matrix (``edgevit_deploy.matrix.failure_cause``): the PT2E
quantizers floor every activation scale, and seeded random weights whose logits are far below that floor
cannot survive the output's quantization. Float models only, at 64 px: seconds."""
from __future__ import annotations

import numpy as np
import pytest

from edgevit_deploy import matrix as sm
from edgevit_deploy.converters.table import TARGETS

PT2E = ("tflite", "coreml", "executorch")


def test_the_pt2e_quantizers_report_their_scale_floor_and_onnx_has_none():
    floors = {t: spec.load_quantizer().activation_floor() for t, spec in TARGETS.items()}
    assert floors["onnx"] is None
    for t in PT2E:  # read from the quantizers' own observer configs (2**-12 in executorch 1.5 / litert-torch)
        assert floors[t] is not None and 1e-6 < floors[t] < 1e-2


def test_output_quantization_ceiling_follows_the_steps_the_range_gets():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 1000))
    floor = 2.0**-12
    assert sm.output_quantization_ceiling(logits, floor) > 35  # unit logits: 256 levels, ~40 dB
    assert sm.output_quantization_ceiling(logits * 1e-6, floor) == 0.0  # all under half a step: all zeros
    mid = sm.output_quantization_ceiling(logits * 3 * floor / 4, floor)  # a few steps each side
    assert 0.0 < mid < 15


@pytest.mark.parametrize("target", PT2E)
def test_a_random_init_b0_failure_is_explained_by_the_floor(target):
    cell = sm.Cell("efficientnet_b0", target, "int8", 64, status="parity-failed")
    cause = sm.failure_cause(cell)
    assert cause is not None and "2.4e-04" in cause and "0.0 dB SQNR" in cause


@pytest.mark.parametrize("cell", [
    sm.Cell("efficientnet_b0", "onnx", "int8", 64, status="parity-failed"),  # no floor in onnxruntime
    sm.Cell("edgevit_xxs", "tflite", "int8", 64, status="parity-failed"),  # logits of unit scale: another cause
    sm.Cell("efficientnet_b0", "tflite", "int8", 64, status="passed"),
    sm.Cell("efficientnet_b0", "tflite", "fp32", 64, status="parity-failed"),
])
def test_no_cause_is_claimed_where_the_floor_does_not_explain_it(cell):
    assert sm.failure_cause(cell) is None


def test_the_cause_is_rendered_with_the_reason():
    reason = "cosine similarity 0.000000 < 0.9; SQNR 0.0 dB < 8.0 dB"
    cells = [{"model": "efficientnet_b0", "target": "tflite", "precision": "int8", "img_size": 64,
              "status": "parity-failed", "reason": reason, "cause": "the float logits never exceed 2.9e-05"},
             {"model": "nextvit_small", "target": "tflite", "precision": "int8", "img_size": 64,
              "status": "parity-failed", "reason": reason, "cause": None}]
    payload = {"generated_at": "2026-01-01T00:00:00+00:00", "commands": ["x"], "environment": {},
               "statuses": list(sm.STATUSES), "cells": cells}
    from edgevit_deploy.models import get_model_config

    text = sm.render_markdown(payload, get_model_config)
    assert f"1. {reason}. Cause: the float logits never exceed 2.9e-05" in text
    assert f"2. {reason}\n" in text + "\n"
