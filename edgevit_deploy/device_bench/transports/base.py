"""What the adb-shell and adb-server transports share (``AndroidTransport``)."""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .. import android
from ..errors import DeviceDisconnectedError, DeviceError, DeviceFullError
from ..types import DeviceInfo

T = TypeVar("T")

log = logging.getLogger(__name__)


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
