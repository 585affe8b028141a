"""Device ids -> transports, and the list of reachable devices.

Device ids:

- ``local``                                 the host itself (runs artifacts in the host runtimes)
- ``adb:SERIAL``                            a device of the adb server ($ADB_SERVER_SOCKET=tcp:HOST:PORT,
                                            $ANDROID_ADB_SERVER_HOST/_PORT, default 127.0.0.1:5037)
- ``adb:SERIAL@HOST:PORT``                  a device of a remote adb server (device farms, DeviceFarmer/STF)
- ``adb-server:SERIAL[@HOST:PORT]``         the same, forced even when SERIAL looks like HOST:PORT
- ``adb:HOST:PORT``, ``adb-direct:HOST[:PORT]``  straight to adbd over TCP with adb-shell (no adb server)
- ``adb-usb:SERIAL``                        straight to adbd over USB with adb-shell (needs adb-shell[usb])
- ``ios:UDID``, ``ios:``                     an iPhone through ``xcrun devicectl`` when it exists (macOS, Xcode 15+),
                                            else through pymobiledevice3 (``ios:`` alone = the only attached iPhone)
- ``ios-pmd3:UDID``, ``ios-devicectl:UDID``  the same, the transport forced; see transports/pmd3.py, devicectl.py
"""

from __future__ import annotations

import abc
import importlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import android
from ..errors import DeviceDisconnectedError, DeviceError, DeviceFullError, DeviceIdError
from ..types import DeviceInfo, Transport

T = TypeVar("T")

log = logging.getLogger(__name__)

LOCAL_TRANSPORT = "edgevit_deploy.device_bench.transports.local:LocalTransport"
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[\w.\-]+):(?P<port>\d{1,5})$")
_SERVER_SUFFIX = re.compile(r"^(?P<serial>.+)@(?P<host>\[[0-9a-fA-F:]+\]|[\w.\-]+):(?P<port>\d{1,5})$")


class AndroidTransport(abc.ABC):
    """What the adb-shell and adb-server transports share: retries after a dropped connection, the
    free-space check before a push, and the device probes. Subclasses implement ``connect``,
    ``_reconnect_once``, ``close``, ``shell``, ``_push``, ``pull`` and ``exists``.

    ``auto_reconnect``: idempotent operations (push, pull, exists, free space) are retried that many times
    after a DeviceDisconnectedError, reconnecting in between; shell commands are never retried.
    """

    kind = "adb"
    device_id: str
    work_dir: str

    def __init__(
        self, device_id: str, work_dir: str, auto_reconnect: int, reconnect_attempts: int, reconnect_backoff_s: float
    ):
        self.device_id = device_id
        self.work_dir = work_dir
        self.auto_reconnect = auto_reconnect
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_backoff_s = reconnect_backoff_s

    _device: Any = None  # the client library's device handle, None while disconnected

    @abc.abstractmethod
    def connect(self) -> Any:
        """Open the connection and set ``self._device``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Drop the connection (never raises for a dead one)."""

    def _dev(self) -> Any:
        if self._device is None:
            self.connect()
        return self._device

    def _reconnect_once(self) -> None:
        self.close()
        self.connect()

    @abc.abstractmethod
    def _push(self, local: Path, remote: str, remote_dir: str, size: int) -> None:
        """Send one file (the base checks free space and retries after drops)."""

    def reconnect(self) -> None:
        """Reconnect, retrying with exponential back-off; DeviceDisconnectedError if the device stays away."""
        last: Exception | None = None
        for attempt in range(self.reconnect_attempts):
            try:
                self._reconnect_once()
                log.info("%s: reconnected (attempt %d)", self.device_id, attempt + 1)
                return
            except (DeviceError, OSError) as exc:
                last = exc
                time.sleep(self.reconnect_backoff_s * (2**attempt))
        raise DeviceDisconnectedError(
            self.device_id, f"could not reconnect after {self.reconnect_attempts} attempts: {last}"
        )

    def _retrying(self, op: Callable[[], T]) -> T:
        for attempt in range(self.auto_reconnect + 1):
            try:
                return op()
            except DeviceDisconnectedError:
                if attempt >= self.auto_reconnect:
                    raise
                self.reconnect()
        raise AssertionError("unreachable")

    def push(self, local: Path, remote: str) -> None:
        """Push one file; DeviceFullError (free and needed bytes) when it cannot fit."""
        local = Path(local)
        if not local.is_file():
            raise FileNotFoundError(f"cannot push {local}: not a file")
        size = local.stat().st_size
        remote_dir = remote.rsplit("/", 1)[0] or "/"
        free = self.free_space(remote_dir)
        if free < size:
            raise DeviceFullError(self.device_id, remote_dir, free, size)
        self._retrying(lambda: self._push(local, remote, remote_dir, size))

    def free_or_none(self, remote_dir: str) -> int | None:
        try:
            return self.free_space(remote_dir)
        except DeviceError:
            return None

    def free_space(self, remote_dir: str) -> int:
        return self._retrying(lambda: android.free_space(self, remote_dir))  # type: ignore[arg-type]

    def device_info(self) -> DeviceInfo:
        return android.device_info(self)  # type: ignore[arg-type]

    def thermal_snapshot(self) -> dict[str, Any]:
        """Thermal status, zone temperatures, CPU frequency caps, battery and screen (read by the sweep)."""
        return android.thermal_snapshot(self)  # type: ignore[arg-type]

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device id."""

    id: str
    kind: str  # "local" | "adb" | "ios"
    via: str  # "local" | "server" | "direct-tcp" | "direct-usb" | "ios"
    serial: str = ""
    host: str = ""
    port: int = 0
    server_host: str | None = None
    server_port: int | None = None


def _port(text: str, device: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise DeviceIdError(f"{device!r}: port {port} is out of range 1-65535")
    return port


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def parse_device(device: str) -> DeviceSpec:
    """Parse a device id (see the module doc); a clear DeviceIdError on anything else."""
    text = (device or "").strip()
    if text == "local":
        return DeviceSpec(id="local", kind="local", via="local")
    scheme, sep, rest = text.partition(":")
    if scheme in ("ios", "ios-pmd3", "ios-devicectl") and sep:
        if rest and not re.fullmatch(r"[A-Za-z0-9\-]{8,64}", rest):
            raise DeviceIdError(
                f"{device!r}: an iOS UDID is 8-64 letters, digits and dashes (`xcrun devicectl list devices` shows it)"
            )
        return DeviceSpec(id=text, kind="ios", via=scheme, serial=rest)
    if not sep or not rest:
        raise DeviceIdError(
            f"unknown device {device!r}: use local, adb:SERIAL, adb:SERIAL@HOST:PORT, "
            "adb:HOST:PORT / adb-direct:HOST:PORT (adbd over TCP) or adb-usb:SERIAL "
            "(`edgevit-bench devices` lists what is reachable)"
        )
    if scheme in ("adb", "adb-server"):
        remote = _SERVER_SUFFIX.match(rest)
        if remote:
            return DeviceSpec(
                id=text,
                kind="adb",
                via="server",
                serial=remote["serial"],
                server_host=_strip_brackets(remote["host"]),
                server_port=_port(remote["port"], device),
            )
        direct = _HOST_PORT.match(rest)
        if scheme == "adb" and direct:
            return DeviceSpec(
                id=text,
                kind="adb",
                via="direct-tcp",
                host=_strip_brackets(direct["host"]),
                port=_port(direct["port"], device),
            )
        return DeviceSpec(id=text, kind="adb", via="server", serial=rest)
    if scheme == "adb-direct":
        direct = _HOST_PORT.match(rest)
        if direct:
            return DeviceSpec(
                id=text,
                kind="adb",
                via="direct-tcp",
                host=_strip_brackets(direct["host"]),
                port=_port(direct["port"], device),
            )
        if re.fullmatch(r"[\w.\-]+", rest):
            return DeviceSpec(id=text, kind="adb", via="direct-tcp", host=rest, port=5555)
        raise DeviceIdError(f"{device!r}: adb-direct needs HOST or HOST:PORT")
    if scheme == "adb-usb":
        return DeviceSpec(id=text, kind="adb", via="direct-usb", serial=rest)
    raise DeviceIdError(
        f"unknown device scheme {scheme!r} in {device!r}: use local, adb, adb-server, adb-direct, adb-usb, ios, "
        "ios-pmd3, ios-devicectl"
    )


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_transport(device: str, *, work_dir: str | None = None, connect: bool = True, **options: Any) -> Transport:
    """A transport for ``device``; ``connect`` (default) reaches the device now so a wrong id fails early.
    ``options`` go to the transport class (timeouts, ``key_path`` for adb-shell, ...)."""
    spec = parse_device(device)
    if spec.via == "local":
        return _load(LOCAL_TRANSPORT)()
    if spec.kind == "ios":
        from .pmd3 import open_ios

        return open_ios(spec.via, spec.serial, spec.id, connect=connect, **options)
    extra: dict[str, Any] = dict(options)
    if work_dir:
        extra["work_dir"] = work_dir
    transport: Any
    if spec.via == "server":
        from .adb_server import AdbServerTransport, server_address

        address = server_address(spec.server_host, spec.server_port)
        transport = AdbServerTransport(spec.serial, server=address, device_id=spec.id, **extra)
    else:
        from .adb_shell import AdbShellTransport

        if spec.via == "direct-tcp":
            transport = AdbShellTransport(spec.host, spec.port, device_id=spec.id, **extra)
        else:
            transport = AdbShellTransport(usb_serial=spec.serial, device_id=spec.id, **extra)
    if connect:
        transport.connect()
    return transport


@dataclass
class DeviceEntry:
    """One reachable device for ``edgevit-bench devices``."""

    id: str
    kind: str
    state: str  # "device", "unauthorized", "offline", ... ("device" for local)
    info: DeviceInfo | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def list_devices(
    probe: bool = True, server_host: str | None = None, server_port: int | None = None
) -> list[DeviceEntry]:
    """``local`` plus every device the adb server sees; with ``probe`` their properties are read too
    (a device that fails the probe is listed with the error, never dropped)."""
    entries: list[DeviceEntry] = []
    local = DeviceEntry(id="local", kind="local", state="device")
    if probe:
        try:
            transport = open_transport("local")
            local.info = transport.device_info()
            transport.close()
        except Exception as exc:  # the local transport belongs to another module: report, don't crash
            local.error = f"{type(exc).__name__}: {exc}"
    entries.append(local)
    entries.extend(list_ios_devices())
    try:
        from .adb_server import list_server_devices, server_address

        address = server_address(server_host, server_port)
        server_devices = list_server_devices(address)
    except ImportError as exc:
        log.info("adb devices not listed: %s", exc)
        return entries
    for device_id, state in server_devices:
        entry = DeviceEntry(id=device_id, kind="adb", state=state)
        if probe and state == "device":
            try:
                transport = open_transport(device_id)
                entry.info = transport.device_info()
                transport.close()
            except DeviceError as exc:
                entry.error = str(exc)
        entries.append(entry)
    return entries


def list_ios_devices() -> list[DeviceEntry]:
    """The iPhones ``xcrun devicectl list devices`` sees; without xcrun (not macOS), those pymobiledevice3 sees."""
    from . import pmd3
    from .devicectl import device_info_from, list_iphones

    if not pmd3.devicectl_available():
        return [
            DeviceEntry(id=e.id, kind="ios", state=e.state, info=e.info, error=e.error) for e in pmd3.device_entries()
        ]
    try:
        phones = list_iphones()
    except DeviceError as exc:
        log.info("iPhones not listed: %s", exc)
        return [DeviceEntry(id="ios:", kind="ios", state="error", error=str(exc))]
    entries = []
    for doc in phones:
        udid = str((doc.get("hardwareProperties") or {}).get("udid", ""))
        conn = doc.get("connectionProperties") or {}
        state = "device" if conn.get("pairingState") == "paired" else str(conn.get("pairingState", "unknown"))
        entries.append(
            DeviceEntry(id=f"ios:{udid}", kind="ios", state=state, info=device_info_from(doc, f"ios:{udid}"))
        )
    return entries
