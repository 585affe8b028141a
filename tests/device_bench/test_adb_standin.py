"""Both adb clients (adb-shell straight to adbd, and the real `adb` binary's server through adbutils) drive
the stand-in device: file transfer, shell exit codes, free space, full benchmark runs of real models through
the Android runners and the stand-in tools, and the faults (dropped push, timeout, garbage, device full)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edgevit_deploy.device_bench.errors import DeviceDisconnectedError, DeviceFullError, DeviceNotFoundError
from edgevit_deploy.device_bench.runners import RunnerConfig, get_runner
from edgevit_deploy.device_bench.testing.adb_client import AdbServer, adb_binary
from edgevit_deploy.device_bench.testing.fake_runners import write_fake_tools
from edgevit_deploy.device_bench.testing.standin_adbd import Faults, StandinAdbd
from edgevit_deploy.device_bench.transports import list_devices, open_transport
from edgevit_deploy.device_bench.transports.adb_shell import AdbShellTransport
from edgevit_deploy.device_bench.types import BenchJob

IMG = 64
NASTY = "/data/local/tmp/edgevit/my model's $(x) `y` & z;.bin"
CLIENTS = ["adb-shell", "adb-server"]


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """A small real model exported with torch.onnx and litert_torch at 64x64."""
    import torch

    out = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    x = torch.randn(1, 3, IMG, IMG)
    torch.onnx.export(net, (x,), str(out / "tiny.onnx"), dynamo=False, opset_version=17)
    import litert_torch

    litert_torch.convert(net, (x,)).export(str(out / "tiny.tflite"))
    return {"onnx": out / "tiny.onnx", "tflite": out / "tiny.tflite"}


@pytest.fixture(scope="session")
def tools(tmp_path_factory):
    return write_fake_tools(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="session")
def adb_key(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys") / "adbkey"   # generated on first connect


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory):
    if adb_binary() is None:
        pytest.fail("the `adb` binary is not on PATH: install Debian's adb package (apt-get install -y adb); "
                    "CI's setup script does this. These tests drive the stand-in device with the real adb client.")
    with AdbServer(home=tmp_path_factory.mktemp("adb-home")) as server:
        yield server


@pytest.fixture()
def device(tmp_path):
    with StandinAdbd(tmp_path / "phone", faults=Faults()) as dev:
        yield dev


def _open(client: str, dev: StandinAdbd, adb_key: Path, request: pytest.FixtureRequest, **options):
    if client == "adb-shell":
        return open_transport(f"adb:{dev.address}", key_path=adb_key, **options)
    server = request.getfixturevalue("adb_server")
    serial = server.connect(dev.address)
    return open_transport(f"adb:{serial}@127.0.0.1:{server.port}", **options)


@pytest.fixture(params=CLIENTS)
def transport(request, device, adb_key):
    t = _open(request.param, device, adb_key, request)
    yield t
    t.close()
    if request.param == "adb-server":
        request.getfixturevalue("adb_server").run("disconnect", device.address, check=False)


def _job(transport, target: str, **kw) -> BenchJob:
    base = dict(model="tiny", target=target, precision="fp32", threads=1, device=transport.device_id, img_size=IMG,
                warmup=2, iterations=12)
    base.update(kw)
    return BenchJob(**base)


def _config(tools, **kw) -> RunnerConfig:
    return RunnerConfig(benchmark_model=tools.benchmark_model, onnxruntime_perf_test=tools.onnxruntime_perf_test,
                        timeout_s=kw.pop("timeout_s", 120), **kw)


# ---------------------------------------------------------------------------------------- transports
def test_push_pull_exists_shell_free_space(transport, device, tmp_path):
    payload = os.urandom(300_000)
    local = tmp_path / "in put.bin"
    local.write_bytes(payload)
    transport.shell(f"mkdir -p {transport.work_dir}", timeout=30)
    assert not transport.exists(NASTY)
    transport.push(local, NASTY)
    assert transport.exists(NASTY)
    assert device.host_path(NASTY).read_bytes() == payload          # the sandbox got the exact bytes
    back = tmp_path / "back" / "out.bin"
    transport.pull(NASTY, back)
    assert back.read_bytes() == payload
    ok = transport.shell("echo out; echo err >&2; exit 3", timeout=30)
    assert ok.exit_code == 3 and "out" in ok.stdout and "err" in ok.stdout + ok.stderr
    assert transport.shell("true", timeout=30).ok
    listed = transport.shell(f"wc -c < {__import__('shlex').quote(NASTY)}", timeout=30)
    assert listed.ok and int(listed.stdout.strip()) == len(payload)
    free = transport.free_space(transport.work_dir)
    stat = os.statvfs(device.root)
    assert abs(free - stat.f_bavail * stat.f_frsize) < 0.05 * free + 64 * 2**20
    info = transport.device_info()
    assert info.model == device.props["ro.product.model"] and info.abi == device.props["ro.product.cpu.abi"]
    assert len(info.cpu_max_freqs_khz) == 8 and "schedutil" in info.cpu_governor
    snap = transport.thermal_snapshot()
    assert snap["thermal_status"] == 0 and snap["battery_level"] == 87.0
    with pytest.raises(FileNotFoundError):
        transport.pull("/data/local/tmp/does-not-exist", tmp_path / "x")


@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_full_benchmark_run(transport, models, tools, target):
    artifact = models[target]
    job = _job(transport, target, threads=2, cpu_mask="f0" if target == "onnx" else "big")
    m = get_runner(target, "adb", _config(tools)).run(transport, job, artifact)
    assert m.status == "ok", (m.reason, m.raw_output[-2000:])
    assert m.artifact_sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert m.model_size_bytes == artifact.stat().st_size
    assert m.device is not None and m.device.model == "Standin Phone"
    assert m.init_ms > 0 and m.first_ms is not None and m.peak_memory_mb > 0
    assert 0 < m.min_ms <= m.mean_ms and m.std_ms >= 0
    assert m.thermal_before and m.thermal_after and m.throttled is False and m.battery_level == 87.0
    if target == "onnx":   # per-run latencies from the result file -> every statistic computed from them
        assert len(m.latencies_ms) == job.iterations
        assert m.min_ms <= m.median_ms <= m.p90_ms <= m.p99_ms <= max(m.latencies_ms)
    else:                   # benchmark_model reports summaries only
        assert m.median_ms is not None and m.min_ms <= m.median_ms
    assert m.runtime.startswith("benchmark_model" if target == "tflite" else "onnxruntime_perf_test")
    if job.cpu_mask == "big":   # the stand-in has 4 little + 4 big cores
        assert "taskset mask f0 (big cores)" in m.notes


def test_failed_delegate_is_a_failed_row(device, adb_key, models, tools, request):
    t = _open("adb-shell", device, adb_key, request)
    m = get_runner("tflite", "adb", _config(tools)).run(t, _job(t, "tflite", delegate="gpu"), models["tflite"])
    assert m.status == "failed" and "Failed to apply GPU delegate" in m.reason and m.mean_ms is None
    m = get_runner("onnx", "adb", _config(tools)).run(t, _job(t, "onnx", delegate="nnapi"), models["onnx"])
    assert m.status == "failed" and "nnapi" in m.reason
    m = get_runner("onnx", "adb", _config(tools)).run(t, _job(t, "onnx", delegate="hexagon"), models["onnx"])
    assert m.status == "failed" and "no delegate 'hexagon'" in m.reason


def test_energy_per_inference_on_the_standin(device, adb_key, models, tools, request):
    t = _open("adb-shell", device, adb_key, request)
    cfg = _config(tools, energy=True, energy_idle_s=1.0, top1=75.0)
    # long enough for the 0.1 s sampler to see many samples however fast the host is (~16 us per run: ~1 s)
    m = get_runner("onnx", "adb", cfg).run(t, _job(t, "onnx", iterations=60000), models["onnx"])
    assert m.status == "ok", m.reason
    assert m.power_w is not None and m.power_w > 0        # the stand-in tool draws more than idle
    assert m.energy_mj == pytest.approx(m.power_w * m.median_ms)
    assert any(n.startswith("efficiency:") for n in m.notes)


def test_charging_device_reports_no_energy(device, adb_key, models, tools, request):
    (device.root / ".standin/dumpsys/battery").write_text("  AC powered: false\n  USB powered: true\n  status: 2\n"
                                                          "  level: 55\n  scale: 100\n")
    t = _open("adb-shell", device, adb_key, request)
    m = get_runner("onnx", "adb", _config(tools, energy=True, energy_idle_s=0.5)).run(t, _job(t, "onnx"),
                                                                                     models["onnx"])
    assert m.status == "ok" and m.energy_mj is None and "charging" in m.energy_note
    assert any("charging" in n for n in m.notes)


# -------------------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("client", CLIENTS)
def test_connection_dropped_mid_push_then_reconnect(client, device, adb_key, tmp_path, request):
    # adb-shell sees a dead link only when a read times out: keep that short here
    t = _open(client, device, adb_key, request, auto_reconnect=0, io_timeout_s=3)
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(600_000))
    t.shell("mkdir -p /data/local/tmp/edgevit", timeout=30)
    device.faults.drop_after_bytes = 100_000
    with pytest.raises(DeviceDisconnectedError, match="connection lost|reconnect"):
        t.push(local, "/data/local/tmp/edgevit/big.bin")
    assert device.faults.drop_after_bytes is None          # the fault fired
    t.reconnect()
    t.push(local, "/data/local/tmp/edgevit/big.bin")
    assert device.host_path("/data/local/tmp/edgevit/big.bin").read_bytes() == local.read_bytes()
    assert t.shell("echo back", timeout=30).stdout.strip() == "back"


def test_auto_reconnect_retries_a_dropped_push(device, adb_key, tmp_path, request):
    t = _open("adb-shell", device, adb_key, request, auto_reconnect=1, io_timeout_s=3)
    local = tmp_path / "f.bin"
    local.write_bytes(os.urandom(200_000))
    device.faults.drop_after_bytes = 50_000
    t.push(local, "/data/local/tmp/f.bin")
    assert device.host_path("/data/local/tmp/f.bin").read_bytes() == local.read_bytes()


@pytest.mark.parametrize("client", CLIENTS)
def test_runner_timeout_is_a_failed_row(client, device, adb_key, models, tools, request):
    t = _open(client, device, adb_key, request)
    device.faults.delay_s, device.faults.delay_match = 30, "--graph="
    m = get_runner("tflite", "adb", _config(tools, timeout_s=3)).run(t, _job(t, "tflite"), models["tflite"])
    assert m.status == "failed" and "timed out" in m.reason
    device.faults.delay_s = 0
    assert t.shell("echo alive", timeout=30).stdout.strip() == "alive"   # the transport still works


def test_malformed_runner_output_is_a_failed_row(device, adb_key, models, tools, request):
    t = _open("adb-shell", device, adb_key, request)
    device.faults.garbage_match = "--graph="
    m = get_runner("tflite", "adb", _config(tools)).run(t, _job(t, "tflite"), models["tflite"])
    assert m.status == "failed" and "no 'Inference timings' summary" in m.reason and m.mean_ms is None


@pytest.mark.parametrize("client", CLIENTS)
def test_device_full(client, device, adb_key, models, tools, tmp_path, request):
    t = _open(client, device, adb_key, request)
    device.faults.device_full = True
    local = tmp_path / "m.bin"
    local.write_bytes(os.urandom(50_000))
    with pytest.raises(DeviceFullError) as err:
        t.push(local, "/data/local/tmp/m.bin")
    assert err.value.needed_bytes == 50_000 and err.value.free_bytes is not None and err.value.free_bytes < 50_000
    assert "not enough space" in str(err.value)
    with pytest.raises(DeviceFullError):
        get_runner("onnx", "adb", _config(tools)).run(t, _job(t, "onnx"), models["onnx"])


# ----------------------------------------------------------------------------------- auth, discovery
def test_auth_with_rsa_key(tmp_path):
    """A fresh key (generated by the transport on first use) is offered with AUTH RSAPUBLICKEY; a stand-in that
    accepts new keys (like tapping "Allow") records it. Signature checks: tests/device_bench/test_adb_standin_auth.py."""
    with StandinAdbd(tmp_path / "phone", auth=True, accept_new_keys=True) as dev:
        t = AdbShellTransport("127.0.0.1", dev.port, key_path=tmp_path / "k" / "adbkey").connect()
        assert t.shell("echo ok", timeout=30).stdout.strip() == "ok"
        assert dev.public_keys and (tmp_path / "k" / "adbkey.pub").is_file()
        assert dev.public_keys[0].split()[0] == (tmp_path / "k" / "adbkey.pub").read_text().split()[0]


def test_list_devices_and_unknown_serial(device, adb_server):
    serial = adb_server.connect(device.address)
    entries = list_devices(probe=True, server_port=adb_server.port)
    ours = [e for e in entries if e.id == f"adb:{serial}@127.0.0.1:{adb_server.port}"]
    assert ours and ours[0].state == "device" and ours[0].info.model == "Standin Phone"
    assert entries[0].id == "local"
    with pytest.raises(DeviceNotFoundError, match="adb devices"):
        open_transport(f"adb:NOPE123@127.0.0.1:{adb_server.port}")
    adb_server.run("disconnect", device.address, check=False)


def test_shared_libraries_are_pushed_and_on_the_library_path(device, adb_key, models, tools, tmp_path, request):
    lib = tmp_path / "libonnxruntime.so"
    lib.write_bytes(os.urandom(4096))
    wrapper = tmp_path / "onnxruntime_perf_test"   # lists LD_LIBRARY_PATH, then runs the stand-in tool
    wrapper.write_text('#!/bin/sh\nfor d in $(echo "$LD_LIBRARY_PATH" | tr : " "); do ls "$d"; done\n'
                       f'exec {tools.onnxruntime_perf_test} "$@"\n')
    wrapper.chmod(0o755)
    t = _open("adb-shell", device, adb_key, request)
    cfg = RunnerConfig(onnxruntime_perf_test=wrapper, libraries=[lib], timeout_s=120)
    m = get_runner("onnx", "adb", cfg).run(t, _job(t, "onnx"), models["onnx"])
    assert m.status == "ok", m.reason
    assert "libonnxruntime.so" in m.raw_output


def test_server_client_on_a_device_without_shell_v2(tmp_path, adb_server):
    """Old devices: no shell_v2, so the exit code comes from a marker appended to the command."""
    with StandinAdbd(tmp_path / "phone", features="cmd") as dev:
        serial = adb_server.connect(dev.address)
        t = open_transport(f"adb:{serial}@127.0.0.1:{adb_server.port}")
        assert not t.has_shell_v2
        res = t.shell("echo v1; exit 5", timeout=30)
        assert res.exit_code == 5 and res.stdout.strip() == "v1"
        adb_server.run("disconnect", dev.address, check=False)


def test_one_device_probe_before_and_one_after_each_run(transport, models, tools, monkeypatch):
    """An adb measurement reads the device's state twice (props + thermal before, thermal after), not four
    times: the sweep does not probe around a runner that records the thermal state itself."""
    from edgevit_deploy.device_bench import android

    probes: list[str] = []
    shell = transport.shell

    def counting(command, timeout=None):
        if command == android._PROBE_SCRIPT:
            probes.append(command)
        return shell(command, timeout=timeout)

    monkeypatch.setattr(transport, "shell", counting)
    runner = get_runner("onnx", "adb", _config(tools))
    m = runner.run(transport, _job(transport, "onnx"), models["onnx"])
    assert m.status == "ok", m.reason
    assert len(probes) == 2 and runner.records_thermal
    assert m.thermal_before and m.thermal_after and m.throttled is False
