"""The host itself as a device: shell is a subprocess, push / pull are copies, device info from the OS."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from ..types import DeviceInfo, ShellResult

log = logging.getLogger(__name__)

LOCAL_ID = "local"
_CPU_SYSFS = Path("/sys/devices/system/cpu")
_THERMAL_SYSFS = Path("/sys/class/thermal")


def default_work_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgevit-deploy" / "local-device"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _cpu_dirs() -> list[Path]:
    return sorted((p for p in _CPU_SYSFS.glob("cpu[0-9]*") if p.name[3:].isdigit()), key=lambda p: int(p.name[3:]))


def _cpu_model() -> str:
    for line in _read(Path("/proc/cpuinfo")).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor"):
            return value.strip()
    return platform.processor() or platform.machine()


def _cpu_freqs(name: str) -> list[int]:
    freqs = []
    for cpu in _cpu_dirs():
        value = _read(cpu / "cpufreq" / name)
        if value.isdigit():
            freqs.append(int(value))
    return freqs


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalTransport:
    """Runs commands on this machine. ``work_dir`` is a cache folder standing in for the device's
    work dir; ``push`` copies a file (or an ``.mlpackage`` directory) there."""

    kind = "local"

    def __init__(self, work_dir: str | Path | None = None, device_id: str = LOCAL_ID):
        self.device_id = device_id
        self._work_dir = Path(work_dir) if work_dir else default_work_dir()
        self._work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir = str(self._work_dir)
        self._running: set[subprocess.Popen[str]] = set()

    # ------------------------------------------------------------------------------------ commands
    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        """Run ``command`` with /bin/sh; on timeout the whole process group is killed."""
        proc = subprocess.Popen(
            command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self._running.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            log.warning("local: command timed out after %s s: %s", timeout, command[:200])
            return ShellResult(exit_code=-9, stdout=out or "", stderr=err or "", timed_out=True)
        finally:
            self._running.discard(proc)
        return ShellResult(exit_code=proc.returncode, stdout=out, stderr=err)

    # --------------------------------------------------------------------------------------- files
    def push(self, local: Path, remote: str) -> None:
        local, dest = Path(local), Path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if local.resolve() == dest.resolve():
            return
        if local.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(local, dest)
        else:
            tmp = dest.with_name(dest.name + ".partial")
            shutil.copyfile(local, tmp)
            os.replace(tmp, dest)

    def pull(self, remote: str, local: Path) -> None:
        src, local = Path(remote), Path(local)
        if not src.exists():
            raise FileNotFoundError(f"local device: no such file {remote}")
        local.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, local, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, local)

    def exists(self, remote: str) -> bool:
        return Path(remote).exists()

    def free_space(self, remote_dir: str) -> int:
        path = Path(remote_dir)
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    # ------------------------------------------------------------------------------------- device
    def device_info(self) -> DeviceInfo:
        extra: dict[str, Any] = {
            "hostname": platform.node(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        }
        meminfo = _read(Path("/proc/meminfo")).splitlines()
        if meminfo and meminfo[0].startswith("MemTotal"):
            extra["mem_total_kb"] = int(meminfo[0].split()[1])
        return DeviceInfo(
            id=self.device_id,
            kind=self.kind,
            model=platform.node(),
            soc=_cpu_model(),
            os_version=platform.platform(),
            abi=platform.machine(),
            cpu_governor=_read(_CPU_SYSFS / "cpu0" / "cpufreq" / "scaling_governor"),
            cpu_max_freqs_khz=_cpu_freqs("cpuinfo_max_freq"),
            extra=extra,
        )

    def thermal_snapshot(self) -> dict[str, Any]:
        """CPU frequencies (kHz) and thermal-zone temperatures (deg C) where the OS exposes them."""
        temps = {}
        for zone in sorted(_THERMAL_SYSFS.glob("thermal_zone*")):
            raw = _read(zone / "temp")
            if raw.lstrip("-").isdigit():
                temps[_read(zone / "type") or zone.name] = int(raw) / 1000.0
        snap: dict[str, Any] = {
            "cpu_cur_freqs_khz": _cpu_freqs("scaling_cur_freq"),
            "cpu_max_freqs_khz": _cpu_freqs("scaling_max_freq"),
            "temps_c": temps,
        }
        try:
            snap["loadavg_1m"] = os.getloadavg()[0]
        except OSError:
            pass
        return snap

    def reconnect(self) -> None:
        """Nothing to reconnect: the host is always there."""

    def close(self) -> None:
        """Kill commands still running (an interrupted sweep leaves no worker process behind)."""
        for proc in list(self._running):
            _kill_group(proc)
