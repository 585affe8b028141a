"""Shared helpers of the device-app tests (imported by tests/device_bench/test_app_faults.py, tests/device_bench/test_ios_devicectl.py and
tests/device_bench/test_ios_pmd3.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgevit_deploy.device_bench.jobs import protocol as P


def kill_9_once_the_app_times(proc: subprocess.Popen, files: Path, timeout_s: float = 300) -> None:
    """``kill -9`` the sweep ``proc`` once the app's heartbeat in ``files`` says it is in its timing loop, and
    check the job has no result yet (the kill really landed mid-job)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = files / P.STATUS_FILE
        text = status.read_text() if status.is_file() else ""
        if text.strip() and json.loads(text).get("phase") == "timing":
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the app never reached its timing loop")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not P.result_path(files, P.pending_jobs(files)[0]).exists()  # killed before the result


IOS_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "devicectl"


def iphone_device() -> dict:
    """The stand-in iPhone's devicectl device object (iPhone15,2 on iOS 18.4.1), shared by the iOS tests."""
    return json.loads((IOS_FIXTURES / "iphone_device.json").read_text())


def run_bench(args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``edgevit-bench ARGS`` in a fresh process (wide console so table lines are not wrapped)."""
    import sys

    return subprocess.run(
        [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )
