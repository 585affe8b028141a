"""`edgevit-bench sweep --device ios:UDID` end to end through a stand-in `xcrun devicectl` (the devicectl
transport, Linux CI): install the app from an .ipa -> copy the job into the app's Documents -> `device
process launch` -> the Python reference iOS app runs the Core ML package (reference executor outputs, real
host timings) with the job's compute units -> heartbeat -> pull result + outputs -> parity against PyTorch
-> store; then the faults (app never launched, crash, corrupt result, iPhone detached, container full)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.device_helpers import kill_9_once_the_app_times

from edgevit_deploy.device_bench import api
from edgevit_deploy.device_bench.jobs import protocol as P
from edgevit_deploy.device_bench.testing.standin_devicectl import install_xcrun, make_iphone, write_fake_ipa
from edgevit_deploy.device_bench.transports import open_transport, parse_device
from edgevit_deploy.device_bench.errors import DeviceIdError, DeviceNotFoundError

IMG = 64
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "devicectl"
DEVICE = json.loads((FIXTURES / "iphone_device.json").read_text())
UDID = DEVICE["hardwareProperties"]["udid"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


@pytest.fixture
def iphone(tmp_path, monkeypatch) -> Path:
    """A sandboxed iPhone (the fixture's device object) and `xcrun` pointing at the stand-in devicectl."""
    root = tmp_path / "iphones"
    folder = make_iphone(root, DEVICE)
    monkeypatch.setenv("EDGEVIT_XCRUN", str(install_xcrun(tmp_path / "bin", root)))
    return folder


@pytest.fixture(scope="module")
def ipa(tmp_path_factory) -> Path:
    return write_fake_ipa(tmp_path_factory.mktemp("ipa") / "EdgeVitBench.ipa", P.IOS_BUNDLE_ID, P.APP_VERSION)


def bench(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "250"})


def sweep_args(store: Path, cache: Path, delegates: str, *extra: str) -> list[str]:
    return ["sweep", "--device", f"ios:{UDID}", "--models", "edgevit_xxs", "--targets", "coreml",
            "--precision", "fp16", "--delegates", delegates, "--img-size", str(IMG), "--warmup", "0",
            "--iterations", "3", "--store", str(store), "--cache-dir", str(cache), "--timeout", "300", *extra]


def test_sweep_through_devicectl_end_to_end(iphone, ipa, tmp_path, cache):
    """No app on the phone: --ios-app installs it; two compute units; rows with on-device parity, compile
    time apart, energy unavailable; the second launch finds the phone `serious`: that row is throttled."""
    (iphone / "thermal").write_text("nominal\nserious")
    store = tmp_path / "ios.sqlite"
    proc = bench(sweep_args(store, cache, "cpu,ane", "--ios-app", str(ipa)), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 measured, 0 failed" in proc.stdout
    rows = {r["delegate"]: r for r in json.loads(api.export_rows(store, "json"))}
    assert sorted(rows) == ["ane", "cpu"]
    for delegate, units in (("cpu", "cpu_only"), ("ane", "cpu_and_neural_engine")):
        r = rows[delegate]
        assert r["status"] == "ok", r["reason"]
        assert r["device"] == f"ios:{UDID}" and len(r["latencies_ms"]) == 3 and r["init_ms"] > 0
        assert r["runtime"].startswith("app: coreml-reference") and units in r["runtime"]
        assert r["energy_mj"] is None and "unavailable on iOS" in r["energy_note"]
        assert r["throttled"] is (delegate == "ane")
        assert r["thermal_after"]["thermal_state"] == ("serious" if delegate == "ane" else "nominal")
        assert any("compiled the package on the device" in n for n in r["notes"]), r["notes"]
        assert any("iPhone15,2" in n and "iOS 18.4.1" in n for n in r["notes"]), r["notes"]
        parity = r["parity"]
        assert parity["executed"] and parity["passed"], parity
        assert parity["num_inputs"] >= 3 and 0.99 < parity["cosine"] <= 1.0 + 1e-6
    job = json.loads(next((iphone / "apps" / P.IOS_BUNDLE_ID / "data/Documents/jobs").glob(
        "coreml-fp16-ane-*/job.json")).read_text())
    assert job["runtime"] == {"name": "coreml", "delegate": "cpu_and_neural_engine", "threads": 1}


def one_row(tmp_path: Path, cache: Path, delegate: str = "cpu", **overrides) -> dict:
    store = tmp_path / f"s-{delegate}.sqlite"
    spec = api.SweepSpec(models=["edgevit_xxs"], targets=["coreml"], precisions=["fp16"], delegates=[delegate],
                         devices=[f"ios:{UDID}"], img_size=IMG, warmup=0, iterations=2)
    api.sweep(spec, store=store, cache_dir=cache,
              runner_overrides={"timeout_s": 120, "launch_timeout_s": 30, **overrides})
    [row] = api.read_rows(store)
    return row


def test_app_missing_without_ios_app_says_what_to_do(iphone, tmp_path, cache):
    row = one_row(tmp_path, cache)
    assert row["status"] == "failed"
    assert "is not installed" in row["reason"] and "--ios-app PATH.ipa" in row["reason"]


@pytest.mark.parametrize("fault, expected", [
    ("nolaunch", "the app never started: no heartbeat 4 s after the launch"),
    ("crash:load", "the app process died without a result"),
    ("hang:load", "the heartbeat stopped"),
    ("corrupt", "corrupt result from the app"),
])
def test_app_faults(iphone, ipa, tmp_path, cache, fault, expected):
    (iphone / "fault").write_text(fault)
    row = one_row(tmp_path, cache, ios_app=ipa, launch_timeout_s=4, heartbeat_timeout_s=4)
    assert row["status"] == "failed" and expected in row["reason"], row["reason"]


def test_full_container_is_a_failed_row_with_the_reason(iphone, ipa, tmp_path, cache):
    (iphone / "quota").write_text("2000")
    row = one_row(tmp_path, cache, ios_app=ipa)
    assert row["status"] == "failed"
    assert "cannot copy job" in row["reason"] and "isn’t enough space" in row["reason"], row["reason"]


def test_detached_iphone_fails_its_rows_with_the_reason(iphone, ipa, tmp_path, cache):
    (iphone / "attached").unlink()
    row = one_row(tmp_path, cache, ios_app=ipa)
    assert row["status"] == "failed" and "device was not found" in row["reason"], row["reason"]


def test_ios_device_ids(iphone):
    assert parse_device(f"ios:{UDID}").serial == UDID
    with pytest.raises(DeviceIdError, match="UDID"):
        parse_device("ios:a/b")
    transport = open_transport("ios:")        # the only attached iPhone
    info = transport.device_info()
    assert (transport.udid, info.model, info.os_version, info.kind) == (UDID, "iPhone15,2", "iOS 18.4.1", "ios")
    (iphone / "attached").unlink()
    with pytest.raises(DeviceNotFoundError, match="0 iPhones attached"):
        open_transport("ios:")


def test_devices_lists_the_iphone(iphone, tmp_path):
    proc = bench(["devices", "--no-probe"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(l for l in proc.stdout.splitlines() if UDID[:12] in l)
    assert "ios" in line and "iPhone15,2" in line and "iOS 18.4.1" in line, proc.stdout


def test_kill_9_of_the_sweep_then_resume(iphone, ipa, tmp_path, cache):
    """kill -9 of the host mid-job: the app goes on on the phone; the resumed sweep follows it or pulls its
    result: one row, the job run once."""
    store = tmp_path / "k.sqlite"
    docs = iphone / "apps" / P.IOS_BUNDLE_ID / "data" / "Documents"
    args = [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", *sweep_args(store, cache, "cpu", "--ios-app", str(ipa))]
    args[args.index("--iterations") + 1] = "150"
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_9_once_the_app_times(proc, docs)
    resumed = bench(args[3:], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    [row] = api.read_rows(store)
    assert row["status"] == "ok" and len(row["latencies_ms"]) == 150 and row["parity"]["passed"], row["reason"]
    log = (iphone / "apps" / P.IOS_BUNDLE_ID / "app.log").read_text()
    assert log.count("jobs run") == 1   # the job ran once, on the phone, across the host's kill


def test_a_devicectl_call_that_never_returns_raises_device_timeout(tmp_path, monkeypatch):
    """DeviceTimeoutError is what a device operation that times out raises (here: xcrun devicectl hanging)."""
    from edgevit_deploy.device_bench.errors import DeviceTimeoutError
    from edgevit_deploy.device_bench.transports.devicectl import XCRUN_ENV, run_devicectl

    hang = tmp_path / "xcrun"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    monkeypatch.setenv(XCRUN_ENV, str(hang))
    with pytest.raises(DeviceTimeoutError, match="did not finish within 0.5 s") as caught:
        run_devicectl(["list", "devices"], device="ios:00008110-000A", timeout=0.5)
    assert caught.value.device == "ios:00008110-000A" and caught.value.timeout_s == 0.5
