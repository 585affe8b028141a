"""Runner-output parsers on real-format fixtures (tests/fixtures/runner_output, each with a .source), and
fuzzed: they never raise and return a failed row on garbage."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit_deploy.device_bench.parsers import litert, ort

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runner_output"
LITERT = sorted(FIXTURES.glob("litert_*.txt"))
ORT = sorted(FIXTURES.glob("ort_*.txt"))


def _number_after(label: str, text: str) -> float:
    """An independent reading of a fixture: the number following ``label`` (last occurrence)."""
    tail = text.rsplit(label, 1)[1]
    return float(re.match(r"\s*([-+0-9.eE]+)", tail).group(1))


def test_every_fixture_names_its_source():
    fixtures = LITERT + ORT
    assert len(LITERT) >= 6 and len(ORT) >= 5
    for path in fixtures:
        source = path.with_suffix(".source")
        assert source.is_file(), f"{path.name} has no .source sidecar"
        line = source.read_text().strip()
        assert line.startswith("SOURCE: ") and ("github.com/" in line or "/" in line.split()[1])


@pytest.mark.parametrize("path", LITERT, ids=lambda p: p.stem)
def test_litert_fixture(path):
    text = path.read_text()
    run = litert.parse(text)
    has_summary = "Inference (avg):" in text or "Average inference timings" in text
    delegate_failed = "Failed to apply" in text or "Benchmarking failed" in text
    zero_nodes = "0 nodes delegated" in text or "explicitly applied" in text
    assert run.ok == (has_summary and not delegate_failed and not zero_nodes), run.reason
    if not run.ok:
        assert run.reason and len(run.reason) > 10
        assert run.latency.mean is None
        if delegate_failed:
            assert "delegate" in run.reason
        return
    if "Inference (avg):" in text:
        assert run.latency.mean == pytest.approx(_number_after("Inference (avg):", text) / 1000)
        assert run.init_ms == pytest.approx(_number_after("Init:", text) / 1000)
        assert run.first_ms == pytest.approx(_number_after("First inference:", text) / 1000)
    stat_lines = [ln for ln in text.splitlines() if "count=" in ln and "first=" in ln and "Timings" not in ln]
    if len(stat_lines) >= 2:
        regular = stat_lines[-1]
        assert run.latency.count == int(_number_after("count=", regular))
        assert run.warmup_count == int(_number_after("count=", stat_lines[0]))
        assert run.latency.std == pytest.approx(_number_after("std=", regular) / 1000)
        assert run.latency.min == pytest.approx(_number_after("min=", regular) / 1000)
    for label in ("Peak memory footprint (MB): init=", "Memory footprint delta from the start of the tool (MB): init="):
        if label in text:
            assert run.peak_memory_mb == pytest.approx(_number_after("overall=", text))
    if "model file size" in text:
        assert run.model_size_mb == pytest.approx(_number_after("model file size (MB):", text))


def test_litert_op_profiling_totals_are_not_the_run_stats():
    text = (FIXTURES / "litert_readme_op_profiling.txt").read_text()
    run = litert.parse(text)
    assert run.ok and run.variant.startswith("average-inference-timings")
    assert run.latency.count is None  # "Timings (microseconds): count=50" and "Memory (bytes): count=0" are tables


def test_litert_percentiles_and_periodic_peak_memory():
    text = ("INFO: count=5 first=100 curr=90 min=80 max=120 avg=98 std=7 p5=81 median=95 p95=118\n"
            "INFO: count=20 first=50 curr=40 min=30 max=70 avg=45.5 std=3 p5=31 median=44 p95=66\n"
            "INFO: Inference timings in us: Init: 1000, First inference: 100, Warmup (avg): 98, Inference (avg): 45.5\n"
            "INFO: Memory footprint delta from the start of the tool (MB): init=1.5 overall=9.25\n"
            "INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.5\n")
    run = litert.parse(text)
    assert run.ok
    assert run.latency.median == pytest.approx(0.044) and run.latency.p95 == pytest.approx(0.066)
    assert run.peak_memory_mb == pytest.approx(12.5)  # the periodic monitor beats the delta
    assert run.latency.count == 20 and run.warmup_count == 5


@pytest.mark.parametrize("path", ORT, ids=lambda p: p.stem)
def test_ort_fixture(path):
    text = path.read_text()
    run = ort.parse(text)
    assert run.ok == ("time cost" in text and "ms" in text), run.reason
    if not run.ok:
        assert "Exception during initialization" in run.reason
        return
    label = next(lab for lab in ("Average inference time cost total:", "Average inference time cost:",
                                 "Average time cost:") if lab in text)
    assert run.latency.mean == pytest.approx(_number_after(label, text))
    if "Session creation time cost:" in text:
        assert run.init_ms == pytest.approx(_number_after("Session creation time cost:", text) * 1000)
    if "P50 Latency" in text:
        p50 = _number_after("P50 Latency:" if "P50 Latency:" in text else "P50 Latency is", text)
        assert run.latency.median == pytest.approx(p50 * 1000)
        assert run.latency.min <= run.latency.median <= run.latency.p90 <= run.latency.p99
    if "Peak working set size:" in text:
        assert run.peak_memory_mb == pytest.approx(_number_after("Peak working set size:", text) / 2**20)
    if "Avg CPU usage:" in text:
        assert run.cpu_usage_pct == pytest.approx(float(re.search(r"Avg CPU usage:\s*([\d.]+)", text).group(1)))


def test_ort_result_file_gives_per_run_stats():
    text = (FIXTURES / "ort_cost_total_percentiles.txt").read_text()
    model = "/data/local/tmp/my,model.onnx"
    seconds = [0.010, 0.012, 0.011, 0.030, 0.009]
    new = "\n".join(f"{model},{s * 0.9},{s},271122432,11,{k}" for k, s in enumerate(seconds))
    run = ort.parse(text, result_file=new, model_path=model)
    assert run.ok and run.latencies_ms == pytest.approx([s * 1000 for s in seconds])
    assert run.latency.median == pytest.approx(11.0) and run.latency.min == pytest.approx(9.0)
    old = "\n".join(f"model.onnx,{s},271122432,11,{k}" for k, s in enumerate(seconds))
    assert ort.parse_result_file(old) == pytest.approx([s * 1000 for s in seconds])


def test_ort_failed_execution_provider_is_a_failed_row():
    run = ort.parse("nnapi is not supported in this build. \n")
    assert not run.ok and "execution provider failed" in run.reason


def test_empty_output_says_so():
    for parser in (litert.parse, ort.parse):
        run = parser("")
        assert not run.ok and "printed nothing" in run.reason


_FRAGMENTS = [
    "count=50 first=1 curr=2 min=1 max=3 avg=2 std=1", "Inference timings in us: Init: ", "Inference (avg): nan",
    "Peak memory footprint (MB): init=", "overall=", "Average inference time cost total: ", "P50 Latency: ",
    " s", " ms", "1e309", "-0", "Failed to apply", "INFO: ", "\n", "Session creation time cost:", "Runs:",
    "Replacing 3 out of 0 node(s) with delegate", "Total inference requests: 99999999999999999999999",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=40),
                          st.floats(allow_nan=True, allow_infinity=True).map(str)), max_size=30))
def test_parsers_never_raise_on_garbage(parts):
    text = "".join(parts)
    for parser in (litert.parse, ort.parse):
        run = parser(text)
        assert isinstance(run.ok, bool)
        if run.ok:
            assert run.latency.mean is not None and run.latency.mean > 0
        else:
            assert run.reason


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_parsers_survive_binary_noise_around_real_output(noise):
    real = (FIXTURES / "litert_memory_delta.txt").read_text()
    text = noise.decode("latin-1") + real
    run = litert.parse(text)
    assert isinstance(run.ok, bool) and (run.ok or run.reason)
    assert ort.parse(noise.decode("latin-1") + (FIXTURES / "ort_acl_cpu_usage.txt").read_text()).ok
