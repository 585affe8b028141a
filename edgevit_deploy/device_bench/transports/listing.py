"""The devices this host can reach, for ``edgevit-bench devices``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeviceError
from ..types import DeviceInfo
from .factory import open_transport

log = logging.getLogger(__name__)


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
