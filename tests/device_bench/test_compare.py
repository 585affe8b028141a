"""`edgevit-bench compare`: the statistics (seeded bootstrap of the ratio of medians) on synthetic samples, the
pairing and trust rules on synthetic stores, the command's exit codes, and the gate end to end: an injected 20 %
slowdown is caught and identical reruns pass, through the host runner (a sleeping user model) and through the
stand-in adbd with the stand-in onnxruntime_perf_test (its timing knob paces and slows the iterations)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit_deploy.cli.bench_cmd import main as bench_main
from edgevit_deploy.device_bench import compare as cmp
from edgevit_deploy.device_bench.stats import bootstrap_median_ratio
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.types import BenchJob, DeviceInfo, Measurement


# ------------------------------------------------------------------------------------------ statistics
def _lognormal(seed: int, n: int, median: float = 10.0, sigma: float = 0.05) -> list[float]:
    return list(median * np.exp(np.random.default_rng(seed).normal(0.0, sigma, n)))


def test_the_bootstrap_is_seeded_and_exact_on_a_known_ratio():
    a = _lognormal(1, 50)
    b = [1.2 * v for v in a]
    ci = bootstrap_median_ratio(a, b, seed=7)
    assert ci == bootstrap_median_ratio(a, b, seed=7)                      # same seed, same interval
    assert ci.ratio == pytest.approx(1.2) and ci.low <= 1.2 <= ci.high
    assert ci.low > 1.1 and ci.high < 1.3
    change, low, _ = ci.as_percent()
    assert change == pytest.approx(20.0) and low > 10.0
    other = bootstrap_median_ratio(a, b, seed=8)
    assert other != ci and abs(other.low - ci.low) < 0.02               # another seed: about the same


def test_the_interval_covers_the_truth_about_95_percent_of_the_time():
    """200 pairs of samples from one distribution (seeded): the 95 % interval of the ratio holds 1 in most of
    them, and a 20 % slowdown lies outside +-5 % in every one."""
    covered = 0
    for k in range(200):
        a, b = _lognormal(2 * k, 40, sigma=0.08), _lognormal(2 * k + 1, 40, sigma=0.08)
        ci = bootstrap_median_ratio(a, b, resamples=500, seed=k)
        covered += ci.low <= 1.0 <= ci.high
        slow = bootstrap_median_ratio(a, [1.2 * v for v in b], resamples=500, seed=k)
        assert cmp.verdict_of(*[100 * (v - 1) for v in (slow.low, slow.high)], 5.0) == "slower"
    assert 0.88 * 200 <= covered <= 0.995 * 200


def test_bad_samples_are_refused():
    with pytest.raises(ValueError, match="both sides"):
        bootstrap_median_ratio([], [1.0])
    with pytest.raises(ValueError, match="positive"):
        bootstrap_median_ratio([0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_median_ratio([float("nan")], [1.0])


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (6.0, 30.0, "slower"), (-30.0, -6.0, "faster"), (-4.0, 4.9, "same"), (-1.0, 9.0, "inconclusive"),
    (-9.0, 1.0, "inconclusive"), (None, None, "unknown"), (5.0, 8.0, "inconclusive"),
])
def test_verdicts(low, high, verdict):
    assert cmp.verdict_of(low, high, 5.0) == verdict


@pytest.mark.parametrize(("text", "value"), [("5%", 5.0), ("5", 5.0), ("2.5 %", 2.5), (" 10% ", 10.0)])
def test_thresholds(text, value):
    assert cmp.parse_threshold(text) == value


@pytest.mark.parametrize("text", ["", "5x", "-5%", "0%", "abc", "1000%", "5%%"])
def test_bad_thresholds(text):
    with pytest.raises(cmp.CompareError, match="--fail-on-regression"):
        cmp.parse_threshold(text)


# ------------------------------------------------------------------------------------------ synthetic stores
def _job(threads: int = 1, **kw) -> BenchJob:
    return BenchJob("edgevit_xxs", "onnx", "fp32", threads=threads, device="adb:X", img_size=64, **kw)


def _run(seed: int, scale: float = 1.0, threads: int = 1, n: int = 40, **kw) -> Measurement:
    lat = [scale * v for v in _lognormal(seed, n)]
    return Measurement(job=_job(threads), status="ok", latencies_ms=lat, median_ms=float(np.median(lat)),
                       runtime="onnxruntime_perf_test", timestamp=kw.pop("timestamp", "2026-12-01T10:00:00Z"), **kw)


def _store(tmp: Path, runs: list[Measurement]) -> Path:
    db = tmp / "s.sqlite"
    with ResultStore(db) as store:
        for m in runs:
            store.put(m)
    return db


def _cli(*args: str):
    return CliRunner().invoke(bench_main, ["compare", *args])


def test_noise_alone_passes_and_a_20_percent_slowdown_fails_the_gate(tmp_path):
    db = _store(tmp_path, [
        _run(1, sweep_id="base"), _run(2, threads=4, sweep_id="base"),
        _run(3, sweep_id="same"), _run(4, threads=4, sweep_id="same"),                      # noise only
        _run(5, scale=1.2, sweep_id="slow"), _run(6, threads=4, sweep_id="slow"),            # one 20 % slower
    ])
    same = _cli("base", "same", "--store", str(db), "--fail-on-regression", "5%")
    assert same.exit_code == 0, same.output
    assert "0 trustworthy regression(s)" in same.output and "2 pair(s)" in same.output
    slow = _cli("base", "slow", "--store", str(db), "--fail-on-regression", "5%", "--json")
    assert slow.exit_code == 1, slow.output
    doc = json.loads(slow.output)
    assert doc["regressions"] == 1 and doc["gate"] is True and "bootstrap" in doc["method"]
    by_threads = {int(p["config"]["threads"]): p for p in doc["pairs"]}
    assert by_threads[1]["verdict"] == "slower" and by_threads[1]["trustworthy"]
    assert 15.0 < by_threads[1]["change_pct"] < 25.0 and by_threads[1]["ci_low_pct"] > 5.0
    assert by_threads[4]["verdict"] in ("same", "inconclusive")
    # without --fail-on-regression it only reports
    assert _cli("base", "slow", "--store", str(db)).exit_code == 0
    # a higher bar than the slowdown passes
    assert _cli("base", "slow", "--store", str(db), "--fail-on-regression", "30%").exit_code == 0


def test_a_throttled_busy_or_short_run_is_untrustworthy_and_never_gates(tmp_path):
    busy = dict(thermal_before={"loadavg_1m": 9.5}, device=DeviceInfo(id="local", kind="local",
                                                                       extra={"cpu_count": 2}))
    db = _store(tmp_path, [
        *(_run(k, threads=k, sweep_id="base") for k in (1, 2, 3, 4)),
        _run(5, scale=1.3, sweep_id="cand", throttled=True),
        _run(6, scale=1.3, threads=2, n=6, sweep_id="cand"),
        _run(7, scale=1.3, threads=3, sweep_id="cand", notes=["thermal status is 2 before the run (cool down)"]),
        _run(8, scale=1.3, threads=4, sweep_id="cand", **busy),
    ])
    result = _cli("base", "cand", "--store", str(db), "--fail-on-regression", "5%", "--json")
    assert result.exit_code == 0, result.output
    pairs = {int(p["config"]["threads"]): p for p in json.loads(result.output)["pairs"]}
    assert all(p["verdict"] == "slower" and not p["trustworthy"] for p in pairs.values())
    assert pairs[1]["reasons"] == ["candidate throttled"]
    assert pairs[2]["reasons"] == ["candidate has 6 iterations (< 10)"]
    assert "thermal status is 2" in pairs[3]["reasons"][0]
    assert pairs[4]["reasons"] == ["candidate busy (load 9.5 on 2 cores)"]
    table = _cli("base", "cand", "--store", str(db))
    assert "candidate throttled" in table.output and "4 untrustworthy" in table.output
    # --min-iterations lowers the bar: the short run then gates
    assert _cli("base", "cand", "--store", str(db), "--fail-on-regression", "5%",
                "--min-iterations", "5").exit_code == 1


def _summary_run(seed: int, scale: float = 1.0, threads: int = 1, iterations: int = 50, **kw) -> Measurement:
    """A benchmark_model row: the tool's summary (mean, std) and no per-iteration latencies."""
    lat = [scale * v for v in _lognormal(seed, iterations)]
    return Measurement(job=_job(threads, iterations=iterations), status="ok", mean_ms=float(np.mean(lat)),
                       std_ms=float(np.std(lat)), median_ms=float(np.median(lat)), runtime="benchmark_model",
                       timestamp="2026-12-01T10:00:00Z", **kw)


def test_summary_only_rows_gate_on_the_ratio_of_means(tmp_path):
    db = _store(tmp_path, [
        _summary_run(1, sweep_id="base"), _summary_run(2, sweep_id="same"), _summary_run(3, 1.2, sweep_id="slow"),
        _summary_run(4, threads=2, iterations=5, sweep_id="base"), _summary_run(5, 1.5, 2, 5, sweep_id="slow"),
    ])
    same = json.loads(_cli("base", "same", "--store", str(db), "--json").output)
    (pair,) = same["pairs"]
    assert pair["method"] == "summary means (delta method)" and pair["trustworthy"]
    assert pair["verdict"] == "same" and pair["ci_low_pct"] < 0 < pair["ci_high_pct"]
    slow = _cli("base", "slow", "--store", str(db), "--fail-on-regression", "5%", "--json")
    assert slow.exit_code == 1, slow.output
    pairs = {int(p["config"]["threads"]): p for p in json.loads(slow.output)["pairs"]}
    assert pairs[1]["verdict"] == "slower" and pairs[1]["ci_low_pct"] > 5.0 and 15 < pairs[1]["change_pct"] < 25
    # 5 iterations: an interval, but too few to gate
    assert pairs[2]["reasons"] == ["baseline has 5 iterations (< 10)", "candidate has 5 iterations (< 10)"]


def test_unpaired_and_failed_rows_are_listed_not_paired(tmp_path):
    db = _store(tmp_path, [
        _run(1, sweep_id="a"), _run(2, threads=2, sweep_id="a"),
        _run(3, sweep_id="b"), _run(4, threads=8, sweep_id="b"),
        Measurement(job=_job(2), status="failed", reason="delegate failed", sweep_id="b"),
    ])
    doc = json.loads(_cli("a", "b", "--store", str(db), "--json").output)
    assert [p["config"]["threads"] for p in doc["pairs"]] == [1]
    assert sorted((u["side"], u["config"]["threads"], u["reason"]) for u in doc["unpaired"]) == [
        ("candidate", 2, "failed: delegate failed"), ("candidate", 8, "only in the candidate")]


def test_two_stores_tags_and_dates_select_the_sides(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = _store(tmp_path / "old", [_run(1, timestamp="2026-11-01T10:00:00Z", tags=["v0.1"])])
    new = _store(tmp_path / "new", [_run(2, scale=1.25, timestamp="2026-12-02T10:00:00Z", tags=["v0.2"])])
    assert _cli(str(old), f"store:{new}", "--fail-on-regression", "5%").exit_code == 1
    both = _store(tmp_path, [_run(1, timestamp="2026-11-01T10:00:00Z", tags=["v0.1"]),
                             _run(2, timestamp="2026-12-02T10:00:00Z", tags=["v0.2"])])
    assert _cli("tag:v0.1", "tag:v0.2", "--store", str(both), "--fail-on-regression", "5%").exit_code == 0
    dated = _cli("before:2026-12-01", "since:2026-12-01", "--store", str(both), "--json")
    assert dated.exit_code == 0 and len(json.loads(dated.output)["pairs"]) == 1
    # --since narrows both sides: nothing of the baseline is left
    narrowed = _cli("tag:v0.1", "tag:v0.2", "--store", str(both), "--since", "2026-12-01")
    assert narrowed.exit_code == 2 and "selects no rows" in narrowed.output


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "base"], "no sweep 'nope'"),
    (["base", "base", "--fail-on-regression", "5x"], "--fail-on-regression takes a percentage"),
    (["base", "other"], "no configuration measured ok on both sides"),
    (["base", "base", "--since", "yesterday"], "--since takes an ISO date"),
    (["tag:missing", "base"], "selects no rows"),
    (["base", "base", "--min-iterations", "0"], "--min-iterations must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    db = _store(tmp_path, [_run(1, sweep_id="base"), _run(2, threads=2, sweep_id="other")])
    result = _cli(*args, "--store", str(db))
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1


def test_a_missing_store_is_exit_2(tmp_path):
    result = _cli("a", "b", "--store", str(tmp_path / "missing.sqlite"))
    assert result.exit_code == 2 and "no result store" in result.output


# ------------------------------------------------------------------------------------------ host runner
SLEEPY = '''
import os
import time

import torch


class Sleepy(torch.nn.Module):
    """Sleeps SLEEPY_MS x SLEEPY_FACTOR per forward: a model whose latency the test sets."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x):
        time.sleep(float(os.environ["SLEEPY_MS"]) * float(os.environ.get("SLEEPY_FACTOR", "1")) / 1000.0)
        return self.fc(x.mean(dim=(2, 3)))


def make(**kw):
    return Sleepy()
'''


@pytest.mark.slow  # three sweeps, each starting the host worker (torch) again: ~45 s on a busy 2-core machine
def test_host_runner_gate_catches_a_20_percent_slowdown_and_passes_a_rerun(tmp_path, monkeypatch):
    """The real sweep + host runner (torch eager of a sleeping user model, in its worker process): the baseline,
    an identical --rerun, and a --rerun with the model 20 % slower; compare gates only the last."""
    model = tmp_path / "sleepy.py"
    model.write_text(SLEEPY)
    store = tmp_path / "s.sqlite"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLEEPY_MS", "25")
    # the host's load is read before each run (a load above the core count makes the run "busy", never gating);
    # this shared CI machine is often that loaded, so the reading is pinned: the test is about the slowdown
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    sweep = ["sweep", "--models", f"{model}:make", "--targets", "torch", "--img-size", "32", "--warmup", "2",
             "--iterations", "20", "--store", str(store), "--cache-dir", str(tmp_path / "cache")]
    ids = []
    for factor, extra in (("1", []), ("1", ["--rerun"]), ("1.2", ["--rerun", "--tag", "slow"])):
        monkeypatch.setenv("SLEEPY_FACTOR", factor)
        out = CliRunner().invoke(bench_main, [*sweep, *extra])
        assert out.exit_code == 0, out.output
        ids.append(out.output.split("sweep id: ")[1].split()[0])
    base, same, slow = ids
    assert same == f"{base}-r2" and slow == f"{base}-r3"
    assert [r["thermal_before"].get("loadavg_1m") for r in ResultStore(store, readonly=True).rows()] == [0.5] * 3
    passed = _cli(base, same, "--store", str(store), "--fail-on-regression", "5%", "--json")
    assert passed.exit_code == 0, passed.output
    (pair,) = json.loads(passed.output)["pairs"]
    assert pair["trustworthy"] and pair["verdict"] in ("same", "inconclusive") and abs(pair["change_pct"]) < 5
    failed = _cli(base, slow, "--store", str(store), "--fail-on-regression", "5%", "--json")
    assert failed.exit_code == 1, failed.output
    (pair,) = json.loads(failed.output)["pairs"]
    assert pair["verdict"] == "slower" and 12.0 < pair["change_pct"] < 28.0
    assert _cli(base, "tag:slow", "--store", str(store), "--fail-on-regression", "5%").exit_code == 1


# ------------------------------------------------------------------------------------------ stand-in adbd
def test_standin_phone_gate_catches_an_injected_slowdown_and_passes_identical_reruns(tmp_path):
    """A tiny real ONNX model timed by the stand-in onnxruntime_perf_test on the stand-in adbd; the tool's
    timing knob paces every iteration to 15 ms (the model's own time hidden: no noise), then adds 20 %."""
    import torch

    from edgevit_deploy.device_bench.artifacts import ArtifactCache
    from edgevit_deploy.device_bench.runners import RunnerConfig
    from edgevit_deploy.device_bench.sweep import Sweep, default_runner_factory
    from edgevit_deploy.device_bench.sweep_config import SweepSpec
    from edgevit_deploy.device_bench.testing.fake_runners import timing_knob_file, write_fake_tools
    from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
    from edgevit_deploy.device_bench.transports import open_transport

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    onnx = tmp_path / "tiny.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(onnx), dynamo=False, opset_version=17)
    tools = write_fake_tools(tmp_path / "tools")

    def exporter(req, out_dir: Path) -> Path:
        out = out_dir / "tiny.onnx"
        out.write_bytes(onnx.read_bytes())
        return out

    store = ResultStore(tmp_path / "s.sqlite")
    with StandinAdbd(tmp_path / "phone") as phone:
        device = f"adb:{phone.address}"
        spec = SweepSpec(models=["edgevit_xxs"], targets=["onnx"], devices=[device], img_size=32, warmup=2,
                         iterations=20)
        config = RunnerConfig(onnxruntime_perf_test=tools.onnxruntime_perf_test, timeout_s=180)

        def measure(knob: str, sweep_id: str) -> None:
            timing_knob_file(tmp_path / "phone").write_text(knob)
            result = Sweep(spec, store, ArtifactCache(tmp_path / "cache", exporter=exporter),
                           opener=lambda dev: open_transport(dev, key_path=tmp_path / "adbkey"),
                           runner_factory=default_runner_factory(config), sweep_id=sweep_id).run()
            assert result.ok == 1, [m.reason for m in result.measurements]

        measure("pace_ms=15", "base")
        measure("pace_ms=15", "same")
        measure("pace_ms=15 slowdown=0.2", "slow")
    store.close()
    db = str(tmp_path / "s.sqlite")
    rows = ResultStore(db, readonly=True).rows()
    assert [len(r["latencies_ms"]) for r in rows] == [20, 20, 20]
    assert all(r["runtime"].startswith("onnxruntime_perf_test") for r in rows)
    assert 14.5 < rows[0]["median_ms"] < 17.0 and 17.5 < rows[2]["median_ms"] < 20.5
    passed = _cli("base", "same", "--store", db, "--fail-on-regression", "5%", "--json")
    assert passed.exit_code == 0, passed.output
    pair = json.loads(passed.output)["pairs"][0]
    assert pair["verdict"] in ("same", "inconclusive") and pair["ci_low_pct"] < 5.0, pair   # pace: median equal
    assert abs(pair["change_pct"]) < 2.0, pair
    failed = _cli("base", "slow", "--store", db, "--fail-on-regression", "5%")
    assert failed.exit_code == 1 and "regression" in failed.output, failed.output
    assert os.environ.get("EDGEVIT_STANDIN_SLOWDOWN") is None                  # the knob was the device's file
