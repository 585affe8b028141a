"""Transports reach one device each; device ids name them.

- ``device_id``: ``parse_device`` and :class:`DeviceSpec` (the device ids: see that module);
- ``factory``: ``open_transport``, a device id -> an open transport;
- ``listing``: ``list_devices`` / ``list_ios_devices`` and :class:`DeviceEntry`;
- ``base``: :class:`AndroidTransport`, what the adb transports share;
- one module per transport: ``local``, ``adb_server``, ``adb_shell``, ``devicectl``, ``pmd3``.

This module only re-exports.
"""

from __future__ import annotations

from .base import AndroidTransport
from .device_id import DeviceSpec, parse_device
from .factory import LOCAL_TRANSPORT, open_transport
from .listing import DeviceEntry, list_devices, list_ios_devices

__all__ = [
    "LOCAL_TRANSPORT",
    "AndroidTransport",
    "DeviceEntry",
    "DeviceSpec",
    "list_devices",
    "list_ios_devices",
    "open_transport",
    "parse_device",
]
