"""`edgevit-bench sweep --runner app --targets executorch` through the stand-in adbd: the `.pte` export is pushed
as a protocol job (runtime "executorch", format "pte"), the reference app runs it in ExecuTorch's Python
runtime (the target table's host runtime, the twin of the Android app's ExecuTorchRunner), and its outputs of
the fixed inputs go through the validator against PyTorch (on-device parity)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit_deploy.device_bench.api import export_rows
from edgevit_deploy.device_bench.jobs import protocol as P
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
from edgevit_deploy.device_bench.testing.standin_app import write_fake_apk

IMG = 64
APP = Path(__file__).resolve().parents[2] / "android_app" / "app"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Under pytest's base temp dir: shared with the other bench tests, so the model is exported once."""
    return tmp_path_factory.getbasetemp() / "bench-artifacts"


def test_runner_app_runs_executorch_programs_with_on_device_parity(tmp_path, cache):
    apk = write_fake_apk(tmp_path / "app-release.apk", P.APP_PACKAGE, P.APP_VERSION)
    store = tmp_path / "et.sqlite"
    with StandinAdbd(tmp_path / "phone") as dev:
        device = f"adb:{dev.address}"
        args = [
            "sweep",
            "--devices",
            device,
            "--models",
            "edgevit_xxs",
            "--targets",
            "executorch",
            "--img-size",
            str(IMG),
            "--warmup",
            "1",
            "--iterations",
            "3",
            "--threads",
            "2",
            "--store",
            str(store),
            "--cache-dir",
            str(cache),
            "--timeout",
            "300",
            "--runner",
            "app",
            "--android-app",
            str(apk),
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "EDGEVIT_ADB_KEY": str(tmp_path / "adbkey")},
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 measured, 0 failed" in proc.stdout and "pass max" in proc.stdout
    [row] = json.loads(export_rows(store, "json"))
    assert row["status"] == "ok" and row["runner"] == "app" and row["target"] == "executorch", row["reason"]
    assert row["runtime"].startswith("app: executorch") and len(row["latencies_ms"]) == 3
    assert 0 < row["min_ms"] <= row["median_ms"] and row["init_ms"] > 0 and row["first_ms"] > 0
    parity = row["parity"]
    assert parity["executed"] and parity["passed"], parity
    assert parity["max_abs"] < 1e-4 and parity["num_inputs"] >= 3 and parity["top1_agreement"] == 1.0
    assert parity["executor"].startswith("on-device app (executorch"), parity["executor"]
    # the job the app was given: ExecuTorch's program format and runtime, the requested threads
    files = tmp_path / "phone/sdcard/Android/data" / P.APP_PACKAGE / "files"
    [result_file] = (files / "results").glob("*.json")
    result = P.Result.from_dict(json.loads(result_file.read_text()))
    assert result.ok and result.runtime["name"] == "executorch" and result.runtime["threads"] == 2


def test_android_app_has_a_runner_for_every_android_runtime_of_the_table():
    """The app module is never compiled here: check its sources against the table. Every app runtime the job
    builder can send to an Android device (RUNNERS rows of kind adb:app) has a case in Runners.java, and the
    ExecuTorch AAR's version in app/build.gradle is the executorch pip package's minor (the .pte's exporter)."""
    from edgevit_deploy.converters.table import get_spec
    from edgevit_deploy.device_bench.runners import RUNNERS

    runners = (APP / "src/main/java/org/edgevit/bench/Runners.java").read_text()
    cases = set(re.findall(r'case "([a-z]+)":', runners))
    android = {get_spec(target).app_runtime for target, kind in RUNNERS if kind == "adb:app"}
    assert "executorch" in android and android <= cases, (android, cases)
    gradle = (APP / "build.gradle").read_text()
    [version] = re.findall(r'def executorchVersion = "([0-9.]+)"', gradle)
    assert "org.pytorch:executorch-android:${executorchVersion}" in gradle
    pyproject = (APP.parents[1] / "pyproject.toml").read_text()
    low, high = re.search(r'"executorch>=([0-9.]+),<([0-9.]+)"', pyproject).groups()
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))
    assert as_tuple(low) <= as_tuple(version) < as_tuple(high), (version, low, high)
