"""A private, per-test adb server (the real ``adb`` client binary) for driving the stand-in device.

Isolation as the adb docs require: its own port outside 5555-5585, its own HOME (adb keys, no user
state), and ``kill-server`` at the end. ``ADB`` is Debian's ``adb`` package (``apt-get install adb``)
or any platform-tools ``adb`` on PATH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_AVOID = range(5555, 5586)


def free_port(low: int = 15000, high: int = 40000) -> int:
    """A free TCP port on 127.0.0.1 in [low, high), never in adb's 5555-5585 emulator range."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if low <= port < high and port not in _AVOID:
            return port
    for port in range(low, high):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def adb_binary() -> str | None:
    return shutil.which("adb")


@dataclass
class AdbServer:
    """``with AdbServer(home=tmp) as server: server.connect("127.0.0.1:PORT")``."""

    home: Path
    port: int = 0
    adb: str = field(default_factory=lambda: adb_binary() or "adb")

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.home = Path(self.home)
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HOME=str(self.home), ANDROID_ADB_SERVER_PORT=str(self.port), ADB_VENDOR_KEYS="")
        env.pop("ADB_SERVER_SOCKET", None)
        env.pop("ANDROID_SERIAL", None)
        return env

    def run(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.adb, "-P", str(self.port), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"adb {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
        return proc

    def start(self) -> AdbServer:
        self.run("start-server", timeout=60)
        return self

    def connect(self, address: str, timeout_s: float = 20.0) -> str:
        """``adb connect`` and wait until the device is in state 'device'; returns its serial."""
        self.run("connect", address, timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.run("-s", address, "get-state", check=False, timeout=timeout_s).stdout.strip()
            if state == "device":
                return address
            time.sleep(0.2)
        raise RuntimeError(f"{address} did not reach state 'device' through the adb server on port {self.port}")

    def stop(self) -> None:
        try:
            self.run("kill-server", check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def __enter__(self) -> AdbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
