"""Per-op profiles and delegate coverage: the benchmark_model op-profiling tables and delegation lines, the
onnxruntime profiling trace (real-format fixtures with sources, and fuzzed), the host runner with --profile on a
real model, the stand-in adbd with the stand-in tools, and `show --ops` / the JSON export / the HTML report."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.profile_models import IMG, TFLITE_NODES, export_tiny_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit_deploy.device_bench import profiles
from edgevit_deploy.device_bench.parsers import litert
from edgevit_deploy.device_bench.parsers.ort_profile import parse_trace
from edgevit_deploy.device_bench.report.table import rich_table
from edgevit_deploy.device_bench.runners import RunnerConfig, get_runner
from edgevit_deploy.device_bench.runners.host import HostRunner
from edgevit_deploy.device_bench.store import row_of
from edgevit_deploy.device_bench.testing.fake_runners import tool_fault_file, write_fake_tools
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
from edgevit_deploy.device_bench.transports import open_transport
from edgevit_deploy.device_bench.transports.local import LocalTransport
from edgevit_deploy.device_bench.types import BenchJob

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runner_output"
OP_PROFILING = FIXTURES / "litert_xnnpack_op_profiling.txt"
PARTIAL = FIXTURES / "litert_nnapi_partial_delegation.txt"
TRACE = FIXTURES / "ortprofile_host_cpu.json"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return export_tiny_models(tmp_path_factory.mktemp("profile-models"))


def _rows_of_table(text: str, title: str) -> list[list[str]]:
    """An independent reading of a fixture table: the tab-separated cells of its rows (header skipped)."""
    block = text.split(f"== {title} ==", 1)[1].split("\n\n", 1)[0]
    lines = [ln for ln in block.splitlines()[1:] if ln.strip() and "[node type]" not in ln.lower()]
    return [[c.strip() for c in ln.split("\t") if c.strip()] for ln in lines]


# ------------------------------------------------------------------------------- benchmark_model parser
def test_new_fixtures_name_their_sources():
    for path in (OP_PROFILING, PARTIAL, TRACE):
        line = path.with_suffix(".source").read_text().strip()
        assert line.startswith("SOURCE: ") and "/" in line


def test_benchmark_model_op_profile_is_the_regular_runs_run_order():
    text = OP_PROFILING.read_text()
    run = litert.parse(text)
    assert run.ok, run.reason
    regular = text.split("Operator-wise Profiling Info for Regular Benchmark Runs", 1)[1]
    expected = _rows_of_table(regular, "Run Order")
    assert len(run.op_profile) == len(expected) == 11
    ops = {(r["node"], r["op"]): r for r in run.op_profile}
    for cells in expected:  # type, first, avg, %, cdf%, mem, times, name
        row = ops[(cells[-1], cells[0])]
        assert row["ms"] == pytest.approx(float(cells[2])) and row["pct"] == pytest.approx(float(cells[3][:-1]))
        assert row["count"] == int(cells[6])
    assert [r["ms"] for r in run.op_profile] == sorted((r["ms"] for r in run.op_profile), reverse=True)
    assert run.op_profile[0]["op"] == "TFLite_Detection_PostProcess"  # a node name with commas and spaces
    assert run.op_profile[0]["node"].startswith("[TFLite_Detection_PostProcess, ")
    # the initialization tables (ModifyGraphWithDelegate, AllocateTensors) are not the model's ops
    assert not {"ModifyGraphWithDelegate", "AllocateTensors"} & {r["op"] for r in run.op_profile}
    assert run.latency.count == 67  # "Timings (microseconds): count=67" of the table is not the run's line


def test_benchmark_model_per_type_table_when_there_is_no_run_order():
    text = (FIXTURES / "litert_readme_op_profiling.txt").read_text()
    run = litert.parse(text)
    summary = _rows_of_table(text, "Summary by node type")
    assert [(r["node"], r["op"], r["ms"]) for r in run.op_profile] == [("", c[0], float(c[2])) for c in summary]
    assert [r["count"] for r in run.op_profile] == [int(c[1]) for c in summary]  # times called 0 (old): the count


def test_delegation_line_gives_partial_coverage_and_the_accelerator_wins():
    run = litert.parse(PARTIAL.read_text())
    assert run.ok, run.reason
    assert run.delegate_coverage == {"delegate": "TfLiteNnapiDelegate", "delegated": 5, "total": 64,
                                     "partitions": 5, "source": "measured"}
    assert profiles.coverage_label(run.delegate_coverage) == "partial (5/64, 5 partitions)"
    assert run.measurement_fields()["delegate_coverage"] == run.delegate_coverage
    assert run.op_profile == []  # no op profiling in this run


@pytest.mark.parametrize(("lines", "expected"), [
    (["Replacing 12 out of 12 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions."],
     ("TfLiteXNNPackDelegate", 12, 12, 1)),
    (["Replacing 10 out of 12 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions for subgraph 0.",
      "Replacing 3 out of 3 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions for subgraph 1."],
     ("TfLiteGpuDelegateV2", 13, 15, 3)),
    (["Replacing 31 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions."], None),
])
def test_delegation_lines(lines, expected):
    cov = litert.coverage_from(litert.delegations("\n".join(f"INFO: {ln}" for ln in lines)))
    if expected is None:  # the old line has no total: no coverage rather than a guess
        assert cov == {}
    else:
        assert (cov["delegate"], cov["delegated"], cov["total"], cov["partitions"]) == expected


# ------------------------------------------------------------------------------------ onnxruntime trace
def test_ort_trace_fixture_per_node_and_warmup_left_out():
    text = TRACE.read_text()
    events = json.loads(text)
    runs = sorted(e["ts"] for e in events if e["name"] == "model_run")
    nodes = {e["name"][: -len("_kernel_time")] for e in events if e["cat"] == "Node"}
    prof = parse_trace(text, skip_runs=1, provider="CPUExecutionProvider")
    assert prof.reason is None and prof.runs == len(runs) - 1 == 2
    assert {r["node"] for r in prof.op_profile} == nodes
    last_runs = [e for e in events if e["name"] == "model_run" and e["ts"] > runs[0]]
    for r in prof.op_profile:  # the median of the two kept runs = their mean; independently recomputed
        durs = [e["dur"] for e in events if e["cat"] == "Node" and e["name"] == r["node"] + "_kernel_time"
                and any(m["ts"] <= e["ts"] <= m["ts"] + m["dur"] for m in last_runs)]
        assert r["ms"] == pytest.approx(sum(durs) / len(durs) / 1000)
        assert r["op"] == next(e["args"]["op_name"] for e in events if e["name"] == r["node"] + "_kernel_time")
    assert math.isclose(sum(r["pct"] for r in prof.op_profile), 100.0)
    assert prof.delegate_coverage == {"delegate": "CPUExecutionProvider", "delegated": len(nodes),
                                      "total": len(nodes), "partitions": 1, "source": "measured"}
    # counted in, the first (warm-up) run weighs in: each node's time is the median of its three runs
    with_warmup = parse_trace(text, skip_runs=0)
    assert with_warmup.runs == 3
    for r in with_warmup.op_profile:
        durs = sorted(e["dur"] for e in events if e["cat"] == "Node" and e["name"] == r["node"] + "_kernel_time")
        assert len(durs) == 3 and r["ms"] == pytest.approx(durs[1] / 1000)
    assert parse_trace(text, skip_runs=3).reason == "the onnxruntime profile has 3 runs, all of them warm-up"


def test_ort_trace_coverage_counts_the_ep_partitions():
    events = json.loads(TRACE.read_text())
    moved = {"/5/Flatten_kernel_time"}  # as if the EP left Flatten to the CPU: two partitions around it
    for e in events:
        if e["cat"] == "Node":
            e["args"]["provider"] = "CPUExecutionProvider" if e["name"] in moved else "NnapiExecutionProvider"
    cov = parse_trace(json.dumps({"traceEvents": events}), skip_runs=1).delegate_coverage
    assert cov["delegate"] == "NnapiExecutionProvider" and (cov["delegated"], cov["total"]) == (6, 7)
    assert cov["partitions"] == 2 and cov["fallback_ops"] == {"Flatten": 1}
    assert profiles.coverage_label(cov) == "partial (6/7, 2 partitions)"


@pytest.mark.parametrize("text", ["", "not json", "{}", "[1, 2]", '[{"name": "model_run", "ts": -1}]',
                                  '{"traceEvents": 3}'])
def test_ort_trace_garbage_is_a_reason_not_a_crash(text):
    prof = parse_trace(text, skip_runs=1)
    assert prof.op_profile == [] and prof.reason


# -------------------------------------------------------------------------------------------- fuzzing
_TABLE_FRAGMENTS = [
    "Operator-wise Profiling Info for Regular Benchmark Runs:\n",
    "============================== Run Order ==============================\n",
    "============================== Summary by node type ==============================\n",
    "\t\t\t CONV_2D\t 0.100\t 0.200\t 10.0%\t 10.0%\t 0.000\t 1\t[conv]:0\n",
    "\t\t\t ADD\t 2\t 0.5\t 50.000%\t 60.000%\t 0.000\t 2\n", "nan%", "\t", " ", "1e999", "-3", "\n",
    "Replacing 5 out of 9 node(s) with delegate (X) node, yielding 2 partitions.\n",
    "INFO: Inference timings in us: Init: 10, First inference: 5, Warmup (avg): 5, Inference (avg): 4\n",
]


def _sane(rows):
    assert all(math.isfinite(r["ms"]) and r["ms"] >= 0 and r["count"] >= 1 for r in rows)
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_TABLE_FRAGMENTS), st.text(max_size=30)), max_size=40))
def test_op_profile_parser_never_raises(parts):
    text = "".join(parts)
    _sane(litert.op_profile(text))
    run = litert.parse(text)
    assert run.ok or run.reason
    cov = litert.coverage_from(litert.delegations(text))
    assert not cov or (cov["delegated"] >= 0 and cov["partitions"] >= 0)


_EVENT = st.fixed_dictionaries({
    "cat": st.sampled_from(["Node", "Session", "x"]),
    "name": st.sampled_from(["model_run", "a_kernel_time", "b_kernel_time", "a_fence_before", "z"]),
    "ts": st.one_of(st.integers(-5, 50), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3)),
    "dur": st.one_of(st.integers(-5, 50), st.floats(allow_nan=True), st.none()),
    "args": st.one_of(st.none(), st.fixed_dictionaries({
        "op_name": st.text(max_size=5), "provider": st.sampled_from(["", "CPUExecutionProvider", "X"])})),
})


@settings(max_examples=150, deadline=None)
@given(st.lists(_EVENT, max_size=30), st.integers(0, 3))
def test_trace_parser_never_raises(events, skip):
    prof = parse_trace(json.dumps(events), skip_runs=skip)
    _sane(prof.op_profile)
    assert prof.op_profile or prof.reason or not events
    cov = prof.delegate_coverage
    assert not cov or 0 <= cov["delegated"] <= cov["total"]


# ------------------------------------------------------------------------------------ shape helpers
def test_profile_helpers():
    rows = profiles.finish([profiles.op_row("a", "Conv", 3.0), profiles.op_row("b", "Conv", 1.0),
                            profiles.op_row("c", "Add", 4.0, 2), {"ms": float("nan"), "op": "x"}, {"op": "y"}])
    assert [r["node"] for r in rows] == ["c", "a", "b"] and rows[0]["pct"] == pytest.approx(50.0)
    types = profiles.by_op_type(rows)
    assert [(t["op"], t["ms"], t["count"]) for t in types] == [("Add", 4.0, 2), ("Conv", 4.0, 2)]
    assert profiles.coverage_label(profiles.coverage("X", 10, 10, 1)) == "full (10/10)"
    assert profiles.coverage_label(profiles.coverage("X", 10, 10, 2)) == "partial (10/10, 2 partitions)"
    assert profiles.coverage_label(profiles.coverage("X", 0, 10, 0)) == "none (0/10)"
    assert profiles.coverage_label(profiles.coverage("X", 3, 10, 1, "predicted")).endswith(", predicted")
    assert profiles.delegate_cell("gpu", profiles.coverage("G", 5, 120, 3)) == "gpu partial (5/120, 3 partitions)"
    assert profiles.delegate_cell("cpu", profiles.coverage("X", 7, 7, 1)) == "cpu"
    assert profiles.delegate_cell("cpu", {}) == "cpu"


# ------------------------------------------------------------------------------------------ host runner
def test_host_run_with_profile_stores_an_op_table(tmp_path, models):
    t = LocalTransport(tmp_path / "dev")
    try:
        job = BenchJob("tiny", "onnx", "fp32", img_size=IMG, warmup=3, iterations=30, profile=True)
        m = HostRunner().run(t, job, models["onnx"])
        assert m.status == "ok", m.reason
        assert {r["op"] for r in m.op_profile} >= {"Conv", "Gemm"}
        total = profiles.total_ms(m.op_profile)
        assert m.median_ms / 10 < total < m.median_ms * 10  # the ops add up to the latency's order of magnitude
        assert m.delegate_coverage["delegate"] == "CPUExecutionProvider"
        assert m.delegate_coverage["delegated"] == m.delegate_coverage["total"] == len(m.op_profile)
        assert any("separate profiled pass" in n for n in m.notes)
        plain = HostRunner().run(t, BenchJob("tiny", "onnx", "fp32", img_size=IMG, warmup=1, iterations=3),
                                 models["onnx"])
        assert plain.status == "ok" and plain.op_profile == [] and plain.delegate_coverage == {}
        lite = HostRunner().run(t, BenchJob("tiny", "tflite", "fp32", img_size=IMG, warmup=1, iterations=3,
                                            profile=True), models["tflite"])
        assert lite.status == "ok" and lite.op_profile == []
        assert any("op profile not available for host LiteRT" in n for n in lite.notes)
        assert lite.delegate_coverage["delegated"] == lite.delegate_coverage["total"] == TFLITE_NODES
    finally:
        t.close()


def test_executorch_hook_says_not_available_without_its_module(monkeypatch, tmp_path):
    import numpy as np

    from edgevit_deploy.device_bench import host_worker

    monkeypatch.setattr(host_worker, "EXECUTORCH_PROFILE_HOOK", ("edgevit_deploy.no_such_module", "f"))
    out = host_worker.profile_ops("executorch", tmp_path / "m.pte", np.zeros((1, 3, 8, 8), np.float32), 1, 0, 1)
    assert out.get("op_profile") is None and "op profile not available for ExecuTorch" in out["notes"][0]


# ------------------------------------------------------------------------------- stand-in adbd + tools
@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    return write_fake_tools(tmp_path_factory.mktemp("tools"))


def test_standin_phone_rows_carry_op_tables_and_a_partial_label(tmp_path, models, tools):
    config = RunnerConfig(benchmark_model=tools.benchmark_model, onnxruntime_perf_test=tools.onnxruntime_perf_test,
                          timeout_s=120, outputs=False)
    with StandinAdbd(tmp_path / "phone") as dev:
        t = open_transport(f"adb:{dev.address}", key_path=tmp_path / "adbkey")
        try:
            def job(target: str, **kw) -> BenchJob:
                return BenchJob("tiny", target, "fp32", device=t.device_id, img_size=IMG, warmup=1, iterations=8, **kw)

            lite = get_runner("tflite", "adb", config).run(t, job("tflite", profile=True), models["tflite"])
            assert lite.status == "ok", (lite.reason, lite.raw_output[-1500:])
            assert len(lite.op_profile) == TFLITE_NODES and {"CONV_2D", "FULLY_CONNECTED"} <= {
                r["op"] for r in lite.op_profile}
            assert lite.delegate_coverage == {"delegate": "TfLiteXNNPackDelegate", "delegated": TFLITE_NODES,
                                              "total": TFLITE_NODES, "partitions": 1, "source": "measured"}
            assert "--enable_op_profiling=true" in lite.raw_output or "Operator-wise" in lite.raw_output
            tool_fault_file(dev.root).write_text("partial")
            part = get_runner("tflite", "adb", config).run(t, job("tflite"), models["tflite"])
            assert part.status == "ok" and part.op_profile == []  # not profiled: no table, coverage all the same
            want = f"partial ({TFLITE_NODES - 1}/{TFLITE_NODES}, 2 partitions)"
            assert profiles.coverage_label(part.delegate_coverage) == want
            tool_fault_file(dev.root).write_text("")
            ort_row = get_runner("onnx", "adb", config).run(t, job("onnx", profile=True), models["onnx"])
            assert ort_row.status == "ok", ort_row.reason
            assert {r["op"] for r in ort_row.op_profile} >= {"Conv", "Gemm"}
            assert ort_row.delegate_coverage["delegate"] == "CPUExecutionProvider"
            assert not list((dev.root).rglob("ort_profile*.json"))  # the runner removed the trace it read
        finally:
            t.close()
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(rich_table([row_of(m) for m in (lite, part)]))
    text = console.export_text()
    assert f"cpu partial ({TFLITE_NODES - 1}/{TFLITE_NODES}, 2 partitions)" in text
    assert text.count("partial") == 1


# ---------------------------------------------------------------------- CLI: run, show --ops, export, report
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})


def test_cli_profile_show_ops_export_and_report(tmp_path, tmp_path_factory):
    store = tmp_path / "s.sqlite"
    cache = tmp_path_factory.getbasetemp() / "bench-artifacts"  # shared with test_bench_local.py
    proc = _cli("run", "edgevit_xxs", "--target", "onnx", "--img-size", str(IMG), "--warmup", "2", "--iterations",
                "10", "--profile", "--store", str(store), "--cache-dir", str(cache), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = _cli("show", "--store", str(store), cwd=tmp_path)
    assert shown.returncode == 0 and re.search(r"┃\s*#\s*┃", shown.stdout)
    rows = json.loads(_cli("export", "--store", str(store), "--json", cwd=tmp_path).stdout)
    ops = rows[0]["op_profile"]
    assert len(ops) > 50 and rows[0]["delegate_coverage"]["total"] == len(ops)
    ops_out = _cli("show", "--store", str(store), "--ops", "1", "--top", "5", cwd=tmp_path)
    assert ops_out.returncode == 0, ops_out.stderr
    body = ops_out.stdout
    assert "top ops: edgevit_xxs onnx fp32 1t cpu @local" in body and f"{len(ops)} ops" in body
    assert ops[0]["node"][:40] in body and ops[5]["node"] not in body  # the top 5, heaviest first
    missing = _cli("show", "--store", str(store), "--ops", "9", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no row '9'" in missing.stderr
    rep = _cli("report", "--store", str(store), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Per-op breakdown" in page and '<img alt="op_breakdown"' in page and "<th>coverage</th>" in page
    assert f"full ({len(ops)}/{len(ops)})" in page
    assert (tmp_path / "rep" / "op_breakdown.png").stat().st_size > 5000
