"""`edgevit-bench sweep` end to end against stand-in adbds (no phone): one straight to adbd with adb-shell
(``adb:127.0.0.1:PORT``), one through the real ``adb`` client's server (``adb:SERIAL@HOST:PORT``).
The artifact is really exported (EdgeViT-XXS, ONNX, 64x64); the stand-in onnxruntime_perf_test runs it
in onnxruntime on the host and prints the real tool's output format around the real timings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit_deploy.device_bench.api import export_rows
from edgevit_deploy.device_bench.testing.adb_client import AdbServer, adb_binary
from edgevit_deploy.device_bench.testing.fake_runners import write_fake_tools
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
from edgevit_deploy.device_bench.transports.adb_shell import load_or_create_key

IMG = 64


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    return write_fake_tools(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Under pytest's base temp dir: shared with test_bench_local.py, so the model is exported once."""
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


def _sweep(devices: list[str], tools, tmp_path: Path, cache: Path, env: dict[str, str]) -> list[dict]:
    store = tmp_path / "adb.sqlite"
    cmd = [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", "sweep", "--devices", ",".join(devices),
           "--models", "edgevit_xxs", "--targets", "onnx", "--threads", "1,2", "--img-size", str(IMG),
           "--warmup", "1", "--iterations", "6", "--store", str(store), "--ort-perf-test",
           str(tools.onnxruntime_perf_test), "--timeout", "300", "--cache-dir", str(cache)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{2 * len(devices)} measured, 0 failed" in proc.stdout
    return json.loads(export_rows(store, "json"))


def test_one_sweep_drives_two_standin_phones_through_both_adb_clients(tools, tmp_path, cache):
    """Phone A straight to adbd with adb-shell (``adb:127.0.0.1:PORT``); phone B through the real ``adb``
    client's server (``adb:SERIAL@127.0.0.1:SERVER_PORT``); both in one sweep, in parallel."""
    if adb_binary() is None:
        pytest.fail("the `adb` binary is not on PATH: install Debian's adb package (apt-get install -y adb)")
    # authentication on, as the stand-in's command line runs it: each phone trusts its client's key only
    # (adb-shell's key made up front; the adb server makes ~/.android/adbkey(.pub) in its HOME when it starts)
    load_or_create_key(tmp_path / "adbkey")
    with AdbServer(home=tmp_path / "adb-home") as server, \
            StandinAdbd(tmp_path / "phone-a", auth=True, authorized_keys=[tmp_path / "adbkey.pub"]) as a, \
            StandinAdbd(tmp_path / "phone-b", auth=True,
                        authorized_keys=[tmp_path / "adb-home" / ".android" / "adbkey.pub"]) as b:
        direct = f"adb:{a.address}"
        via_server = f"adb:{server.connect(b.address)}@127.0.0.1:{server.port}"
        env = {**server.env, "EDGEVIT_ADB_KEY": str(tmp_path / "adbkey")}
        rows = _sweep([direct, via_server], tools, tmp_path, cache, env)
    for device in (direct, via_server):
        mine = [r for r in rows if r["device"] == device]
        assert sorted(r["threads"] for r in mine) == [1, 2], device
        for r in mine:
            assert r["status"] == "ok" and r["runtime"].startswith("onnxruntime_perf_test")
            assert r["device_info"]["model"] == "Standin Phone" and r["device_info"]["kind"] == "adb"
            assert len(r["latencies_ms"]) == 6 and 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
            assert r["artifact_sha256"] and r["model_size_bytes"] > 100_000
    # the artifact really went through the sync protocol into each phone's sandbox
    assert list((tmp_path / "phone-a").rglob("*.onnx")) and list((tmp_path / "phone-b").rglob("*.onnx"))
    assert a.refused_keys == [] and b.refused_keys == [] and a.public_keys == [] and b.public_keys == []
