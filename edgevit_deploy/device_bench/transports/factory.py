"""Device id -> an open transport (``open_transport``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..types import Transport
from .device_id import parse_device

LOCAL_TRANSPORT = "edgevit_deploy.device_bench.transports.local:LocalTransport"


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_transport(
    device: str,
    *,
    work_dir: str | None = None,
    connect: bool = True,
    local_work_dir: str | Path | None = None,
    **options: Any,
) -> Transport:
    """A transport for ``device``; ``connect`` (default) reaches the device now so a wrong id fails early.
    ``work_dir``: the folder on an Android device; ``local_work_dir``: the host folder of ``local``.
    ``options`` go to the transport class (timeouts, ``key_path`` for adb-shell, ...)."""
    spec = parse_device(device)
    if spec.via == "local":
        return _load(LOCAL_TRANSPORT)(local_work_dir)
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
