"""Sweeps: job expansion, sweep files, resumability, device drops, parallel devices, kill -9 then resume.

The transports and runner here are in-process stand-ins (no export, no subprocess per job) so that the
sweep logic itself is what is tested; the real host runner is tested in test_bench_local.py.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edgevit_deploy.device_bench.artifacts import ArtifactCache, ArtifactRequest, export_options
from edgevit_deploy.device_bench.errors import DeviceDisconnectedError
from edgevit_deploy.device_bench.stats import summarise
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.sweep import Sweep, SweepCallbacks, throttled
from edgevit_deploy.device_bench.sweep_config import SweepConfigError, SweepSpec
from edgevit_deploy.device_bench.types import BenchJob, DeviceInfo, Measurement, ShellResult


# ----------------------------------------------------------------------------------------- stand-ins
class Link:
    """A device's connection: ``drop_on`` lists the shell-call numbers at which it drops;
    ``dead`` makes reconnects fail too."""

    def __init__(self, drop_on: tuple[int, ...] = (), dead_after: int | None = None):
        self.calls = 0
        self.drop_on = set(drop_on)
        self.dead_after = dead_after
        self.reconnects = 0

    @property
    def dead(self) -> bool:
        return self.dead_after is not None and self.calls >= self.dead_after


class FakeTransport:
    kind = "fake"

    def __init__(self, device_id: str, work_dir: Path, link: Link | None = None):
        self.device_id = device_id
        self.work_dir = str(work_dir)
        self.link = link or Link()
        Path(work_dir).mkdir(parents=True, exist_ok=True)

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        self.link.calls += 1
        if self.link.dead or self.link.calls in self.link.drop_on:
            raise DeviceDisconnectedError(self.device_id, "connection reset by peer")
        return ShellResult(0, "")

    def push(self, local: Path, remote: str) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, remote)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def exists(self, remote: str) -> bool:
        return Path(remote).exists()

    def free_space(self, remote_dir: str) -> int:
        return 1 << 30

    def device_info(self) -> DeviceInfo:
        if self.link.dead:
            raise DeviceDisconnectedError(self.device_id, "offline")
        return DeviceInfo(id=self.device_id, kind=self.kind, model="stand-in phone")

    def reconnect(self) -> None:
        self.link.reconnects += 1
        if self.link.dead:
            raise DeviceDisconnectedError(self.device_id, "still offline")

    def close(self) -> None:
        pass


class TimingRunner:
    """Times ``sleep_s`` sleeps (real perf_counter timings) after one shell call on the transport."""

    name = "timing"

    def __init__(self, sleep_s: float = 0.001, iterations: int = 5, on_run=None):
        self.sleep_s = sleep_s
        self.iterations = iterations
        self.on_run = on_run

    def run(self, transport, job: BenchJob, artifact: Path) -> Measurement:
        transport.shell(f"run {artifact}")
        if self.on_run:
            self.on_run(transport, job)
        lat = []
        for _ in range(self.iterations):
            t0 = time.perf_counter()
            time.sleep(self.sleep_s)
            lat.append((time.perf_counter() - t0) * 1e3)
        return Measurement(job=job, status="ok", runtime="timing", latencies_ms=lat,
                           timestamp=f"{time.time():.6f}", **summarise(lat).as_measurement_fields())


def fake_exporter(req: ArtifactRequest, out_dir: Path) -> Path:
    path = out_dir / f"{req.model}-{req.precision}.{req.target}"
    path.write_text(repr(req))
    return path


def make_sweep(tmp: Path, spec: SweepSpec, links: dict[str, Link] | None = None, runner=None,
               callbacks=None, store: ResultStore | None = None) -> tuple[Sweep, ResultStore]:
    links = links or {}
    store = store or ResultStore(tmp / "store.sqlite")
    cache = ArtifactCache(tmp / "cache", exporter=fake_exporter)
    runner = runner or TimingRunner()
    sweep = Sweep(spec, store, cache, opener=lambda dev: FakeTransport(dev, tmp / "dev" / dev, links.get(dev)),
                  runner_factory=lambda target, kind: runner, callbacks=callbacks, reconnect_attempts=2,
                  reconnect_delay_s=0.01)
    return sweep, store


SPEC = dict(models=["edgevit_xxs"], targets=["onnx", "tflite"], precisions=["fp32"], threads=[1, 2],
            img_size=64, warmup=1, iterations=3)


# ------------------------------------------------------------------------------------------ the spec
def test_jobs_cover_the_cartesian_product_once():
    spec = SweepSpec(models="edgevit_xxs,edgevit_xs,edgevit_xxs", targets="onnx,tflite",   # a repeat is dropped
                     precisions=["fp32", "int8"], threads="1,4", delegates=["cpu"], devices=["local", "adb:X"])
    jobs = spec.jobs()
    assert len(jobs) == 2 * 2 * 2 * 2 * 2
    assert len({j.key for j in jobs}) == len(jobs)
    assert {j.img_size for j in jobs} == {224}          # each model's default size
    assert {j.threads for j in jobs} == {1, 4}


@pytest.mark.parametrize("bad, message", [
    (dict(targets=["onnx", "tensorrt"]), "unknown targets"),
    (dict(threads=[0]), "threads must be >= 1"),
    (dict(threads="one"), "threads must be integers"),
    (dict(devices=[]), "devices is empty"),
    (dict(iterations=0), "iterations"),
])
def test_invalid_specs_say_what_is_wrong(bad, message):
    with pytest.raises(SweepConfigError, match=message):
        SweepSpec(**{**dict(models=["edgevit_xxs"]), **bad})


def test_yaml_and_toml_sweep_files_agree_and_flags_override(tmp_path):
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""\
        models: [edgevit_xxs, edgevit_xs]
        targets: onnx,tflite
        precision: [fp32]
        threads: [1, 4]
        devices: [local]
        img_size: 96
        cooldown: 0.5
        """))
    (tmp_path / "s.toml").write_text(textwrap.dedent("""\
        [sweep]
        models = ["edgevit_xxs", "edgevit_xs"]
        targets = ["onnx", "tflite"]
        precisions = ["fp32"]
        threads = [1, 4]
        devices = ["local"]
        img_size = 96
        cooldown_s = 0.5
        """))
    a, b = SweepSpec.load(tmp_path / "s.yaml"), SweepSpec.load(tmp_path / "s.toml")
    assert a.jobs() == b.jobs()
    assert a.cooldown_s == 0.5 and len(a.jobs()) == 8
    c = a.with_overrides(threads=["2"], img_size=None)
    assert {j.threads for j in c.jobs()} == {2} and c.img_size == 96


def test_sweep_file_errors_name_the_problem(tmp_path):
    (tmp_path / "bad.yaml").write_text("models: [edgevit_xxs]\nthreds: [1]\n")
    with pytest.raises(SweepConfigError, match="unknown sweep keys.*threds"):
        SweepSpec.load(tmp_path / "bad.yaml")
    (tmp_path / "none.yaml").write_text("targets: [onnx]\n")
    with pytest.raises(SweepConfigError, match="needs 'models'"):
        SweepSpec.load(tmp_path / "none.yaml")
    with pytest.raises(SweepConfigError, match="not found"):
        SweepSpec.load(tmp_path / "missing.yaml")


# -------------------------------------------------------------------------------------- resumability
def test_rerun_skips_completed_rows_and_retries_failed_ones(tmp_path):
    spec = SweepSpec(**SPEC, devices=["phone"])
    sweep, store = make_sweep(tmp_path, spec)
    first = sweep.run()
    assert (first.total, first.skipped, first.ok) == (4, 0, 4)
    stamps = {tuple(r[k] for k in ("target", "threads")): r["timestamp"] for r in store.rows()}

    again, _ = make_sweep(tmp_path, spec, store=store)
    second = again.run()
    assert (second.skipped, len(second.measurements)) == (4, 0)
    assert {tuple(r[k] for k in ("target", "threads")): r["timestamp"] for r in store.rows()} == stamps

    # a row that failed in this sweep id is measured again on the next run, unless retry_failed is off;
    # the failure stays in the store's history beside the new ok row
    bad = BenchJob("edgevit_xxs", "onnx", "fp32", threads=1, device="phone", img_size=64)
    store.delete([bad.key], sweep_id=first.sweep_id)
    store.put(Measurement(job=bad, status="failed", reason="boom", sweep_id=first.sweep_id))
    no_retry, _ = make_sweep(tmp_path, spec.with_overrides(retry_failed=False), store=store)
    assert len(no_retry.run().measurements) == 0
    retry, _ = make_sweep(tmp_path, spec, store=store)
    redo = retry.run()
    assert [m.job.key for m in redo.measurements] == [bad.key] and redo.ok == 1
    assert store.count() == 5 and [r["reason"] for r in store.rows() if r["status"] == "failed"] == ["boom"]


def test_export_and_option_failures_become_failed_rows_and_the_sweep_goes_on(tmp_path):
    exported = []

    def exporter(req, out_dir):
        export_options(req.target, req.precision)    # what the toolkit exporter does first
        if req.model == "edgevit_xs":
            raise RuntimeError("converter crashed")
        exported.append(req.precision)
        return fake_exporter(req, out_dir)

    spec = SweepSpec(models=["edgevit_xxs", "edgevit_xs"], targets=["onnx"], precisions=["fp16", "fp32"],
                     devices=["phone"], img_size=64)
    store = ResultStore(tmp_path / "s.sqlite")
    sweep = Sweep(spec, store, ArtifactCache(tmp_path / "cache", exporter=exporter),
                  opener=lambda d: FakeTransport(d, tmp_path / "dev"), runner_factory=lambda t, k: TimingRunner())
    result = sweep.run()
    rows = {(r["model"], r["precision"]): r for r in store.rows()}
    fp16 = rows["edgevit_xxs", "fp16"]
    assert fp16["status"] == "failed" and "does not support" in fp16["reason"] and "fp16" in fp16["reason"]
    assert rows["edgevit_xs", "fp32"]["status"] == "failed"
    assert "converter crashed" in rows["edgevit_xs", "fp32"]["reason"]
    assert rows["edgevit_xxs", "fp32"]["status"] == "ok" and result.ok == 1 and len(rows) == 4
    assert exported == ["fp32"]


# ---------------------------------------------------------------------------------- store failures
@pytest.mark.parametrize("message", ["database or disk is full", "attempt to write a readonly database",
                                     "database is locked"])
def test_a_store_write_failure_stops_the_sweep_with_the_error_and_keeps_committed_rows(tmp_path, monkeypatch,
                                                                                        message):
    """Injected: the third row's INSERT fails as SQLite reports it. Two devices run in parallel."""
    import sqlite3

    from edgevit_deploy.device_bench.store import StoreWriteError

    crashes = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args))
    store = ResultStore(tmp_path / "store.sqlite")
    real = store._conn
    puts = []

    class Conn:
        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO measurements"):
                puts.append(1)
                if len(puts) == 3:
                    raise sqlite3.OperationalError(message)
            return real.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(real, name)

    store._conn = Conn()
    sweep, _ = make_sweep(tmp_path, SweepSpec(**SPEC, devices=["a", "b"]), store=store)
    with pytest.raises(StoreWriteError, match=f"{message}.*row\\(s\\) of this run were committed") as err:
        sweep.run()
    assert crashes == []                                     # no device thread died with a traceback
    store._conn = real
    # the other device may commit one more row between the failing INSERT and the stop (the injected fault
    # fails one INSERT only): the count the error reports is the count the store holds
    reported = int(re.search(r"\[(\d+) row\(s\) of this run were committed", str(err.value)).group(1))
    assert reported == store.count() in (2, 3) and all(r["status"] == "ok" for r in store.rows())
    assert len(puts) <= 4                                     # both devices stopped after the failure


# ------------------------------------------------------------------------------------- device faults
def test_a_drop_mid_sweep_is_retried_after_a_reconnect(tmp_path):
    link = Link(drop_on=(2,))                      # the second job's shell call drops once
    sweep, store = make_sweep(tmp_path, SweepSpec(**SPEC, devices=["phone"]), links={"phone": link})
    result = sweep.run()
    assert result.ok == 4 and result.failed == 0
    assert link.reconnects == 1
    assert store.count() == 4


def test_a_device_that_stays_away_fails_its_rows_and_the_other_device_goes_on(tmp_path):
    events = []

    class Events(SweepCallbacks):
        def on_device_failed(self, device, reason):
            events.append((device, reason))

    dead = Link(dead_after=2)                      # answers once, then never again
    spec = SweepSpec(**SPEC, devices=["flaky", "good"])
    sweep, store = make_sweep(tmp_path, spec, links={"flaky": dead}, callbacks=Events())
    result = sweep.run()
    rows = store.rows()
    assert len(rows) == 8 and len({(r["device"], r["target"], r["threads"]) for r in rows}) == 8
    good = [r for r in rows if r["device"] == "good"]
    flaky = [r for r in rows if r["device"] == "flaky"]
    assert all(r["status"] == "ok" for r in good)
    assert sum(r["status"] == "ok" for r in flaky) == 1
    failed = [r for r in flaky if r["status"] == "failed"]
    assert len(failed) == 3 and all("device dropped" in r["reason"] for r in failed)
    assert events and events[0][0] == "flaky"
    assert result.ok == 5


def test_an_unreachable_device_fails_all_its_rows_with_the_reason(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")

    def opener(dev):
        raise ConnectionRefusedError(f"{dev}: connection refused")

    sweep = Sweep(SweepSpec(**SPEC, devices=["gone"]), store, ArtifactCache(tmp_path / "c", exporter=fake_exporter),
                  opener=opener, runner_factory=lambda t, k: TimingRunner(), reconnect_attempts=2,
                  reconnect_delay_s=0.01)
    result = sweep.run()
    assert result.failed == 4
    assert all("unreachable" in r["reason"] and "refused" in r["reason"] for r in store.rows())


def test_devices_run_in_parallel_each_one_job_at_a_time(tmp_path):
    active: dict[str, int] = {}
    peak = {"total": 0, "per_device": 0}
    lock = threading.Lock()
    both_started = threading.Barrier(2, timeout=20)
    met = []

    def on_run(transport, job):
        with lock:
            active[transport.device_id] = active.get(transport.device_id, 0) + 1
            peak["total"] = max(peak["total"], sum(active.values()))
            peak["per_device"] = max(peak["per_device"], max(active.values()))
        if job.threads == 1 and job.target == "onnx":
            both_started.wait()                   # times out (BrokenBarrierError) if devices ran one after another
            met.append(transport.device_id)
        time.sleep(0.02)
        with lock:
            active[transport.device_id] -= 1

    sweep, store = make_sweep(tmp_path, SweepSpec(**SPEC, devices=["a", "b"]), runner=TimingRunner(on_run=on_run))
    result = sweep.run()
    assert result.ok == 8
    assert sorted(met) == ["a", "b"]
    assert peak == {"total": 2, "per_device": 1}


def test_throttle_flag_from_snapshots():
    assert throttled({"thermal_status": 0}, {"thermal_status": 2}) is True
    assert throttled({"cpu_max_freqs_khz": [2000, 2000]}, {"cpu_max_freqs_khz": [2000, 1500]}) is True
    assert throttled({"cpu_max_freqs_khz": [2000]}, {"cpu_max_freqs_khz": [2000]}) is False
    assert throttled({}, {}) is None
    assert throttled({"thermal_status": 2}, {"thermal_status": 2}) is True    # the one rule: moderate is throttled


class _ProbedTransport(FakeTransport):
    """Counts the sweep's thermal snapshots."""

    snapshots = 0

    def thermal_snapshot(self):
        _ProbedTransport.snapshots += 1
        return {"thermal_status": 0}


class _SelfProbingRunner(TimingRunner):
    records_thermal = True   # as the Android tool runners and the apps: they read the device's state themselves

    def run(self, transport, job, artifact):
        m = super().run(transport, job, artifact)
        m.thermal_before, m.thermal_after = {"thermal_status": 0}, {"thermal_status": 1}
        return m


@pytest.mark.parametrize("runner,probes", [(TimingRunner(), 2), (_SelfProbingRunner(), 0)])
def test_the_sweep_probes_only_runners_that_do_not_probe_themselves(tmp_path, runner, probes):
    """One probe before and one after each run: the sweep's own when the runner takes none, else none."""
    _ProbedTransport.snapshots = 0
    spec = SweepSpec(**{**SPEC, "targets": ["onnx"], "threads": [1]})
    with ResultStore(tmp_path / "s.sqlite") as store:
        result = Sweep(spec, store, ArtifactCache(tmp_path / "cache", exporter=fake_exporter),
                       opener=lambda dev: _ProbedTransport(dev, tmp_path / "dev"),
                       runner_factory=lambda target, kind: runner).run()
    assert result.ok == 1 and _ProbedTransport.snapshots == probes
    assert result.measurements[0].throttled is (probes == 0)   # the self-probing runner's status rose 0 -> 1


def test_local_rows_go_through_the_runner_table():
    from edgevit_deploy.device_bench.runners import get_runner, supported_pairs
    from edgevit_deploy.device_bench.runners.host import HostRunner
    from edgevit_deploy.device_bench.sweep import default_runner_factory
    from edgevit_deploy.device_bench.sweep_config import known_targets

    assert {(t, "local") for t in known_targets()} <= set(supported_pairs())
    assert ("executorch", "local") in supported_pairs()
    runner = default_runner_factory()("executorch", "local")
    assert isinstance(runner, HostRunner) and type(runner) is type(get_runner("onnx", "local"))


# --------------------------------------------------------------------------------- kill -9 and resume
_CHILD = textwrap.dedent("""\
    import sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_sweep import SPEC, TimingRunner, make_sweep
    from edgevit_deploy.device_bench.sweep_config import SweepSpec
    spec = SweepSpec(**{{**SPEC, "threads": [1, 2, 3, 4, 5, 6]}}, devices=["a", "b"])
    sweep, store = make_sweep(Path({tmp!r}), spec, runner=TimingRunner(sleep_s=0.05, iterations=4))
    sweep.run()
    """)


def test_kill_9_mid_sweep_then_resume_loses_and_duplicates_nothing(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(tests=str(Path(__file__).parent),
                                                                  tmp=str(tmp_path))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = tmp_path / "store.sqlite"
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and child.poll() is None:
        if db.exists():
            import sqlite3

            try:
                with sqlite3.connect(db) as c:
                    seen = c.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
            except sqlite3.OperationalError:
                seen = 0
            if seen >= 5:
                break
        time.sleep(0.05)
    assert child.poll() is None, f"the sweep ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    spec = SweepSpec(**{**SPEC, "threads": [1, 2, 3, 4, 5, 6]}, devices=["a", "b"])
    store = ResultStore(db)
    before = {(r["device"], r["target"], r["threads"]): r["timestamp"] for r in store.rows()}
    assert 5 <= len(before) < 24
    assert all(r["status"] == "ok" and r["median_ms"] > 0 for r in store.rows())
    sweep, _ = make_sweep(tmp_path, spec, store=store)
    result = sweep.run()
    assert result.skipped == len(before)
    assert len(result.measurements) == 24 - len(before)
    rows = store.rows()
    keys = [(r["device"], r["target"], r["threads"]) for r in rows]
    assert len(rows) == 24 and len(set(keys)) == 24
    assert all(r["status"] == "ok" for r in rows)
    assert {k: r["timestamp"] for k, r in zip(keys, rows) if k in before} == before
