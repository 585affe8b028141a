"""Transport straight to adbd with adb-shell (TCP ``adb-direct:HOST:PORT``, USB ``adb-usb:SERIAL``).

Shell v1 only (adb-shell has no shell v2), so every command gets an exit-code marker appended.
RSA keys: ``~/.android/adbkey`` (the one the real adb uses, so a phone that trusts this computer
trusts us too), generated with adb-shell's keygen when missing.

A dead TCP link is noticed without waiting for the runner's timeout: adb-shell's own TCP transport reads
an EOF (adbd exited, the peer closed) as "no data yet" and spins on it until the read timeout (600 s of
100 % CPU for a long benchmark). Ours raises at once on EOF, and TCP keep-alive probes (every
``dead_link_s / 4`` s after as long idle, 3 unanswered -> the kernel fails the socket) bound how long a
silently vanished peer (Wi-Fi gone, phone off) takes to surface: about ``dead_link_s`` (20 s), whatever the
command's timeout. Either way the operation raises DeviceDisconnectedError, which the sweep answers with
its reconnect / mark-failed path. (adb has no application-level ping; a peer that is alive but stops
answering is bounded by the I/O timeout for file transfers and by the runner timeout for commands.)
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

from ..._lazy import require
from .. import android
from ..errors import DeviceDisconnectedError, DeviceError, DeviceFullError, DeviceNotFoundError
from ..shell import split_exit_marker, with_exit_marker
from ..types import ShellResult
from .base import AndroidTransport

log = logging.getLogger(__name__)

DEFAULT_KEY_PATH = Path("~/.android/adbkey")
_CONNECT_ERRORS_MODULE = "adb_shell.exceptions"


def _keepalive(sock: socket.socket, dead_link_s: float) -> None:
    """TCP keep-alive so that a peer that vanished without a FIN/RST fails the socket in ~dead_link_s."""
    interval = max(1, int(dead_link_s // 4))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", interval),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", int(dead_link_s * 1000)),
    ):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has all four; macOS has TCP_KEEPINTVL / TCP_KEEPCNT (TCP_KEEPALIVE)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:
                pass


def _tcp_transport(host: str, port: int, dead_link_s: float) -> Any:
    """adb-shell's TcpTransport that raises on EOF (instead of returning b"" forever) and keeps the link alive."""
    base = require("adb_shell.transport.tcp_transport", "bench").TcpTransport

    class EofAwareTcpTransport(base):  # type: ignore[misc, valid-type]
        def connect(self, transport_timeout_s: Any) -> None:
            super().connect(transport_timeout_s)
            _keepalive(self._connection, dead_link_s)

        def bulk_read(self, numbytes: int, transport_timeout_s: Any) -> bytes:
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError(f"adbd at {host}:{port} closed the connection (EOF)")
            return bytes(data)

    return EofAwareTcpTransport(host, port)


def load_or_create_key(path: Path | None = None) -> Any:
    """A PythonRSASigner for ``path`` (default ~/.android/adbkey), creating the key pair if missing."""
    key_path = (path or DEFAULT_KEY_PATH).expanduser()
    keygen = require("adb_shell.auth.keygen", "bench")
    signer_mod = require("adb_shell.auth.sign_pythonrsa", "bench")
    if not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("no adb key at %s: generating one", key_path)
        keygen.keygen(str(key_path))
    return signer_mod.PythonRSASigner.FromRSAKeyPath(str(key_path))


class AdbShellTransport(AndroidTransport):
    """One device reached with adb-shell (see AndroidTransport for ``auto_reconnect``).

    A closed link surfaces at once (EOF), a vanished one within about ``dead_link_s`` (TCP keep-alive);
    ``io_timeout_s`` bounds how long one sync packet may take."""

    def __init__(
        self,
        host: str | None = None,
        port: int = 5555,
        *,
        usb_serial: str | None = None,
        device_id: str | None = None,
        work_dir: str = android.DEFAULT_WORK_DIR,
        key_path: Path | None = None,
        connect_timeout_s: float = 10.0,
        io_timeout_s: float = 20.0,
        dead_link_s: float = 20.0,
        auto_reconnect: int = 1,
        reconnect_attempts: int = 3,
        reconnect_backoff_s: float = 0.5,
    ):
        if host is None and usb_serial is None:
            raise ValueError("give a TCP host (adb-direct:HOST:PORT) or a USB serial (adb-usb:SERIAL)")
        super().__init__(
            device_id or (f"adb-direct:{host}:{port}" if host else f"adb-usb:{usb_serial}"),
            work_dir,
            auto_reconnect,
            reconnect_attempts,
            reconnect_backoff_s,
        )
        self.host = host
        self.port = int(port)
        self.usb_serial = usb_serial
        self.key_path = key_path or key_path_from_env()
        self.connect_timeout_s = connect_timeout_s
        self.io_timeout_s = io_timeout_s
        self.dead_link_s = dead_link_s
        self._exc = require(_CONNECT_ERRORS_MODULE, "bench")
        self._device: Any = None
        self._signer: Any = None

    # connection --------------------------------------------------------------------------------
    def _make_device(self) -> Any:
        adb_device = require("adb_shell.adb_device", "bench")
        if self.host is not None:
            return adb_device.AdbDevice(
                _tcp_transport(self.host, self.port, self.dead_link_s), default_transport_timeout_s=self.io_timeout_s
            )
        try:  # AdbDeviceUsb needs adb-shell's usb extra (libusb1); without it adb-shell raises InvalidTransportError
            return adb_device.AdbDeviceUsb(serial=self.usb_serial, default_transport_timeout_s=self.io_timeout_s)
        except self._exc.InvalidTransportError as exc:
            raise DeviceError(
                self.device_id,
                "USB straight to adbd needs adb-shell's usb extra: pip install "
                "'adb-shell[usb]' (libusb1); or use the adb server: "
                f"adb:{self.usb_serial} ({exc})",
            ) from exc
        except self._exc.UsbDeviceNotFoundError as exc:
            raise DeviceNotFoundError(
                self.device_id,
                f"no USB device with serial {self.usb_serial} ({exc}); "
                "is an adb server holding it? (`adb kill-server`)",
            ) from exc

    def connect(self) -> AdbShellTransport:
        if self._signer is None:
            self._signer = load_or_create_key(self.key_path)
        device = self._make_device()
        try:
            device.connect(
                rsa_keys=[self._signer],
                transport_timeout_s=self.connect_timeout_s,
                auth_timeout_s=self.connect_timeout_s,
                read_timeout_s=self.connect_timeout_s,
            )
        except self._exc.DeviceAuthError as exc:
            raise DeviceError(
                self.device_id,
                f"the device refused our key ({exc}); accept the 'Allow USB debugging' prompt on the phone and retry",
            ) from exc
        except (
            OSError,
            self._exc.TcpTimeoutException,
            self._exc.AdbTimeoutError,
            self._exc.AdbConnectionError,
            self._exc.InvalidResponseError,
        ) as exc:
            raise DeviceNotFoundError(
                self.device_id, f"cannot connect: {exc} (is adbd listening? `adb tcpip 5555` on the phone enables it)"
            ) from exc
        self._device = device
        return self

    def close(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            except Exception:  # closing a dead socket must not mask the real error
                pass
            self._device = None

    def _dropped(self, exc: BaseException) -> DeviceDisconnectedError:
        self.close()
        return DeviceDisconnectedError(
            self.device_id,
            f"connection lost: {type(exc).__name__}: {exc} (call reconnect(), or check the cable / Wi-Fi)",
        )

    def _io_errors(self) -> tuple[type[BaseException], ...]:
        e = self._exc
        return (
            OSError,
            e.AdbConnectionError,
            e.TcpTimeoutException,
            e.AdbTimeoutError,
            e.InvalidResponseError,
            e.InvalidCommandError,
            e.InvalidChecksumError,
            struct.error,
        )

    # Transport ---------------------------------------------------------------------------------
    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        budget = timeout or self.io_timeout_s
        try:
            output = self._dev().shell(
                with_exit_marker(command),
                transport_timeout_s=budget,
                read_timeout_s=budget,
                timeout_s=budget,
                decode=True,
            )
        except (self._exc.TcpTimeoutException, self._exc.AdbTimeoutError) as exc:
            log.warning("%s: shell command timed out after %.1f s", self.device_id, budget)
            self.close()  # the stream is half-read: start clean next time (closing also ends the remote process)
            return ShellResult(exit_code=124, stdout="", stderr=f"timed out after {budget:g} s: {exc}", timed_out=True)
        except self._io_errors() as exc:
            raise self._dropped(exc) from exc
        text, code = split_exit_marker(output)
        if code is None:
            raise self._dropped(ConnectionError("shell output ended without the exit-code marker"))
        return ShellResult(exit_code=code, stdout=text)

    def _push(self, local: Path, remote: str, remote_dir: str, size: int) -> None:
        try:
            self._dev().push(
                str(local),
                remote,
                st_mode=0o100644,
                transport_timeout_s=self.io_timeout_s,
                read_timeout_s=self.io_timeout_s,
            )
        except self._exc.PushFailedError as exc:
            if "No space left" in str(exc):
                raise DeviceFullError(self.device_id, remote_dir, self.free_or_none(remote_dir), size) from exc
            raise DeviceError(self.device_id, f"push to {remote} failed: {exc}") from exc
        except self._io_errors() as exc:
            raise self._dropped(exc) from exc

    def pull(self, remote: str, local: Path) -> None:
        def op() -> None:
            try:
                self._dev().pull(
                    remote, str(local), transport_timeout_s=self.io_timeout_s, read_timeout_s=self.io_timeout_s
                )
            except self._exc.AdbCommandFailureException as exc:
                raise FileNotFoundError(f"{self.device_id}: cannot pull {remote}: {exc}") from exc
            except self._io_errors() as exc:
                raise self._dropped(exc) from exc

        Path(local).parent.mkdir(parents=True, exist_ok=True)
        self._retrying(op)

    def exists(self, remote: str) -> bool:
        def op() -> bool:
            try:
                mode, _size, _mtime = self._dev().stat(
                    remote, transport_timeout_s=self.io_timeout_s, read_timeout_s=self.io_timeout_s
                )
            except self._io_errors() as exc:
                raise self._dropped(exc) from exc
            return mode != 0

        return self._retrying(op)


def key_path_from_env() -> Path | None:
    """$EDGEVIT_ADB_KEY names another private key file than ~/.android/adbkey."""
    value = os.environ.get("EDGEVIT_ADB_KEY")
    return Path(value) if value else None
