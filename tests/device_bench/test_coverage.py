"""`edgevit-bench coverage`: offline delegate-coverage predictions (LiteRT XNNPACK on this host, ONNX Runtime's
mobile usability checker for NNAPI / Core ML) on real small models, the structural reading of a delegated
LiteRT graph, bad input, and the support matrix's coverage_xnnpack column."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.profile_models import TFLITE_NODES, export_tiny_models

from edgevit_deploy.device_bench.coverage import (
    CoverageInputError,
    _delegated_nodes,
    matrix_xnnpack_cell,
    ort_mobile_coverage,
    predict_for,
    xnnpack_coverage,
)
from edgevit_deploy.matrix import render_markdown


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return export_tiny_models(tmp_path_factory.mktemp("coverage-models"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", "coverage", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})


def _op(index: int, name: str, inputs: list[int], outputs: list[int]) -> dict:
    return {"index": index, "op_name": name, "inputs": inputs, "outputs": outputs}


def test_delegate_nodes_are_walked_back_to_the_nodes_they_replaced():
    # 0 -> [A] -> 1 -> [B] -> 2 -> [C: custom, not delegated] -> 3 -> [D] -> 4 ; weights 10, 11 (constants)
    ops = [_op(0, "CONV_2D", [0, 10], [1]), _op(1, "ADD", [1, 11], [2]), _op(2, "CUSTOM", [2], [3]),
           _op(3, "MEAN", [3], [4]), _op(4, "DELEGATE", [0, 10, 11], [2]), _op(5, "DELEGATE", [3], [4])]
    taken, partitions = _delegated_nodes(ops)
    assert taken == {0, 1, 3} and partitions == 2
    assert _delegated_nodes(ops[:4]) == (set(), 0)  # no delegate: nothing taken


def test_xnnpack_prediction_on_a_real_tflite(models):
    pred = xnnpack_coverage(models["tflite"])
    assert (pred.delegated, pred.total, pred.partitions) == (TFLITE_NODES, TFLITE_NODES, 1)
    assert pred.source == "predicted" and pred.label == f"full ({TFLITE_NODES}/{TFLITE_NODES}), predicted"
    assert pred.fallback_ops == {} and "XNNPACK" in pred.tool
    assert matrix_xnnpack_cell(models["tflite"]) == f"full ({TFLITE_NODES}/{TFLITE_NODES})"


def test_ort_mobile_checker_predictions_on_a_real_onnx(models):
    import onnx

    nodes = len(onnx.load(str(models["onnx"])).graph.node)
    preds = ort_mobile_coverage(models["onnx"])
    assert [p.delegate for p in preds] == ["NNAPI", "CoreML (NeuralNetwork)", "CoreML (MLProgram)"]
    for p in preds:
        assert p.error is None and p.source == "predicted" and p.label.endswith(", predicted")
        assert p.total == nodes and 0 <= p.delegated <= p.total
        assert sum(p.fallback_ops.values()) == p.total - p.delegated  # every node left out is named by op type
        assert (p.partitions >= 1) == (p.delegated > 0)
        for op in p.fallback_ops:
            assert any(op in r for r in p.reasons), (op, p.reasons)  # and the checker's reason is kept


def test_cli_json_on_artifacts_and_bad_input(models, tmp_path):
    out = _cli(str(models["tflite"]), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["predicted"] is True
    (tflite,) = data["artifacts"]["tiny.tflite"]
    assert tflite["delegated"] == tflite["total"] == TFLITE_NODES and tflite["source"] == "predicted"
    table = _cli(str(models["onnx"]), cwd=tmp_path)
    assert table.returncode == 0 and "PREDICTED delegate coverage: tiny.onnx" in table.stdout
    assert "NNAPI" in table.stdout and "predictions, made offline" in table.stdout
    assert table.stderr == ""  # the runtimes' native chatter goes to the debug log, not the terminal
    (tmp_path / "notes.txt").write_text("x")
    for bad in (str(tmp_path / "notes.txt"), str(tmp_path), str(tmp_path / "gone.tflite"), "no_such_model_xyz"):
        res = _cli(bad, cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, bad
        assert "Traceback" not in res.stderr


def test_predict_for_exports_a_model_name_on_demand(tmp_path):
    with pytest.raises(CoverageInputError):
        predict_for(str(tmp_path / "missing.onnx"))
    results = predict_for("edgevit_xxs", ("onnx",), img_size=64)
    (name,) = results
    assert name == "edgevit_xxs (onnx, fp32, 64px)"
    assert len(results[name]) == 3 and all(p.total > 50 for p in results[name])


def test_matrix_cell_and_column(tmp_path):
    garbage = tmp_path / "broken.tflite"
    garbage.write_bytes(b"not a flatbuffer")
    assert matrix_xnnpack_cell(garbage).startswith("not predicted (")

    class Cfg:
        family = "EdgeViT"

    cells = [
        {"model": "m", "target": "tflite", "precision": "fp32", "img_size": 64, "status": "passed",
         "max_abs": 1e-6, "coverage_xnnpack": "full (7/7)"},
        {"model": "m", "target": "tflite", "precision": "int8", "img_size": 64, "status": "passed",
         "sqnr_db": 30.0, "coverage_xnnpack": "partial (5/7, 2 partitions)"},
    ]
    payload = {"cells": cells, "generated_at": "now", "environment": {"python": "3"}, "command": "x"}
    md = render_markdown(payload, lambda name: Cfg())
    assert "## LiteRT XNNPACK coverage (predicted)" in md
    assert "| m | full (7/7) | partial (5/7, 2 partitions) |" in md
    plain = render_markdown({**payload, "cells": [{k: v for k, v in c.items() if k != "coverage_xnnpack"}
                                                   for c in cells]}, lambda name: Cfg())
    assert "XNNPACK coverage" not in plain
