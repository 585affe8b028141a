"""Transport through an adb server (``adb:SERIAL``, ``adb:SERIAL@HOST:PORT``) with adbutils.

This is how USB phones on this computer, remote adb servers and device farms (DeviceFarmer / STF
expose ``adb connect``-able phones) are reached. Shell v2 gives real exit codes when the device
advertises ``shell_v2``; otherwise adbutils' v1 exit-code marker is used.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._lazy import require
from .. import android
from ..errors import DeviceDisconnectedError, DeviceError, DeviceFullError, DeviceIdError, DeviceNotFoundError
from ..types import ShellResult
from .base import AndroidTransport

log = logging.getLogger(__name__)

DEFAULT_SERVER_HOST = "127.0.0.1"
DEFAULT_SERVER_PORT = 5037
_TCP_SERIAL = re.compile(r"^[\w.\-\[\]:]+:\d+$")


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int

    @property
    def is_default(self) -> bool:
        return self.port == DEFAULT_SERVER_PORT and self.host in (DEFAULT_SERVER_HOST, "localhost")


def server_address(host: str | None = None, port: int | None = None) -> ServerAddress:
    """Explicit host/port, else $ADB_SERVER_SOCKET (tcp:HOST:PORT), else $ANDROID_ADB_SERVER_HOST /
    $ANDROID_ADB_SERVER_PORT, else 127.0.0.1:5037 (the same rules as the adb client)."""
    env_host = env_port = None
    socket_spec = os.environ.get("ADB_SERVER_SOCKET", "")
    if socket_spec:
        match = re.fullmatch(r"tcp:(?:(.+):)?(\d+)", socket_spec.strip())
        if not match:
            raise DeviceIdError(f"ADB_SERVER_SOCKET={socket_spec!r} is not of the form tcp:HOST:PORT or tcp:PORT")
        env_host, env_port = match.group(1), int(match.group(2))
    env_host = env_host or os.environ.get("ANDROID_ADB_SERVER_HOST")
    if env_port is None and os.environ.get("ANDROID_ADB_SERVER_PORT"):
        try:
            env_port = int(os.environ["ANDROID_ADB_SERVER_PORT"])
        except ValueError:
            raise DeviceIdError(
                f"ANDROID_ADB_SERVER_PORT={os.environ['ANDROID_ADB_SERVER_PORT']!r} is not a port number"
            ) from None
    return ServerAddress(host or env_host or DEFAULT_SERVER_HOST, int(port or env_port or DEFAULT_SERVER_PORT))


def client(address: ServerAddress, socket_timeout: float | None = None) -> Any:
    adbutils = require("adbutils", "bench")
    return adbutils.AdbClient(host=address.host, port=address.port, socket_timeout=socket_timeout)


def device_id_for(serial: str, address: ServerAddress) -> str:
    """The id that ``open_transport`` maps back to this server and serial."""
    if address.is_default and not _TCP_SERIAL.match(serial):
        return f"adb:{serial}"
    return f"adb:{serial}@{address.host}:{address.port}"


class AdbServerTransport(AndroidTransport):
    """One device of an adb server (see AndroidTransport for ``auto_reconnect``)."""

    def __init__(
        self,
        serial: str,
        *,
        server: ServerAddress | None = None,
        device_id: str | None = None,
        work_dir: str = android.DEFAULT_WORK_DIR,
        io_timeout_s: float = 60.0,
        auto_reconnect: int = 1,
        reconnect_attempts: int = 3,
        reconnect_backoff_s: float = 0.5,
    ):
        if not serial:
            raise DeviceIdError("an adb serial is needed (see `adb devices` or `edgevit-bench devices`)")
        self.serial = serial
        self.server = server or server_address()
        super().__init__(
            device_id or device_id_for(serial, self.server),
            work_dir,
            auto_reconnect,
            reconnect_attempts,
            reconnect_backoff_s,
        )
        self.io_timeout_s = io_timeout_s
        self._errors = require("adbutils.errors", "bench")
        self._client = client(self.server)
        self._device: Any = None
        self._features: set[str] | None = None

    # connection --------------------------------------------------------------------------------
    def connect(self) -> AdbServerTransport:
        try:
            device = self._client.device(self.serial)
            state = device.get_state()
        except self._errors.AdbError as exc:
            raise DeviceNotFoundError(
                self.device_id,
                f"not available on the adb server {self.server.host}:"
                f"{self.server.port}: {exc} (run `adb devices`; for a "
                f"network phone `adb connect {self.serial}`)",
            ) from exc
        except OSError as exc:
            raise DeviceNotFoundError(
                self.device_id,
                f"no adb server at {self.server.host}:{self.server.port} ({exc}); start one with `adb start-server`",
            ) from exc
        if state != "device":
            raise DeviceNotFoundError(
                self.device_id,
                f"state is {state!r}, not 'device' (unauthorized: accept "
                "the prompt on the phone; offline: replug / reconnect)",
            )
        self._device = device
        try:
            self._features = set(device.get_features().split(","))
        except self._errors.AdbError:
            self._features = set()
        return self

    def _reconnect_once(self) -> None:
        """Re-attach; for a network serial (HOST:PORT) ask the server to `adb connect` it again."""
        self._device = None
        try:
            if _TCP_SERIAL.match(self.serial):
                self._client.connect(self.serial, timeout=10)
                self._client.wait_for(self.serial, state="device", timeout=10)
        except self._errors.AdbError as exc:
            raise DeviceDisconnectedError(self.device_id, f"adb connect failed: {exc}") from exc
        self.connect()

    def close(self) -> None:
        self._device = None

    def _dropped(self, exc: BaseException) -> DeviceDisconnectedError:
        self._device = None
        return DeviceDisconnectedError(
            self.device_id,
            f"connection lost: {type(exc).__name__}: {exc} (call reconnect(), or check the cable / network)",
        )

    @property
    def has_shell_v2(self) -> bool:
        self._dev()
        return "shell_v2" in (self._features or set())

    # Transport ---------------------------------------------------------------------------------
    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        budget = timeout or self.io_timeout_s
        device = self._dev()
        try:
            v2 = self.has_shell_v2  # v1: adbutils appends its exit marker; a subshell keeps `exit` from skipping it
            result = device.shell2(command if v2 else f"( {command} )", timeout=budget, v2=v2)
        except self._errors.AdbTimeout as exc:
            log.warning("%s: shell command timed out after %.1f s", self.device_id, budget)
            return ShellResult(exit_code=124, stdout="", stderr=f"timed out after {budget:g} s: {exc}", timed_out=True)
        except (self._errors.AdbError, OSError) as exc:
            raise self._dropped(exc) from exc
        if self.has_shell_v2:
            return ShellResult(exit_code=result.returncode, stdout=result.stdout, stderr=result.stderr)
        return ShellResult(exit_code=result.returncode, stdout=result.output)

    def _push(self, local: Path, remote: str, remote_dir: str, size: int) -> None:
        try:
            self._dev().sync.push(local, remote, mode=0o644, check=True)
        except (self._errors.AdbError, OSError) as exc:
            text = str(exc)
            if "FAIL" in text or "Push not complete" in text:
                free_now = self.free_or_none(remote_dir)
                if free_now is not None and free_now < max(size, 1 << 20):
                    raise DeviceFullError(self.device_id, remote_dir, free_now, size) from exc
                if "FAIL" in text:
                    raise DeviceError(self.device_id, f"push to {remote} refused by the device: {text}") from exc
            raise self._dropped(exc) from exc

    def pull(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        if not self.exists(remote):
            raise FileNotFoundError(f"{self.device_id}: cannot pull {remote}: no such file on the device")

        def op() -> None:
            try:
                self._dev().sync.pull(remote, Path(local))
            except (self._errors.AdbError, OSError) as exc:
                raise self._dropped(exc) from exc

        self._retrying(op)

    def exists(self, remote: str) -> bool:
        def op() -> bool:
            try:
                return bool(self._dev().sync.exists(remote))
            except (self._errors.AdbError, OSError) as exc:
                raise self._dropped(exc) from exc

        return self._retrying(op)


def list_server_devices(address: ServerAddress | None = None) -> list[tuple[str, str]]:
    """(device id, state) of every device the adb server sees; [] when no server is running."""
    address = address or server_address()
    errors = require("adbutils.errors", "bench")
    try:
        infos = client(address, socket_timeout=5).list()
    except (errors.AdbError, OSError) as exc:
        log.info("no adb server at %s:%s (%s)", address.host, address.port, exc)
        return []
    return [(device_id_for(info.serial, address), info.state) for info in infos]
