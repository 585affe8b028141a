"""Pure pieces of the Android side: quoting, masks, device ids, device-probe parsers, stats, registry."""
from __future__ import annotations

import shlex
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit_deploy.device_bench import android, shell
from edgevit_deploy.device_bench.errors import DeviceIdError, RunnerConfigError
from edgevit_deploy.device_bench.runners import RunnerConfig, get_runner, supported_pairs
from edgevit_deploy.device_bench.stats import summarise
from edgevit_deploy.device_bench.testing import standin_fs
from edgevit_deploy.device_bench.transports import parse_device
from edgevit_deploy.device_bench.transports.adb_server import server_address


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                        max_size=20), min_size=1, max_size=5))
def test_join_round_trips_through_a_real_shell(args):
    line = shell.join(["printf", "%s\\0", *args])
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, check=True).stdout
    assert out.decode("utf-8", "surrogateescape").split("\0")[:-1] == args


def test_exit_marker_survives_exit_inside_the_command():
    line = shell.with_exit_marker("echo hi; exit 7")
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True).stdout
    assert shell.split_exit_marker(out) == ("hi\n", 7)
    assert shell.split_exit_marker("no marker here\n") == ("no marker here\n", None)


def test_cpu_masks():
    assert shell.cpu_mask([4, 5, 6, 7]) == "f0"
    assert shell.cpu_mask([0]) == "1"
    assert shell.parse_cpu_list("0-3,6") == [0, 1, 2, 3, 6]
    assert shell.pinned(["/data/x y"], "0xF0") == "taskset f0 '/data/x y'"
    for bad in ("", "0", "f0; reboot", "g1"):
        with pytest.raises(ValueError):
            shell.validate_mask(bad)
    with pytest.raises(ValueError):
        shell.with_env("true", {"BAD NAME": "x"})
    assert shell.with_env("run", {"LD_LIBRARY_PATH": "/a b"}) == "LD_LIBRARY_PATH='/a b' run"


@pytest.mark.parametrize("device,via,fields", [
    ("local", "local", {}),
    ("adb:R58M123", "server", {"serial": "R58M123"}),
    ("adb:emulator-5554@10.0.0.2:5037", "server", {"serial": "emulator-5554", "server_host": "10.0.0.2",
                                                    "server_port": 5037}),
    ("adb:192.168.1.20:5555", "direct-tcp", {"host": "192.168.1.20", "port": 5555}),
    ("adb-server:192.168.1.20:5555", "server", {"serial": "192.168.1.20:5555"}),
    ("adb-direct:phone.lan", "direct-tcp", {"host": "phone.lan", "port": 5555}),
    ("adb-usb:0123ABC", "direct-usb", {"serial": "0123ABC"}),
])
def test_device_ids(device, via, fields):
    spec = parse_device(device)
    assert spec.via == via
    for key, value in fields.items():
        assert getattr(spec, key) == value


@pytest.mark.parametrize("bad", ["", "phone", "adb:", "adb:1.2.3.4:99999", "adb-direct:a b", "ftp:x"])
def test_bad_device_ids_explain(bad):
    with pytest.raises(DeviceIdError, match="adb|port|device"):
        parse_device(bad)


def test_server_address_follows_adb_environment(monkeypatch):
    for key in ("ADB_SERVER_SOCKET", "ANDROID_ADB_SERVER_HOST", "ANDROID_ADB_SERVER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert (server_address().host, server_address().port) == ("127.0.0.1", 5037)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "15099")
    assert server_address().port == 15099
    monkeypatch.setenv("ADB_SERVER_SOCKET", "tcp:farm.example:7100")
    assert (server_address().host, server_address().port) == ("farm.example", 7100)
    assert server_address("h", 1).host == "h"
    monkeypatch.setenv("ADB_SERVER_SOCKET", "localfilesystem:/x")
    with pytest.raises(DeviceIdError):
        server_address()


def test_probe_parsers_on_the_standin_files(tmp_path):
    """The fake dumpsys / sysfs texts are the layouts real devices print."""
    standin_fs.populate(tmp_path, dict(standin_fs.DEFAULT_PROPS))
    dumpsys = tmp_path / ".standin/dumpsys"
    battery = android.parse_battery((dumpsys / "battery").read_text())
    assert battery.level == 87.0 and not battery.charging and battery.temperature_c == pytest.approx(29.1)
    assert android.parse_thermal_status((dumpsys / "thermalservice").read_text()) == 0
    assert android.parse_power((dumpsys / "power").read_text()) == (False, "Asleep")


def test_battery_charging_and_screen_variants():
    charging = android.parse_battery("  AC powered: false\n  USB powered: true\n  status: 2\n"
                                     "  level: 40\n  scale: 50\n")
    assert charging.charging and charging.powered_by == ["USB"] and charging.level == 80.0
    assert android.parse_power("mWakefulness=Awake\n") == (True, "Awake")
    assert android.parse_power("mScreenOn=false\n") == (False, None)
    assert android.parse_thermal_zones("cpu-0 45000\nbattery 31\nbad line\n") == {"cpu-0": 45.0, "battery": 31.0}
    props = android.parse_getprop("[ro.product.model]: [Pixel 8]\n[ro.soc.model]: [Tensor G3]\n")
    assert props == {"ro.product.model": "Pixel 8", "ro.soc.model": "Tensor G3"}


def test_df_layouts():
    header = "Filesystem      1K-blocks    Used Available Use% Mounted on\n"
    toybox = header + "/dev/block/dm-48 1000 400 600 40% /data\n"
    wrapped = header + "/dev/block/very/long/name\n  1000 400 600 40% /data\n"
    assert android.parse_df_available(toybox) == 600 * 1024
    assert android.parse_df_available(wrapped) == 600 * 1024
    with pytest.raises(ValueError):
        android.parse_df_available("df: /nope: No such file or directory\n")


def test_throttle_detection_and_big_cores():
    cpus = [android.CpuInfo(i, "schedutil", 1800000 if i < 4 else 2800000, 1800000 if i < 4 else 2800000, 0)
            for i in range(8)]
    calm = android.DeviceSnapshot(0, {}, cpus, android.BatteryInfo(), False, "Asleep")
    capped = [android.CpuInfo(c.cpu, c.governor, c.max_khz, c.cap_khz // 2 if c.cpu >= 4 else c.cap_khz, 0)
              for c in cpus]
    hot = android.DeviceSnapshot(2, {}, capped, android.BatteryInfo(), False, "Asleep")
    reasons = android.throttle_reasons(calm, hot)
    assert any("thermal status 2" in r for r in reasons) and any("cpu4" in r for r in reasons)
    assert android.throttle_reasons(calm, calm) == []
    assert android.big_core_mask(cpus) == "f0"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=1, max_size=200))
def test_summarise_agrees_with_numpy(values):
    s = summarise(values)
    arr = np.array(values)
    assert s.mean == pytest.approx(arr.mean(), rel=1e-9, abs=1e-9)
    assert s.median == pytest.approx(np.percentile(arr, 50), rel=1e-9, abs=1e-9)
    assert s.p90 == pytest.approx(np.percentile(arr, 90), rel=1e-9, abs=1e-9)
    assert s.p99 == pytest.approx(np.percentile(arr, 99), rel=1e-9, abs=1e-9)
    assert s.std == pytest.approx(arr.std(), rel=1e-6, abs=1e-6)
    assert s.min == arr.min() and s.max == arr.max()
    assert s.min <= s.trimmed_mean <= s.max


def test_summarise_refuses_bad_input():
    for bad in ([], [1.0, float("nan")], [-1.0]):
        with pytest.raises(ValueError):
            summarise(bad)


def test_runner_registry_and_config(tmp_path):
    assert ("tflite", "adb") in supported_pairs() and ("onnx", "adb") in supported_pairs()
    with pytest.raises(RunnerConfigError, match="coreml"):
        get_runner("coreml", "adb")
    tool = tmp_path / "benchmark_model"
    tool.write_text("#!/bin/sh\n")
    cfg = RunnerConfig.from_mapping({"benchmark_model": str(tool), "timeout_s": 30,
                                     "extra_flags": {"benchmark_model": ["--max_secs=5"]}})
    runner = get_runner("tflite", "adb", cfg)
    assert runner.tool_binary() == tool and cfg.flags_for("benchmark_model") == ("--max_secs=5",)
    with pytest.raises(RunnerConfigError, match="unknown runner config keys"):
        RunnerConfig.from_mapping({"benchmark_modle": "x"})
    with pytest.raises(RunnerConfigError, match="unknown runner config keys"):
        RunnerConfig.from_env(timeout=3)
    with pytest.raises(RunnerConfigError, match="EDGEVIT_ORT_PERF_TEST"):
        get_runner("onnx", "adb", RunnerConfig()).tool_binary()
    with pytest.raises(RunnerConfigError):
        RunnerConfig(current_unit="A")


def test_shlex_quote_is_what_the_helpers_use():
    path = "/data/local/tmp/my model's $(x).tflite"
    assert shell.quote(path) == shlex.quote(path)


def test_adb_usb_without_the_usb_extra_says_what_to_install(tmp_path):
    from edgevit_deploy.device_bench.errors import DeviceError
    from edgevit_deploy.device_bench.transports import open_transport

    try:
        import usb1  # noqa: F401
    except ImportError:
        with pytest.raises(DeviceError, match=r"adb-shell\[usb\]"):
            open_transport("adb-usb:NOSUCHSERIAL", key_path=tmp_path / "adbkey")
    else:  # the extra is installed: then the serial is simply not there
        from edgevit_deploy.device_bench.errors import DeviceNotFoundError

        with pytest.raises(DeviceNotFoundError):
            open_transport("adb-usb:NOSUCHSERIAL", key_path=tmp_path / "adbkey")


def test_one_latency_summary_type_from_the_parsers_to_the_store(tmp_path):
    """The parsers nest a LatencySummary; a Measurement's latency columns are that summary's fields
    (stats.MEASUREMENT_FIELDS), and they come back from the store as the same summary."""
    from edgevit_deploy.device_bench.parsers import ParsedRun
    from edgevit_deploy.device_bench.stats import MEASUREMENT_FIELDS, LatencySummary
    from edgevit_deploy.device_bench.store import ResultStore
    from edgevit_deploy.device_bench.types import BenchJob, Measurement

    run = ParsedRun(tool="t")
    run.latency.p95 = 9.0                               # a figure only the tool's own summary has
    run.apply_latencies([3.0, 1.0, 2.0, 8.0])
    assert isinstance(run.latency, LatencySummary)
    assert run.latency.median == 2.5 and run.latency.max == 8.0 and run.latency.p95 == 9.0
    fields = run.measurement_fields()
    assert {k: fields[k] for k in MEASUREMENT_FIELDS.values()} == run.latency.as_measurement_fields()
    m = Measurement(job=BenchJob("edgevit_xxs", "onnx", "fp32"), status="ok", **fields)
    stored = {name: getattr(run.latency, name) for name in MEASUREMENT_FIELDS}
    assert {k: getattr(m.latency, k) for k in MEASUREMENT_FIELDS} == stored
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(m)
        [row] = store.rows()
        [back] = store.measurements()
    assert {k: getattr(LatencySummary.of_measurement(row), k) for k in MEASUREMENT_FIELDS} == stored
    assert back.latency == m.latency
