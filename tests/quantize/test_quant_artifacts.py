"""Every target's int8 artifact of EdgeViT-XXS (64 px): produced, executed in its runtime, smaller than the
float artifact, within the fidelity floors; the ONNX layer analysis and the --target-sqnr search."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.verify.policy import BARS, Variant
from helpers.quant_fixtures import quantized

TARGETS = ["onnx", "tflite", "coreml"]


@pytest.mark.parametrize("target", TARGETS)
def test_int8_artifact_runs_is_smaller_and_meets_the_floor(target):
    path, report = quantized("edgevit_xxs", target)
    assert Path(path).exists() and report.mode == "int8"
    assert report.parity.executed, report.parity.reason
    assert report.parity.passed, report.parity.failures
    assert report.parity.num_inputs == report.held_out["count"] > 0
    assert report.size_quant_bytes < report.size_float_bytes
    assert report.builtin_calibration and report.calibration["count"] > 0
    meta = get_spec(target).load_converter().read_metadata(Path(path))
    assert meta["edgevit_deploy.precision"] == "int8" and meta["edgevit_deploy.model"] == "edgevit_xxs"
    d = json.loads(json.dumps(report.to_dict()))
    assert d["size"]["ratio"] < 1 and d["builtin_calibration_used"] is True
    rows = dict(report.table_rows())
    assert "SQNR vs fp32 PyTorch" in rows and "built-in default" in rows["calibration"]


def test_tflite_int8_takes_and_returns_float_by_default():
    path, report = quantized("edgevit_xxs", "tflite")
    assert report.quantization["io"] == {"input": "float32", "output": "float32"}
    from edgevit_deploy.quantize.tflite_io import float_io

    assert float_io(Path(path)) is False  # nothing left to rewrite


def test_tflite_int8_edgevit_leaves_xnnpack_only_the_ops_it_has_no_int8_kernel_for(tmp_path):
    """The XNNPACK formulation's transposed conv (a broadcast product, no BROADCAST_TO) and token sampler (a
    stride-1 slice, no STRIDED_SLICE) stay inside the delegate in int8: with LiteRT's built-in BROADCAST_TO they
    cost EdgeViT-XXS 0.89x -> 0.64x of fp32 (benchmarks/quant_speed.py, docs/quantization.md "Speed")."""
    import edgevit_deploy
    from edgevit_deploy.converters.base import ExportOptions, QuantMode
    from edgevit_deploy.device_bench.coverage import xnnpack_coverage

    res = edgevit_deploy.export("edgevit_xxs", "tflite", tmp_path, options=ExportOptions(quantize=QuantMode.INT8),
                                img_size=64, calib_size=4, verify=False)  # the export's formulated model, as shipped
    art = res.artifacts[0]
    assert art.error is None and art.formulation["edgevit_sampler_on_tokens"] == 5, (art.error, art.formulation)
    cov = xnnpack_coverage(art.path)
    assert cov.error is None and cov.delegated > 0
    assert not {"BROADCAST_TO", "STRIDED_SLICE", "TRANSPOSE_CONV"} & set(cov.fallback_ops), cov.fallback_ops
    # the queries scaled before q k^T: no int8 MUL reads the logits, so q k^T stays a float BATCH_MATMUL in XNNPACK
    # (the authors' order made it int8, on LiteRT's reference kernel: 0.58x -> 0.47x fp32)
    assert art.formulation["edgevit_queries_scaled"] == 7 and "BATCH_MATMUL" not in cov.fallback_ops
    # what is left outside: LiteRT's int8 GELU (no XNNPACK int8 form; a lookup table, 6 % of the time), the classifier
    assert set(cov.fallback_ops) <= {"GELU", "FULLY_CONNECTED"}, cov.fallback_ops


def test_onnx_and_tflite_latency_is_measured_in_the_same_run():
    for target in ("onnx", "tflite"):
        _, report = quantized("edgevit_xxs", target)
        lat = report.latency
        assert lat.reason is None and lat.float_ms > 0 and lat.quant_ms > 0 and lat.runs > 0


def test_coreml_int8_is_w8a8():
    import coremltools as ct

    path, _ = quantized("edgevit_xxs", "coreml")
    spec = ct.utils.load_spec(str(path))
    ops = {op.type for f in spec.mlProgram.functions.values() for b in f.block_specializations.values()
           for op in b.operations}
    assert {"quantize", "dequantize", "constexpr_affine_dequantize"} <= ops


def _plain_sqnr() -> float:
    return quantized("edgevit_xxs", "onnx")[1].parity.sqnr_db


def _searched():
    target = round(_plain_sqnr() + 3.0, 1)
    return quantized("edgevit_xxs", "onnx", "int8", (("exclude", ("/head/*",)), ("target_sqnr", target)))


def test_target_sqnr_keeps_layers_in_float_and_improves_sqnr():
    _, plain = quantized("edgevit_xxs", "onnx")
    _, report = _searched()
    search = report.quantization["target_sqnr"]
    assert report.kept_in_float and search["steps"][0]["float_layers"] == 0
    assert search["search_sqnr_db"] > search["steps"][0]["sqnr_db"]
    assert report.parity.sqnr_db > plain.parity.sqnr_db
    assert "/head/Gemm" in report.quantization["kept_in_float_nodes"]  # --exclude is honoured too
    assert "kept in float" in dict(report.table_rows())


#: EdgeViT-XXS >= 30 dB on LiteRT (issue #15): the units the --target-sqnr search keeps in float at the benchmark's
#: budget (docs/quantization.md "EdgeViT-XXS >= 30 dB": patch_embed1, head, patch_embed3, patch_embed4) and
#: patch_embed2, for a margin at the tests' 16 calibration views (30.4 dB here; 30.0 dB without patch_embed2)
XXS_30DB_PLAN = ("patch_embed1", "patch_embed2", "patch_embed3", "patch_embed4", "head")


@pytest.mark.slow
def test_edgevit_xxs_reaches_30_db_on_litert_with_its_patch_embeddings_and_head_in_float():
    _, plain = quantized("edgevit_xxs", "tflite")
    _, report = quantized("edgevit_xxs", "tflite", "int8", (("exclude", XXS_30DB_PLAN),))
    assert sorted(report.kept_in_float) == sorted(XXS_30DB_PLAN)
    assert report.parity.sqnr_db >= 30.0 > plain.parity.sqnr_db, (report.parity.sqnr_db, plain.parity.sqnr_db)
    assert report.size_quant_bytes < 0.45 * report.size_float_bytes  # still int8-sized: the blocks stay int8


def test_analysis_ranks_layers_and_shows_the_hybrid_vit_suspects():
    _, report = _searched()
    a = report.analysis
    layers = a["layers"]
    sqnrs = [r["sqnr_db"] for r in layers]
    assert sqnrs == sorted(sqnrs) and len(layers) > 5
    assert {"layer", "kind", "min", "max", "outlier_ratio", "nodes"} <= set(layers[0])
    kinds = set(a["summary"]["median_sqnr_db_by_kind"])
    assert {"layernorm", "gelu", "conv"} <= kinds
    # attention's q k^T and attn v run in float on onnxruntime (quantize/onnx.py kernel_float_nodes), so the
    # softmax between them is not quantized and has no row
    assert "softmax" not in kinds
    assert a["weights"] and all(w["sqnr_db"] > 0 for w in a["weights"])


def test_floors_are_defined_for_every_mode_of_the_table():
    from edgevit_deploy.converters.table import TARGETS

    modes = {m for s in TARGETS.values() for m in s.quant_modes}
    assert {Variant(str(m)) for m in modes} <= set(BARS)


OTHER_MODES = [(t, str(m)) for t in TARGETS for m in get_spec(t).quant_modes if str(m) != "int8"]


@pytest.mark.slow
@pytest.mark.parametrize("target,mode", OTHER_MODES, ids=[f"{t}-{m}" for t, m in OTHER_MODES])
def test_every_other_mode_runs_is_smaller_and_meets_its_floor(target, mode):
    """int8-dynamic (ONNX, TFLite), w8 and palettize4 / 6 (Core ML): the floors of verify/policy.py were
    set from benchmarks/quant_fidelity.py; here each artifact is made, executed and held to its floor."""
    path, report = quantized("edgevit_xxs", target, mode)
    assert report.mode == mode and Path(path).exists()
    assert report.parity.executed, report.parity.reason
    assert report.parity.passed, (report.parity.sqnr_db, report.parity.failures)
    assert report.size_quant_bytes < report.size_float_bytes
    meta = get_spec(target).load_converter().read_metadata(Path(path))
    assert meta["edgevit_deploy.precision"] == mode
