"""`edgevit-bench sweep --runner app` end to end through stand-in adbds, with both adb clients: export ->
install the app -> push the job -> am start -> the Python reference app runs it (host runtimes, real
timings, real outputs) -> heartbeat -> pull result + outputs -> on-device parity against PyTorch -> store
-> report. Then `--runner instrument` and `doctor` on the same kind of device."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit_deploy.device_bench.api import export_rows
from edgevit_deploy.device_bench.jobs import protocol as P
from edgevit_deploy.device_bench.testing.adb_client import AdbServer, adb_binary
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
from edgevit_deploy.device_bench.testing.standin_app import write_fake_apk

IMG = 64


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Under pytest's base temp dir: shared with the other bench tests, so the model is exported once."""
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


@pytest.fixture(scope="module")
def apks(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("apks")
    return {"app": write_fake_apk(d / "app-release.apk", P.APP_PACKAGE, P.APP_VERSION),
            "old": write_fake_apk(d / "app-old.apk", P.APP_PACKAGE, "0.0.9"),
            "test": write_fake_apk(d / "app-release-androidTest.apk", P.APP_TEST_PACKAGE, P.APP_VERSION,
                                   instrumentation="androidx.test.runner.AndroidJUnitRunner")}


def bench(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run([sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def sweep_args(devices: list[str], store: Path, cache: Path, *extra: str) -> list[str]:
    return ["sweep", "--devices", ",".join(devices), "--models", "edgevit_xxs", "--targets", "onnx",
            "--img-size", str(IMG), "--warmup", "1", "--iterations", "5", "--store", str(store),
            "--cache-dir", str(cache), "--timeout", "300", *extra]


def test_runner_app_end_to_end_with_both_adb_clients(apks, tmp_path, cache):
    """Phone A (adb-shell, straight to adbd) has no app: --android-app installs it (push + pm install).
    Phone B (Debian's adb through its server) gets the app with `adb install`, the streamed
    `exec:cmd package install -S` form; the sweep then finds it at the right version."""
    if adb_binary() is None:
        pytest.fail("the `adb` binary is not on PATH: install Debian's adb package (apt-get install -y adb)")
    with StandinAdbd(tmp_path / "phone-a") as a, StandinAdbd(tmp_path / "phone-b") as b, \
            AdbServer(home=tmp_path / "adb-home") as server:
        direct = f"adb:{a.address}"
        serial = server.connect(b.address)
        installed = server.run("-s", serial, "install", str(apks["app"]))
        assert "Success" in installed.stdout, installed.stdout + installed.stderr
        assert (tmp_path / "phone-b/data/app").is_dir() and not (tmp_path / "phone-a/data/app").exists()
        via_server = f"adb:{serial}@127.0.0.1:{server.port}"
        env = {**server.env, "EDGEVIT_ADB_KEY": str(tmp_path / "adbkey")}
        store = tmp_path / "app.sqlite"
        proc = bench(sweep_args([direct, via_server], store, cache, "--runner", "app", "--android-app",
                                str(apks["app"]), "--out", str(tmp_path / "report")), tmp_path, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "2 measured, 0 failed" in proc.stdout
    assert proc.stdout.count("pass max") == 2   # the table's parity column
    rows = json.loads(export_rows(store, "json"))
    assert sorted(r["device"] for r in rows) == sorted([direct, via_server])
    for r in rows:
        assert r["status"] == "ok" and r["runner"] == "app", r["reason"]
        assert r["runtime"].startswith("app: onnxruntime") and len(r["latencies_ms"]) == 5
        assert 0 < r["min_ms"] <= r["median_ms"] and r["init_ms"] > 0 and r["first_ms"] > 0
        # on-device parity: the app's outputs of the fixed inputs against PyTorch, through the one validator
        parity = r["parity"]
        assert parity["executed"] and parity["passed"], parity
        assert parity["max_abs"] < 1e-4 and parity["num_inputs"] >= 3
        assert parity["top1_agreement"] == 1.0 and parity["executor"].startswith("on-device app (onnxruntime")
        # energy from the battery readings the app sampled (the stand-in's power_supply files)
        assert r["energy_mj"] > 0 and r["power_w"] > 0 and "BatteryManager" in r["energy_note"]
    assert (tmp_path / "report/report.html").is_file()
    # the job folder (model, inputs) is cleaned up on the phone; the result stays for a resumed sweep
    for phone in ("phone-a", "phone-b"):
        files = tmp_path / phone / "sdcard/Android/data" / P.APP_PACKAGE / "files"
        assert not list((files / "jobs").iterdir()) and len(list((files / "results").glob("*.json"))) == 1


def test_runner_instrument_and_doctor(apks, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        device = f"adb:{dev.address}"
        env = {"EDGEVIT_ADB_KEY": str(tmp_path / "adbkey")}
        x86 = tmp_path / "benchmark_model"   # an ELF header for x86_64 (e_machine 62): the wrong ABI for the phone
        x86.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (62).to_bytes(2, "little") + bytes(100))
        before = bench(["doctor", "--device", device, "--benchmark-model", str(x86)], tmp_path, env, timeout=120)
        assert before.returncode == 0, before.stderr
        assert "org.edgevit.bench is not installed" in before.stdout and "--android-app" in before.stdout
        assert "built for x86_64, the device is arm64-v8a" in before.stdout
        assert "no binary configured" in before.stdout   # onnxruntime_perf_test
        store = tmp_path / "i.sqlite"
        # the instrumentation package is missing: a failed row that says how to install it
        proc = bench(sweep_args([device], store, cache, "--runner", "instrument", "--android-app",
                                str(apks["app"])), tmp_path, env)
        assert proc.returncode == 1 and "instrumentation" in proc.stdout + proc.stderr
        dev_root = tmp_path / "phone"
        from edgevit_deploy.device_bench.testing.standin_app import install_apk

        install_apk(dev_root, apks["test"].read_bytes())
        proc = bench(sweep_args([device], store, cache, "--runner", "instrument"), tmp_path, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        after = bench(["doctor", "--device", device], tmp_path, env, timeout=120)
    [row] = json.loads(export_rows(store, "json"))
    assert row["status"] == "ok" and row["runner"] == "instrument" and row["parity"]["passed"]
    assert row["runtime"].startswith("instrument: ")
    assert f"{P.APP_PACKAGE} {P.APP_VERSION}" in after.stdout
    assert "not installed" not in after.stdout.split("instrument")[-1]
