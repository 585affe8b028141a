"""On-device parity for the benchmark_model runner: the tool is fed the fixed parity input
(``--input_layer_value_files``) and dumps its outputs (``--output_filepath``); the row's ``parity`` is the
validator's report against PyTorch, as for app rows. Through a stand-in phone with a really exported
EdgeViT-XXS (tflite, 64x64) and the stand-in benchmark_model running it in the host LiteRT runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit_deploy.device_bench import api
from edgevit_deploy.device_bench.api import export_rows
from edgevit_deploy.device_bench.runners.litert_benchmark import NO_OUTPUT_FLAG
from edgevit_deploy.device_bench.testing.adb_client import AdbServer, adb_binary
from edgevit_deploy.device_bench.testing.fake_runners import tool_fault_file, write_fake_tools
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd

IMG = 64


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    return write_fake_tools(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Under pytest's base temp dir: shared with the other sweep tests, so the model is exported once."""
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


@pytest.fixture(autouse=True)
def adb_key(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVIT_ADB_KEY", str(tmp_path / "adbkey"))


def one_row(dev: StandinAdbd, tools, tmp_path: Path, cache: Path, **overrides) -> dict:
    spec = api.SweepSpec(
        models=["edgevit_xxs"],
        targets=["tflite"],
        devices=[f"adb:{dev.address}"],
        img_size=IMG,
        warmup=1,
        iterations=4,
        runner="tool",
    )
    store = tmp_path / "s.sqlite"
    api.sweep(
        spec,
        store=store,
        cache_dir=cache,
        runner_overrides={"timeout_s": 300, "benchmark_model": tools.benchmark_model, **overrides},
    )
    [row] = api.read_rows(store)
    return row


def test_tool_rows_carry_on_device_parity(tools, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        row = one_row(dev, tools, tmp_path, cache)
        # the input really went to the phone as raw float32 (1x3x64x64, NCHW export) and outputs came back
        [fed] = list((tmp_path / "phone").rglob("parity_input.bin"))
        assert fed.stat().st_size == 3 * IMG * IMG * 4
        [dumped] = list((tmp_path / "phone").rglob("parity_output.bin"))
        assert dumped.stat().st_size == 1000 * 4
    assert row["status"] == "ok" and row["runtime"].startswith("benchmark_model"), row["reason"]
    parity = row["parity"]
    assert parity["executed"] and parity["passed"], parity
    assert parity["num_inputs"] == 1 and parity["max_abs"] < 1e-3 and parity["cosine"] > 0.9999
    assert parity["top1_agreement"] == 1.0 and "benchmark_model" in parity["executor"]
    assert row["median_ms"] > 0 and not any("parity not checked" in n for n in row["notes"])


def test_perturbed_outputs_fail_parity_on_an_ok_latency_row(tools, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        tool_fault_file(dev.root).write_text("perturb")
        row = one_row(dev, tools, tmp_path, cache)
    assert row["status"] == "ok" and row["median_ms"] > 0
    parity = row["parity"]
    assert parity["executed"] and not parity["passed"] and parity["max_abs"] > 0.4
    assert any("max abs error" in f for f in parity["failures"])
    assert any(n.startswith("on-device outputs differ from PyTorch") for n in row["notes"])


@pytest.mark.parametrize("fault", ["old", "reject", "ignore"])
def test_tool_without_the_output_flags_is_a_normal_row_with_parity_not_available(fault, tools, tmp_path, cache):
    """``old``: the build warns "Unconsumed cmdline flags: --output_filepath=.." and measures without writing
    outputs (the row keeps that run); ``reject``: a build that stops on them is run again without them;
    ``ignore``: it runs and writes no output file. Either way the latency row is ok, parity "not available"."""
    with StandinAdbd(tmp_path / "phone") as dev:
        tool_fault_file(dev.root).write_text(fault)
        row = one_row(dev, tools, tmp_path, cache)
        assert not list((tmp_path / "phone").rglob("parity_output.bin"))
    assert row["status"] == "ok" and row["median_ms"] > 0, row["reason"]
    assert row["parity"]["reason"] == NO_OUTPUT_FLAG and not row["parity"]["executed"]
    assert ("Unconsumed cmdline flags: --output_filepath=" in row["raw_output"]) == (fault == "old")
    assert any("does not know the output flags" in n for n in row["notes"]) == (fault == "old")
    assert any("rejected the output flags: ran again" in n for n in row["notes"]) == (fault == "reject")


def test_outputs_opt_out(tools, tmp_path, cache):
    with StandinAdbd(tmp_path / "phone") as dev:
        row = one_row(dev, tools, tmp_path, cache, outputs=False)
        assert not list((tmp_path / "phone").rglob("parity_input.bin"))
    assert row["status"] == "ok" and not row["parity"]


def test_cli_tool_sweep_with_both_adb_clients_reports_parity(tools, tmp_path, cache):
    """`edgevit-bench sweep --runner tool`: phone A straight to adbd (adb-shell), phone B through Debian's
    adb server; both rows carry passing parity and the table's parity column shows it."""
    if adb_binary() is None:
        pytest.fail("the `adb` binary is not on PATH: install Debian's adb package (apt-get install -y adb)")
    with (
        StandinAdbd(tmp_path / "phone-a") as a,
        StandinAdbd(tmp_path / "phone-b") as b,
        AdbServer(home=tmp_path / "adb-home") as server,
    ):
        devices = [f"adb:{a.address}", f"adb:{server.connect(b.address)}@127.0.0.1:{server.port}"]
        store = tmp_path / "tool.sqlite"
        cmd = [
            sys.executable,
            "-m",
            "edgevit_deploy.cli.bench_cmd",
            "sweep",
            "--devices",
            ",".join(devices),
            "--models",
            "edgevit_xxs",
            "--targets",
            "tflite",
            "--img-size",
            str(IMG),
            "--warmup",
            "1",
            "--iterations",
            "4",
            "--store",
            str(store),
            "--cache-dir",
            str(cache),
            "--timeout",
            "300",
            "--runner",
            "tool",
            "--benchmark-model",
            str(tools.benchmark_model),
        ]
        env = {**os.environ, **server.env, "EDGEVIT_ADB_KEY": str(tmp_path / "adbkey")}
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 measured, 0 failed" in proc.stdout
    assert proc.stdout.count("pass max") == 2  # the table's parity column
    rows = json.loads(export_rows(store, "json"))
    assert sorted(r["device"] for r in rows) == sorted(devices)
    for r in rows:
        assert r["status"] == "ok" and r["runtime"].startswith("benchmark_model"), r["reason"]
        assert r["parity"]["executed"] and r["parity"]["passed"] and r["parity"]["max_abs"] < 1e-3, r["parity"]
