"""Device ids: what ``parse_device`` accepts (``factory.open_transport`` turns one into a transport).

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

import re
from dataclasses import dataclass

from ..errors import DeviceIdError

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[\w.\-]+):(?P<port>\d{1,5})$")
_SERVER_SUFFIX = re.compile(r"^(?P<serial>.+)@(?P<host>\[[0-9a-fA-F:]+\]|[\w.\-]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device id."""

    id: str
    kind: str  # "local" | "adb" | "ios"
    via: str  # "local" | "server" | "direct-tcp" | "direct-usb" | "ios" | "ios-pmd3" | "ios-devicectl"
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
