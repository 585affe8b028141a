"""Faults on the app path, each through a stand-in phone and the real app runner: app missing or outdated,
the app crashing / OOM-killed / hanging mid-job, a corrupt result, the device dropping mid-pull, and a
`kill -9` of the sweep followed by a resume that picks up the result the app wrote meanwhile."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.device_helpers import kill_9_once_the_app_times

from edgevit_deploy.device_bench import api
from edgevit_deploy.device_bench.artifacts import ArtifactCache
from edgevit_deploy.device_bench.errors import DeviceDisconnectedError
from edgevit_deploy.device_bench.jobs import protocol as P
from edgevit_deploy.device_bench.runners import RunnerConfig
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.sweep import Sweep, default_runner_factory, open_device
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
from edgevit_deploy.device_bench.testing.standin_app import fault_file, install_apk, write_fake_apk

IMG = 64


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


@pytest.fixture(autouse=True)
def adb_key(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVIT_ADB_KEY", str(tmp_path / "adbkey"))


@pytest.fixture(scope="module")
def apk(tmp_path_factory) -> Path:
    return write_fake_apk(tmp_path_factory.mktemp("apk") / "app.apk", P.APP_PACKAGE, P.APP_VERSION)


def spec(device: str, iterations: int = 5) -> api.SweepSpec:
    return api.SweepSpec(models=["edgevit_xxs"], targets=["onnx"], devices=[device], img_size=IMG, warmup=1,
                         iterations=iterations, runner="app")


def one_row(device: str, tmp_path: Path, cache: Path, iterations: int = 5, **overrides) -> dict:
    store = tmp_path / "s.sqlite"
    api.sweep(spec(device, iterations), store=store, cache_dir=cache,
              runner_overrides={"timeout_s": 120, "launch_timeout_s": 60, **overrides})
    [row] = api.read_rows(store)
    return row


def phone(tmp_path: Path, apk: Path | None) -> StandinAdbd:
    dev = StandinAdbd(tmp_path / "phone")
    if apk is not None:
        install_apk(dev.root, apk.read_bytes())
    return dev


def test_app_not_installed_or_outdated(apk, tmp_path, cache):
    with phone(tmp_path, None) as dev:
        row = one_row(f"adb:{dev.address}", tmp_path, cache)
        assert row["status"] == "failed" and "it is not installed" in row["reason"] and "--android-app" in row["reason"]
        install_apk(dev.root, write_fake_apk(tmp_path / "old.apk", P.APP_PACKAGE, "0.0.9").read_bytes())
        (tmp_path / "s.sqlite").unlink()
        row = one_row(f"adb:{dev.address}", tmp_path, cache)
        assert row["status"] == "failed" and "version 0.0.9 is installed" in row["reason"]
        (tmp_path / "s.sqlite").unlink()
        row = one_row(f"adb:{dev.address}", tmp_path, cache, android_app=tmp_path / "old.apk")
        assert row["status"] == "failed" and "installed version 0.0.9" in row["reason"]


@pytest.mark.parametrize("fault, expected", [
    ("crash:timing", "the app process died without a result (job"),
    ("oom:timing", "killed by the low-memory killer"),
    ("hang:timing", "the heartbeat stopped for"),
    ("corrupt", "corrupt result from the app"),
])
def test_app_faults_are_failed_rows_with_reasons(fault, expected, apk, tmp_path, cache):
    with phone(tmp_path, apk) as dev:
        fault_file(dev.root).write_text(fault)
        t0 = time.monotonic()
        row = one_row(f"adb:{dev.address}", tmp_path, cache, heartbeat_timeout_s=4)
        elapsed = time.monotonic() - t0
    assert row["status"] == "failed" and expected in row["reason"], row["reason"]
    assert row["runner"] == "app" and row["latencies_ms"] == [] and not row["parity"]
    if fault.startswith("hang"):
        assert "phase timing" in row["reason"] and "still running (hung)" in row["reason"]
        assert elapsed < 90   # the heartbeat timeout, not the job timeout, ended the wait


def test_outputs_the_phone_changed_fail_the_parity_column(apk, tmp_path, cache):
    """A delegate that silently computes something else: the timings are fine (status ok), the parity column
    says FAIL with the validator's figures, and the row's notes say so."""
    with phone(tmp_path, apk) as dev:
        fault_file(dev.root).write_text("perturb")
        row = one_row(f"adb:{dev.address}", tmp_path, cache)
    assert row["status"] == "ok" and len(row["latencies_ms"]) == 5
    parity = row["parity"]
    assert parity["executed"] and not parity["passed"] and parity["max_abs"] > 0.4
    assert any("max abs error" in f for f in parity["failures"])
    assert any(n.startswith("on-device outputs differ from PyTorch") for n in row["notes"])


def test_device_dropped_mid_pull_recovers_the_result(apk, tmp_path, cache):
    """The link drops while the result is pulled: the sweep reconnects, finds the job's result already on
    the phone (no second run) and stores the row."""
    class DropOncePull:
        dropped = 0

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def pull(self, remote, local):
            if remote.endswith(".npy") and not DropOncePull.dropped:
                DropOncePull.dropped += 1
                raise DeviceDisconnectedError(self.inner.device_id, "fault: link reset mid-pull")
            return self.inner.pull(remote, local)

    with phone(tmp_path, apk) as dev:
        device = f"adb:{dev.address}"
        config = RunnerConfig.from_env(timeout_s=120)
        with ResultStore(tmp_path / "s.sqlite") as store:
            result = Sweep(spec(device), store, ArtifactCache(cache), opener=lambda d: DropOncePull(open_device(d)),
                           runner_factory=default_runner_factory(config), reconnect_delay_s=0.1).run()
        log = (dev.root / "data/standin/app.log").read_text()
    [m] = result.measurements
    assert DropOncePull.dropped == 1 and m.status == "ok", m.reason
    assert m.parity["passed"] and len(m.latencies_ms) == 5
    assert log.count("jobs run") == 1   # the app ran the job once; the retry only pulled


def test_kill_9_of_the_sweep_then_resume(apk, tmp_path, cache):
    """kill -9 of the host mid-job: the app finishes on the phone; the resumed sweep pulls its result."""
    with phone(tmp_path, apk) as dev:
        device = f"adb:{dev.address}"
        store = tmp_path / "k.sqlite"
        files = dev.root / "sdcard/Android/data" / P.APP_PACKAGE / "files"
        args = [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", "sweep", "--device", device, "--models",
                "edgevit_xxs", "--targets", "onnx", "--img-size", str(IMG), "--warmup", "1", "--iterations", "400",
                "--store", str(store), "--cache-dir", str(cache), "--runner", "app", "--timeout", "300"]
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ))
        kill_9_once_the_app_times(proc, files)
        resumed = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        log = (dev.root / "data/standin/app.log").read_text()
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    [row] = api.read_rows(store)
    assert row["status"] == "ok" and len(row["latencies_ms"]) == 400 and row["parity"]["passed"]
    assert log.count("jobs run") == 1   # the job ran once, on the phone, across the host's kill
