"""LiteRT's time by kernel: perf's symbols grouped, the report parsed, and a real sampling run of int8 / fp32 twins."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from edgevit_deploy.device_bench.kernel_profile import (
    KernelGroup,
    KernelProfile,
    KernelProfileError,
    classify,
    parse_report,
    profile_litert,
)

G = KernelGroup

# symbol names as perf reports them for ai-edge-litert 2.3.0 on this host (EdgeViT-XXS int8 / fp32 .tflite)
SYMBOLS = {
    "xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_16x64c4__avx512amx": G.INT8_MATMUL,
    "xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_16x64c4__avx512amx": G.INT8_MATMUL,
    "xnn_qs8_qc8w_dwconv_minmax_fp32_ukernel_25p32c__avx512skx_mul32": G.INT8_MATMUL,
    "xnn_qd8_f32_qc8w_gemm_minmax_ukernel_4x16c8__avx512vnni": G.INT8_MATMUL,
    "xnn_f32_gemm_minmax_ukernel_7x32__avx512f_broadcast": G.FLOAT_MATMUL,
    "xnn_f32_dwconv_minmax_ukernel_9p16c__avx512f": G.FLOAT_MATMUL,
    "xnn_qs8_f32_vcvt_ukernel__avx512skx_u32": G.CONVERT,
    "xnn_f32_qs8_vcvt_ukernel__avx512skx_u128": G.CONVERT,
    "xnn_qs8_vmulc_minmax_fp32_ukernel__avx_mul16_ld64_u16": G.XNNPACK_OTHER,  # an int8 MUL, not a matmul
    "xnn_x32_packw_gemm_gio_ukernel_x32__scalar": G.XNNPACK_OTHER,  # weight packing, not a matmul
    "xnn_f32_vgelu_ukernel__avx512f_rational_12_10_div_u32": G.XNNPACK_OTHER,
    "xnn_x8_transposec_ukernel__32x32_reuse_switch_avx2": G.XNNPACK_OTHER,
    "void (anonymous namespace)::unary_ukernel_quantized<xnnpack::quantized<signed char, void>, "
    "xnnpack::quantized<signed char, void>, (anonymous namespace)::GELUOp<float> >": G.XNNPACK_OTHER,
    "tflite::xnnpack::(anonymous namespace)::SubgraphInvoke": G.XNNPACK_OTHER,
    "pthreadpool_parallelize_4d_tile_2d_dynamic": G.XNNPACK_OTHER,
    "_ZN12_GLOBAL__N_113pack_lh_fx_qdIfa22xnn_f32_qs8_cvt_paramsTnNS_22InitQuantizationParamsIT_E2": G.XNNPACK_OTHER,
    "tflite::reference_ops::BatchMatMul<signed char, int, signed char, signed char>": G.BUILTIN,
    "tflite::ops::builtin::activations::GeluEval": G.BUILTIN,
    "tflite::MultiplyByQuantizedMultiplier": G.BUILTIN,
    "ruy::Kernel8bitAvx512": G.BUILTIN,
    "Eigen::internal::gebp_kernel<float, float, long>::operator()": G.BUILTIN,
    "void tflite::optimized_ops::Transpose<signed char>": G.BUILTIN,
    "__memmove_avx512_unaligned_erms": G.OTHER,
    "_PyEval_EvalFrameDefault": G.OTHER,
}


@pytest.mark.parametrize(("symbol", "group"), list(SYMBOLS.items()))
def test_kernels_fall_into_their_group(symbol, group):
    assert classify(symbol) is group


REPORT = """\
    18.76%  [.] xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_16x64c4__avx512amx                      -      -
    11.40%  [.] tflite::reference_ops::BatchMatMul<signed char, int, signed char, signed char>  -      -
     6.17%  [.] tflite::ops::builtin::activations::GeluEval                                   -      -
     2.51%  [.] xnn_qs8_f32_vcvt_ukernel__avx512skx_u32
     0.16%  [k] handle_softirqs
not a row
"""


def test_the_report_is_parsed_symbol_by_symbol_without_perfs_padding():
    rows = parse_report(REPORT)
    assert rows[0] == (18.76, "xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_16x64c4__avx512amx")
    assert rows[1] == (11.40, "tflite::reference_ops::BatchMatMul<signed char, int, signed char, signed char>")
    assert [r[1] for r in rows[3:]] == ["xnn_qs8_f32_vcvt_ukernel__avx512skx_u32", "handle_softirqs"]
    prof = KernelProfile.from_report(rows, ms_per_run=10.0, runs=5)
    assert sum(prof.groups.values()) == pytest.approx(10.0)  # shares of the sampled time, scaled to the run
    assert prof.groups[G.BUILTIN] == pytest.approx(10.0 * (11.40 + 6.17) / 39.0)
    assert prof.rows[0]["op"] == G.INT8_MATMUL.value and prof.rows[0]["ms"] == pytest.approx(10.0 * 18.76 / 39.0)
    text = "\n".join(prof.lines(2))
    assert "LiteRT built-in kernels" in text and "BatchMatMul" in text and "GeluEval" not in text


def test_missing_perf_or_artifact_is_one_clear_error(monkeypatch, tmp_path):
    with pytest.raises(KernelProfileError, match="no such file"):
        profile_litert(tmp_path / "missing.tflite")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(KernelProfileError, match="perf not found: install linux-perf"):
        profile_litert(tmp_path / "missing.tflite")


def _perf_usable() -> bool:
    perf = shutil.which("perf")
    return perf is not None and subprocess.run([perf, "--version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _perf_usable(), reason="perf is not installed (linux-perf)")
def test_a_real_sampling_run_finds_int8_kernels_in_int8_and_none_in_fp32():
    from helpers.quant_fixtures import float_twin, quantized

    int8_path, _ = quantized("edgevit_xxs", "tflite")
    int8 = profile_litert(int8_path, runs=150)
    fp32 = profile_litert(float_twin("edgevit_xxs", "tflite"), runs=60)
    for prof in (int8, fp32):
        assert prof.ms_per_run > 0 and sum(prof.groups.values()) == pytest.approx(prof.ms_per_run)
        assert {r["op"] for r in prof.rows} <= {g.value for g in KernelGroup}
    assert int8.groups[G.INT8_MATMUL] > 0 and int8.groups[G.CONVERT] > 0
    assert fp32.groups[G.INT8_MATMUL] == 0 and fp32.groups[G.CONVERT] == 0 and fp32.groups[G.FLOAT_MATMUL] > 0
