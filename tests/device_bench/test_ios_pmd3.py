"""`edgevit-bench sweep --device ios-pmd3:UDID` end to end through **pymobiledevice3 itself**, talking to a
stand-in usbmuxd + iPhone on a temporary unix socket (`testing/standin_usbmuxd.py`: usbmuxd plist protocol,
lockdownd with a TLS session from a generated pair record, installation_proxy, house_arrest and AFC over the
sandbox of the devicectl stand-in): install the app from an .ipa -> AFC copies the job into the app's
Documents -> no developer services and no tunneld, so the host asks the user to open the app (the stand-in
plays the user) -> heartbeat -> pull result + outputs over AFC -> parity against PyTorch -> store -> report;
then `devices`, the device ids, and the faults (detached mid-job, app never opened, crash, corrupt result,
full container)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.device_helpers import iphone_device, kill_9_once_the_app_times, run_bench

from edgevit_deploy.device_bench import api
from edgevit_deploy.device_bench.errors import DeviceError, DeviceNotFoundError
from edgevit_deploy.device_bench.jobs import protocol as P
from edgevit_deploy.device_bench.testing.standin_devicectl import make_iphone, write_fake_ipa
from edgevit_deploy.device_bench.testing.standin_usbmuxd import StandinUsbmuxd
from edgevit_deploy.device_bench.transports import list_ios_devices, open_transport, parse_device
from edgevit_deploy.device_bench.transports.pmd3 import Pmd3Transport
from edgevit_deploy.errors import MissingBackendError

IMG = 64
DEVICE = iphone_device()
UDID = DEVICE["hardwareProperties"]["udid"]
ASK = "open EdgeVitBench on the iPhone now"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


@pytest.fixture(scope="module")
def ipa(tmp_path_factory) -> Path:
    return write_fake_ipa(tmp_path_factory.mktemp("ipa") / "EdgeVitBench.ipa", P.IOS_BUNDLE_ID, P.APP_VERSION)


@pytest.fixture
def iphone(tmp_path, monkeypatch):
    """A sandboxed iPhone behind a stand-in usbmuxd; pymobiledevice3 pointed at it; no xcrun, no tunneld."""
    root = tmp_path / "iphones"
    folder = make_iphone(root, DEVICE)
    with StandinUsbmuxd(root) as usbmuxd:
        monkeypatch.setenv("EDGEVIT_USBMUX_ADDRESS", usbmuxd.address)
        monkeypatch.setenv("EDGEVIT_TUNNELD_ADDRESS", f"127.0.0.1:{closed_port()}")
        monkeypatch.delenv("EDGEVIT_XCRUN", raising=False)
        yield folder


def docs(iphone: Path) -> Path:
    return iphone / "apps" / P.IOS_BUNDLE_ID / "data" / "Documents"


def sweep_args(store: Path, cache: Path, delegates: str, *extra: str) -> list[str]:
    return [
        "sweep",
        "--device",
        f"ios-pmd3:{UDID}",
        "--models",
        "edgevit_xxs",
        "--targets",
        "coreml",
        "--precision",
        "fp16",
        "--delegates",
        delegates,
        "--img-size",
        str(IMG),
        "--warmup",
        "0",
        "--iterations",
        "3",
        "--store",
        str(store),
        "--cache-dir",
        str(cache),
        "--timeout",
        "300",
        *extra,
    ]


def test_sweep_through_pymobiledevice3_end_to_end(iphone, ipa, tmp_path, cache):
    """No app on the phone: --ios-app installs it through installation_proxy; two compute units; rows with
    on-device parity and energy unavailable; the second launch finds the phone `serious`: throttled."""
    (iphone / "thermal").write_text("nominal\nserious")
    store, out = tmp_path / "ios.sqlite", tmp_path / "report"
    proc = run_bench(sweep_args(store, cache, "cpu,ane", "--ios-app", str(ipa), "--out", str(out)), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 measured, 0 failed" in proc.stdout
    assert (proc.stdout + proc.stderr).count(ASK) == 2  # one line per launch: no DVT, no tunneld
    assert json.loads((iphone / "apps" / P.IOS_BUNDLE_ID / "app.json").read_text())["version"] == P.APP_VERSION
    rows = {r["delegate"]: r for r in json.loads(api.export_rows(store, "json"))}
    assert sorted(rows) == ["ane", "cpu"]
    for delegate, units in (("cpu", "cpu_only"), ("ane", "cpu_and_neural_engine")):
        r = rows[delegate]
        assert r["status"] == "ok", r["reason"]
        assert r["device"] == f"ios-pmd3:{UDID}" and len(r["latencies_ms"]) == 3 and r["init_ms"] > 0
        assert r["runtime"].startswith("app: coreml-reference") and units in r["runtime"]
        assert r["energy_mj"] is None and "unavailable on iOS" in r["energy_note"]
        assert r["throttled"] is (delegate == "ane")
        assert any("iPhone15,2" in n and "iOS 18.4.1" in n for n in r["notes"]), r["notes"]
        parity = r["parity"]
        assert parity["executed"] and parity["passed"], parity
        assert parity["num_inputs"] >= 3 and 0.99 < parity["cosine"] <= 1.0 + 1e-6
    job = json.loads(next(docs(iphone).glob("jobs/coreml-fp16-ane-*/job.json")).read_text())
    assert job["runtime"] == {"name": "coreml", "delegate": "cpu_and_neural_engine", "threads": 1}
    assert not list(docs(iphone).rglob(".*.part"))  # pushed under a temporary name, then renamed
    html = (out / "report.html").read_text()
    assert f"ios-pmd3:{UDID}" in html


def test_devices_lists_the_stand_in_iphone(iphone, tmp_path):
    proc = run_bench(["devices", "--no-probe"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if UDID[:12] in line)
    assert f"ios:{UDID}" in line and "iPhone15,2" in line and "iOS 18.4.1" in line and "D73AP" in line, line
    [entry] = list_ios_devices()
    assert (entry.state, entry.info.extra["name"], entry.info.extra["chip"]) == ("device", "iPhone", "T8120")


def test_ios_device_ids_pick_pymobiledevice3_without_xcrun(iphone, monkeypatch):
    assert parse_device(f"ios-pmd3:{UDID}").via == "ios-pmd3"
    assert parse_device(f"ios-devicectl:{UDID}").via == "ios-devicectl"
    transport = open_transport("ios:")  # the only attached iPhone, through usbmuxd
    try:
        assert isinstance(transport, Pmd3Transport) and transport.udid == UDID
        info = transport.device_info()
        assert (info.model, info.os_version, info.soc, info.abi) == ("iPhone15,2", "iOS 18.4.1", "D73AP", "arm64e")
        assert transport.app_version() is None  # installation_proxy Lookup: not installed yet
    finally:
        transport.close()
    (iphone / "attached").unlink()
    with pytest.raises(DeviceNotFoundError, match="0 iPhones attached"):
        open_transport("ios:")
    with pytest.raises(DeviceNotFoundError, match="does not list the iPhone"):
        open_transport(f"ios-pmd3:{UDID}")
    monkeypatch.setenv("EDGEVIT_USBMUX_ADDRESS", str(iphone / "no-usbmuxd"))
    with pytest.raises(DeviceNotFoundError, match="usbmuxd is not reachable"):
        open_transport(f"ios-pmd3:{UDID}")
    assert list_ios_devices() == []  # no usbmuxd socket: nothing to list, nothing imported


def test_files_over_house_arrest_afc(iphone, ipa, tmp_path):
    """push / pull / exists / remove / free space over AFC, with the app's container as the root."""
    transport = open_transport(f"ios-pmd3:{UDID}")
    try:
        transport.install_app(ipa)
        assert transport.app_version() == P.APP_VERSION
        big = tmp_path / "big.bin"
        big.write_bytes(bytes(range(256)) * (5 * 4096 + 7))  # past one 4 MB AFC chunk
        transport.push(big, "Documents/jobs/x/big.bin")
        assert (docs(iphone) / "jobs/x/big.bin").read_bytes() == big.read_bytes()
        transport.pull("Documents/jobs/x/big.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
        assert transport.exists("Documents/jobs/x/big.bin") and not transport.exists("Documents/nope.json")
        with pytest.raises(FileNotFoundError, match="not in the app's container"):
            transport.pull("Documents/nope.json", tmp_path / "nope.json")
        assert transport.free_space("Documents") > 0
        transport.remove("Documents/jobs/x")
        assert not (docs(iphone) / "jobs/x").exists()
    finally:
        transport.close()


def one_row(tmp_path: Path, cache: Path, delegate: str = "cpu", **overrides) -> dict:
    store = tmp_path / f"s-{delegate}.sqlite"
    spec = api.SweepSpec(
        models=["edgevit_xxs"],
        targets=["coreml"],
        precisions=["fp16"],
        delegates=[delegate],
        devices=[f"ios-pmd3:{UDID}"],
        img_size=IMG,
        warmup=0,
        iterations=2,
    )
    api.sweep(
        spec, store=store, cache_dir=cache, runner_overrides={"timeout_s": 120, "launch_timeout_s": 30, **overrides}
    )
    [row] = api.read_rows(store)
    return row


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("nolaunch", "the app never started: no heartbeat 4 s after the launch"),
        ("crash:load", "the app process died without a result"),
        ("corrupt", "corrupt result from the app"),  # a partial result file: cut in the middle of its JSON
    ],
)
def test_app_faults(iphone, ipa, tmp_path, cache, fault, expected):
    (iphone / "fault").write_text(fault)
    row = one_row(tmp_path, cache, ios_app=ipa, launch_timeout_s=4, heartbeat_timeout_s=20)
    assert row["status"] == "failed" and expected in row["reason"], row["reason"]


def test_full_container_is_a_failed_row_with_the_reason(iphone, ipa, tmp_path, cache):
    (iphone / "quota").write_text("2000")
    row = one_row(tmp_path, cache, ios_app=ipa)
    assert row["status"] == "failed"
    assert "cannot copy job" in row["reason"] and "not enough space" in row["reason"], row["reason"]


def test_iphone_detached_mid_job_fails_the_row_with_the_reason(iphone, ipa, tmp_path, cache):
    """Unplugged while the app times the model: every connection drops, usbmuxd no longer lists it; the
    sweep's reconnects fail and the row says the device went away (no hang, no lost store)."""
    store = tmp_path / "d.sqlite"
    args = [
        sys.executable,
        "-m",
        "edgevit_deploy.cli.bench_cmd",
        *sweep_args(store, cache, "cpu", "--ios-app", str(ipa)),
    ]
    args[args.index("--iterations") + 1] = "400"
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    status = docs(iphone) / P.STATUS_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = status.read_text() if status.is_file() else ""
        if text.strip() and json.loads(text).get("phase") == "timing":
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the app never reached its timing loop")
    (iphone / "attached").unlink()
    out, _ = proc.communicate(timeout=300)
    [row] = api.read_rows(store)
    assert row["status"] == "failed", out[-2000:]
    assert "does not list the iPhone" in row["reason"] or "detached" in row["reason"], row["reason"]


def test_launch_without_developer_services_asks_the_user(iphone, ipa, caplog):
    """iOS 18 and no tunneld: the hint to start it; iOS 16: DVT over lockdown refused (no developer disk image
    mounted). Either way one warning asks the user to open the app, and the launch returns no pid."""
    caplog.set_level(logging.INFO, logger="edgevit_deploy")
    transport = open_transport(f"ios-pmd3:{UDID}")
    try:
        transport.install_app(ipa)
        assert transport.launch_app() is None
        assert "no tunneld at 127.0.0.1" in caplog.text and "remote tunneld" in caplog.text
        doc = json.loads((iphone / "device.json").read_text())
        doc["deviceProperties"]["osVersionNumber"] = "16.7.10"
        (iphone / "device.json").write_text(json.dumps(doc))
        transport.close()
        caplog.clear()
        transport.device_info()
        assert transport.launch_app() is None
        assert "no developer services over lockdown (InvalidServiceError)" in caplog.text
        assert caplog.text.count(ASK) == 1
        assert not transport.app_running()  # no heartbeat yet
    finally:
        transport.close()


def test_kill_9_of_the_sweep_then_resume(iphone, ipa, tmp_path, cache):
    """kill -9 of the host mid-job: the app goes on on the phone; the resumed sweep, which cannot list
    processes, sees the heartbeat move and follows it (or pulls the result): one row, the job run once."""
    store = tmp_path / "k.sqlite"
    args = sweep_args(store, cache, "cpu", "--ios-app", str(ipa))
    args[args.index("--iterations") + 1] = "150"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_9_once_the_app_times(proc, docs(iphone))
    resumed = run_bench(args, tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    [row] = api.read_rows(store)
    assert row["status"] == "ok" and len(row["latencies_ms"]) == 150 and row["parity"]["passed"], row["reason"]
    assert (iphone / "apps" / P.IOS_BUNDLE_ID / "app.log").read_text().count("jobs run") == 1
    assert ASK not in resumed.stdout + resumed.stderr  # nothing relaunched


def test_without_pymobiledevice3_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymobiledevice3", None)  # as if not installed
    monkeypatch.delenv("EDGEVIT_XCRUN", raising=False)
    with pytest.raises(MissingBackendError, match=r"edgevit-deploy\[ios\]"):
        open_transport(f"ios-pmd3:{UDID}")


def test_unpaired_iphone_says_how_to_pair(iphone, tmp_path, monkeypatch):
    """usbmuxd has no pair record for it (and pymobiledevice3 none of its own): no session; the error and the
    device list say so."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.pymobiledevice3 record of a real pairing
    (iphone / "unpaired").write_text("")
    with pytest.raises(DeviceError, match=r"not paired with the iPhone.*tap Trust"):
        open_transport(f"ios-pmd3:{UDID}")
    [entry] = list_ios_devices()
    assert entry.state == "unpaired" and entry.info.model == "iPhone15,2"
