"""ExecuTorch's ``executor_runner`` on Android: its output parser on real-format fixtures
(tests/fixtures/runner_output/et_*.txt, each with a .source) and fuzzed, and the runner through a stand-in
phone (adbd on loopback) with the stand-in executor_runner really running an exported ``.pte`` in ExecuTorch's
Python runtime: a sweep row measured, its faults as failed rows with their reasons, and ``doctor``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit_deploy.device_bench import api
from edgevit_deploy.device_bench.errors import RunnerConfigError
from edgevit_deploy.device_bench.parsers import executorch as et
from edgevit_deploy.device_bench.runners import RunnerConfig, get_runner
from edgevit_deploy.device_bench.testing.fake_runners import executor_runner_fault_file, write_fake_executor_runner
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runner_output"
ET_FIXTURES = sorted(FIXTURES.glob("et_*.txt"))
IMG = 64


def _numbers(pattern: str, text: str) -> list[float]:
    """An independent reading of a fixture: every number captured by ``pattern``."""
    return [float(v) for v in re.findall(pattern, text)]


def test_every_fixture_names_its_source():
    assert len(ET_FIXTURES) >= 7
    for path in ET_FIXTURES:
        source = path.with_suffix(".source")
        assert source.is_file(), f"{path.name} has no .source sidecar"
        line = source.read_text().strip()
        assert line.startswith("SOURCE: ") and ("github.com/" in line or "/" in line.split()[1])


@pytest.mark.parametrize("path", ET_FIXTURES, ids=lambda p: p.stem)
def test_fixture(path):
    text = path.read_text()
    run = et.parse(text)
    totals = re.findall(r"successfully (\d+) time\(s\) in ([0-9.]+) ms", text)
    assert run.ok == bool(totals), run.reason
    if not run.ok:
        assert run.reason and len(run.reason) > 20 and run.latency.mean is None
        return
    n, total = int(totals[-1][0]), float(totals[-1][1])
    iterations = _numbers(r"Iteration \d+ of \d+: ([0-9.]+) ms", text)
    if iterations:
        assert run.variant == "per-iteration" and run.latencies_ms == iterations
        assert run.latency.mean == pytest.approx(sum(iterations) / len(iterations))
        assert sum(iterations) == pytest.approx(total, rel=1e-6)  # the fixture is consistent with itself
    else:
        assert run.variant == "total" and run.latency.mean == pytest.approx(total / n) and run.latency.count == n
    loaded = _numbers(r"Model loaded in ([0-9.]+) ms", text)
    assert run.init_ms == (pytest.approx(loaded[-1]) if loaded else None)


def test_warmup_iterations_are_left_out():
    text = (FIXTURES / "et_per_iteration.txt").read_text()
    iterations = _numbers(r"Iteration \d+ of \d+: ([0-9.]+) ms", text)
    run = et.parse(text, warmup=2, threads=4)
    assert run.ok and run.latencies_ms == iterations[2:] and run.latency.count == 3
    assert run.first_ms == iterations[0] and run.warmup_count == 2
    assert run.warmup_mean_ms == pytest.approx(sum(iterations[:2]) / 2)
    assert not run.warnings
    # the threadpool line disagrees with the threads asked for: a note on the row
    assert any("4 threads, 2 were asked" in w for w in et.parse(text, threads=2).warnings)
    # a build that prints only the total cannot drop warm-up runs: it says so
    old = et.parse((FIXTURES / "et_docs_total_only.txt").read_text(), warmup=3)
    assert old.ok and any("includes the 3 warm-up" in w for w in old.warnings)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("et_missing_operator", ["lacks kernels", "aten::native_layer_norm.out"]),
        ("et_backend_not_registered", ["XnnpackBackend", "not have", "registered"]),
        ("et_issue1231_old_no_time", ["without a time"]),
        ("et_unknown_flag_cpu_threads", ["--cpu_threads", "0.6"]),
    ],
)
def test_failures_name_their_cause(name, words):
    run = et.parse((FIXTURES / f"{name}.txt").read_text())
    assert not run.ok
    for w in words:
        assert w in run.reason, run.reason


def test_an_assert_names_the_status_code():
    text = (
        "F 00:00:00.1 executorch:executor_runner.cpp:775] In function main(), assert failed (status == Error::Ok): "
        "Execution of method forward failed with status 0x30\n"
    )
    run = et.parse(text)
    assert not run.ok and "Execution of method forward failed" in run.reason
    assert "DelegateInvalidCompatibility" in run.reason


def test_empty_output_says_so():
    run = et.parse("")
    assert not run.ok and "printed nothing" in run.reason and "logcat" in run.reason


_FRAGMENTS = [
    "Model executed successfully ",
    " time(s) in ",
    " ms.",
    "Iteration 1 of 3: ",
    "Iteration 9 of 2: ",
    "Model loaded in ",
    "nan",
    "inf",
    "-1",
    "99999999999999999999999",
    "Missing operator: [",
    "] aten::x.out",
    "Backend Foo is not registered.",
    "assert failed (x): ",
    "status 0x",
    "zz",
    "\n",
    "I 00:00:00.1 executorch:",
    "Resetting threadpool with num threads = ",
    "Model executed successfully.",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=30), st.floats().map(str), st.integers().map(str)),
        max_size=30,
    ),
    st.integers(min_value=-3, max_value=10),
)
def test_parser_never_raises_on_garbage(parts, warmup):
    run = et.parse("".join(parts), warmup=warmup, threads=2)
    assert isinstance(run.ok, bool)
    if run.ok:
        assert run.latency.mean is not None and run.latency.mean > 0
    else:
        assert run.reason


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_parser_survives_binary_noise_around_real_output(noise):
    real = (FIXTURES / "et_per_iteration.txt").read_text()
    run = et.parse(noise.decode("latin-1") + "\n" + real, warmup=1)
    assert run.ok and len(run.latencies_ms) == 4


# ----------------------------------------------------------------------------- the runner, stand-in phone
@pytest.fixture(scope="module")
def fake_runner(tmp_path_factory) -> Path:
    return write_fake_executor_runner(tmp_path_factory.mktemp("et-tool"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Under pytest's base temp dir: shared with the other sweep tests, so the model is exported once."""
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


@pytest.fixture(autouse=True)
def adb_key(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVIT_ADB_KEY", str(tmp_path / "adbkey"))


def _row(dev: StandinAdbd, fake_runner: Path, tmp_path: Path, cache: Path, threads: int = 2) -> dict:
    spec = api.SweepSpec(
        models=["edgevit_xxs"],
        targets=["executorch"],
        devices=[f"adb:{dev.address}"],
        img_size=IMG,
        threads=[threads],
        warmup=2,
        iterations=5,
    )
    store = tmp_path / "s.sqlite"
    api.sweep(spec, store=store, cache_dir=cache, runner_overrides={"timeout_s": 300, "executor_runner": fake_runner})
    [row] = api.read_rows(store)
    return row


def test_runner_is_registered_and_needs_its_binary(monkeypatch):
    monkeypatch.delenv("EDGEVIT_EXECUTOR_RUNNER", raising=False)
    runner = get_runner("executorch", "adb", RunnerConfig())
    assert runner.name == "executor_runner"
    with pytest.raises(RunnerConfigError, match="--executor-runner"):
        runner.tool_binary()  # type: ignore[attr-defined]


def test_sweep_measures_a_pte_on_the_standin_phone(fake_runner, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        row = _row(dev, fake_runner, tmp_path, cache)
        pushed = list((tmp_path / "phone").rglob("*.pte"))
    assert row["status"] == "ok", row["reason"]
    assert row["runtime"].startswith("executor_runner (per-iteration")
    assert len(pushed) == 1 and pushed[0].name.startswith("edgevit_xxs")
    # warm-up + timed executions were asked for; the 2 warm-up ones are left out of the 5 latencies
    assert "--num_executions=7" in row["raw_output"] or "Iteration 7 of 7" in row["raw_output"]
    assert len(row["latencies_ms"]) == 5 and row["warmup_count"] == 2
    assert row["median_ms"] > 0 and row["init_ms"] > 0
    assert "Resetting threadpool with num threads = 2" in row["raw_output"]
    assert not any("asked for" in n for n in row["notes"])


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("missing-op", ["lacks kernels", "native_layer_norm"]),
        ("no-xnnpack", ["XnnpackBackend"]),
        ("no-threadpool", ["--cpu_threads"]),
    ],
)
def test_runner_faults_are_failed_rows_with_their_cause(fault, words, fake_runner, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        executor_runner_fault_file(tmp_path / "phone").write_text(fault)
        row = _row(dev, fake_runner, tmp_path, cache, threads=1)
    assert row["status"] == "failed"
    for w in words:
        assert w in row["reason"], row["reason"]


def test_an_old_build_gives_the_mean_with_a_note(fake_runner, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        executor_runner_fault_file(tmp_path / "phone").write_text("old")
        row = _row(dev, fake_runner, tmp_path, cache, threads=1)
    assert row["status"] == "ok", row["reason"]
    assert row["runtime"].startswith("executor_runner (total")
    assert row["mean_ms"] > 0 and any("includes the 2 warm-up" in n for n in row["notes"])


def test_cli_sweep_option_and_doctor(fake_runner, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        device = f"adb:{dev.address}"
        base = [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd"]
        env = {**os.environ, "EDGEVIT_ADB_KEY": str(tmp_path / "adbkey")}
        doctor = subprocess.run(
            [*base, "doctor", "--device", device, "--executor-runner", str(fake_runner)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=tmp_path,
        )
        assert doctor.returncode == 0, doctor.stderr[-2000:]
        assert "executor_runner" in doctor.stdout and "not an ELF" in doctor.stdout  # a script, not the ARM build
        store = tmp_path / "cli.sqlite"
        sweep = subprocess.run(
            [
                *base,
                "sweep",
                "--devices",
                device,
                "--models",
                "edgevit_xxs",
                "--targets",
                "executorch",
                "--img-size",
                str(IMG),
                "--warmup",
                "1",
                "--iterations",
                "3",
                "--store",
                str(store),
                "--executor-runner",
                str(fake_runner),
                "--timeout",
                "300",
                "--cache-dir",
                str(cache),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=tmp_path,
        )
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert "1 measured, 0 failed" in sweep.stdout
    [row] = api.read_rows(store)
    assert row["runtime"].startswith("executor_runner") and len(row["latencies_ms"]) == 3
