"""A small adbd-compatible server on loopback: the stand-in phone of the tests (and of users' CI).

WARNING: this is not a phone and NOT A SANDBOX. Its shell runs every command on THIS computer, as the
user running the server (``ls /`` lists this computer's root; ``rm`` removes this computer's files). Only
the device paths it knows (``/data``, ``/sdcard``, ``/sys``, ...) are rewritten into ``root``, and file
transfers (sync) cannot leave ``root``. It binds to loopback only. Authentication is the real adbd flow:
the device sends a 20-byte AUTH TOKEN, the client answers with an RSA PKCS#1 v1.5 signature over it
(SHA-1 DigestInfo, as adb signs), which must verify against one of ``authorized_keys`` (adb's public key
format, as in ``~/.android/adbkey.pub`` / ``/data/misc/adb/adb_keys``); a wrong signature gets a new
token, and an AUTH RSAPUBLICKEY for an unknown key is refused unless ``accept_new_keys``. The command
line starts it with authentication ON; the class default (``auth=False``) is for test suites that own the
machine. Needs the ``testing`` extra (``pip install 'edgevit-deploy[testing]'``).

It speaks the adb wire protocol (CNXN / AUTH / OPEN / OKAY / WRTE / CLSE, correct data checksums,
version 0x01000001), the ``shell:`` (v1), ``shell,v2`` (exit codes) and ``exec:`` services and the
sync protocol (STAT / STA2 / LST2 / LIST / SEND / RECV / DONE / QUIT) over a sandboxed file system:
device paths such as ``/data/local/tmp`` live under ``root``. Shell commands run on the HOST with
``/bin/sh``, with device paths rewritten into the sandbox and ``<root>/system/bin`` (fake ``getprop``,
``dumpsys``, ``taskset``, ``df``) first on PATH, so a pushed runner really executes.

Both adb-shell (``AdbDeviceTcp``) and the real ``adb`` client (``adb connect 127.0.0.1:PORT``) can
drive it. Fault knobs (``StandinAdbd.faults``) drop the connection mid-push, report the device full,
delay matching commands and replace their output with garbage.

    with StandinAdbd(tmp_path / "phone") as dev:
        AdbDeviceTcp("127.0.0.1", dev.port).connect()
"""

from __future__ import annotations

import base64
import io
import logging
import os
import queue
import re
import secrets
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..._lazy import require
from . import standin_fs

# importing the stand-in without the extra is the "install extra testing" error
_rsa = require("cryptography.hazmat.primitives.asymmetric.rsa", "testing")
_padding = require("cryptography.hazmat.primitives.asymmetric.padding", "testing")
_hashes = require("cryptography.hazmat.primitives.hashes", "testing")
_asym_utils = require("cryptography.hazmat.primitives.asymmetric.utils", "testing")
_crypto_exc = require("cryptography.exceptions", "testing")

log = logging.getLogger(__name__)

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (
    0x4E584E43,
    0x4E45504F,
    0x59414B4F,
    0x45534C43,
    0x45545257,
    0x48545541,
)
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
FEATURES = "shell_v2,cmd,stat_v2"
SYNC_DATA_MAX = 64 * 1024
_HEADER = struct.Struct("<6I")
_OKAY_TIMEOUT_S = 60.0
_SANDBOX_PREFIXES = ("data", "sdcard", "storage", "sys", "mnt", "vendor", "odm")
_ANDROID_PUBKEY_WORDS = 64  # 2048-bit modulus as 64 little-endian uint32 words
_ANDROID_PUBKEY_SIZE = 4 + 4 + 4 * _ANDROID_PUBKEY_WORDS * 2 + 4  # len, n0inv, n[], rr[], exponent = 524
MAX_AUTH_ATTEMPTS = 10  # signatures tried on one connection before it is closed

SHELL_WARNING = (
    "WARNING: the stand-in adbd is not a sandbox: its shell runs commands on THIS computer as "
    "the user running it (`ls /` lists this computer's /); only device paths (/data, /sdcard, "
    "...) and file transfers are mapped into ROOT. Run it only where that is acceptable (a CI "
    "container), keep authentication on, and never expose its port."
)


class AdbKeyError(ValueError):
    """A public key that is not in adb's format."""


def parse_adb_public_key(text: str) -> Any:
    """adb's public key (base64 of the 524-byte Android RSA struct, optionally followed by " user@host")
    -> a cryptography RSAPublicKey."""
    token = text.strip().split()[0] if text.strip() else ""
    try:
        blob = base64.b64decode(token, validate=True)
    except ValueError as exc:
        raise AdbKeyError(f"not base64: {exc}") from None
    if len(blob) != _ANDROID_PUBKEY_SIZE:
        raise AdbKeyError(f"{len(blob)} bytes, adb keys are {_ANDROID_PUBKEY_SIZE}")
    words = struct.unpack_from("<I", blob, 0)[0]
    if words != _ANDROID_PUBKEY_WORDS:
        raise AdbKeyError(f"modulus of {words} words, adb keys have {_ANDROID_PUBKEY_WORDS}")
    n = int.from_bytes(blob[8 : 8 + 4 * words], "little")
    e = struct.unpack_from("<I", blob, 8 + 8 * words)[0]
    try:
        return _rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise AdbKeyError(f"not an RSA public key: {exc}") from None


def read_authorized_keys(sources: Iterable[str | Path]) -> list[str]:
    """Key lines from files (a ``Path``: ``adbkey.pub``, or an ``adb_keys`` file with one key per line) or key
    strings (a ``str``: one key, as in those files)."""
    keys: list[str] = []
    for source in sources:
        if isinstance(source, Path):
            lines = source.read_text().splitlines()
        else:
            lines = [str(source)]
        keys.extend(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return keys


def verify_token_signature(public_key: Any, token: bytes, signature: bytes) -> bool:
    """adb signs the token as if it were a SHA-1 digest: PKCS#1 v1.5 with the SHA-1 DigestInfo."""
    try:
        public_key.verify(signature, token, _padding.PKCS1v15(), _asym_utils.Prehashed(_hashes.SHA1()))
    except _crypto_exc.InvalidSignature:
        return False
    return True


@dataclass
class Faults:
    """Fault injection. Every knob is read at the moment it matters, so tests may flip them live."""

    drop_after_bytes: int | None = None  # close the connection once a push has received this many bytes (one-shot)
    device_full: bool = False  # SEND fails with "No space left on device"; df reports little space
    free_bytes: int | None = None  # what df reports as available (default: the host's real free space)
    delay_s: float = 0.0  # sleep this long before running commands containing delay_match
    delay_match: str = ""
    garbage_match: str | None = None  # in commands containing this, the stand-in tools print random bytes


def _checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


def _pack(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return _HEADER.pack(command, arg0, arg1, len(data), _checksum(data), command ^ 0xFFFFFFFF) + data


class _ConnectionDropped(Exception):
    pass


class _Stream:
    """One OPENed service: an inbound byte queue and flow-controlled outbound writes."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbound: queue.Queue[bytes | None] = queue.Queue()
        self.okays: queue.Queue[bool] = queue.Queue()
        self.closed = threading.Event()
        self._buffer = b""
        self.process: subprocess.Popen[bytes] | None = None

    # inbound -----------------------------------------------------------------------------------
    def read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.inbound.get()
            if chunk is None:
                raise _ConnectionDropped("stream closed while reading")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    # outbound ----------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        step = max(1, min(self.conn.peer_maxdata, MAX_PAYLOAD))
        for i in range(0, len(data), step):
            if self.closed.is_set():
                raise _ConnectionDropped("stream closed by the host")
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i : i + step])
            try:
                ok = self.okays.get(timeout=_OKAY_TIMEOUT_S)
            except queue.Empty:
                raise _ConnectionDropped("no OKAY from the host") from None
            if not ok:
                raise _ConnectionDropped("stream closed by the host")

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
            self.conn.forget(self.local_id)

    def host_closed(self) -> None:
        """The host sent CLSE (or the connection dropped)."""
        was_open = not self.closed.is_set()
        self.closed.set()
        self.inbound.put(None)
        self.okays.put(False)
        if self.process is not None and self.process.poll() is None:
            _kill_group(self.process)
        if was_open:
            try:
                self.conn.send(A_CLSE, self.local_id, self.remote_id)
            except OSError:
                pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Connection:
    """One host connection (adb-shell, or the adb server multiplexing many streams)."""

    def __init__(self, server: StandinAdbd, sock: socket.socket):
        self.server = server
        self.sock = sock
        self.peer_maxdata = 4096
        self.streams: dict[int, _Stream] = {}
        self._send_lock = threading.Lock()
        self._next_id = 1
        self._id_lock = threading.Lock()
        self._token = secrets.token_bytes(20)
        self._auth_attempts = 0
        self.authenticated = not server.auth

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self._send_lock:
            self.sock.sendall(_pack(command, arg0, arg1, data))

    def forget(self, local_id: int) -> None:
        self.streams.pop(local_id, None)

    def drop(self) -> None:
        """Fault: cut the TCP connection abruptly (an RST, as when adbd dies or the link resets)."""
        try:  # linger 0: the close by the serving thread (woken by the shutdown) sends an RST
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _ConnectionDropped("peer closed")
            buf += chunk
        return buf

    def serve(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _check, magic = _HEADER.unpack(self._recv_exact(24))
                if magic != command ^ 0xFFFFFFFF:
                    log.warning("standin adbd: bad magic, closing connection")
                    return
                data = self._recv_exact(length) if length else b""
                self._dispatch(command, arg0, arg1, data)
        except (_ConnectionDropped, OSError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.closed.set()
                stream.inbound.put(None)
                stream.okays.put(False)
                if stream.process is not None and stream.process.poll() is None:
                    _kill_group(stream.process)
            try:
                self.sock.close()
            except OSError:
                pass

    def _banner(self) -> bytes:
        props = self.server.props
        return (
            f"device::ro.product.name={props.get('ro.product.name', 'standin')};"
            f"ro.product.model={props.get('ro.product.model', 'Standin')};"
            f"ro.product.device={props.get('ro.product.device', 'standin')};"
            f"features={self.server.features}"
        ).encode()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.peer_maxdata = max(1, min(arg1 or 4096, MAX_PAYLOAD))
            if self.authenticated:
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self._banner())
            else:
                self._send_token()
        elif command == A_AUTH and not self.authenticated:
            self._auth(arg0, data)
        elif not self.authenticated:
            return
        elif command == A_OPEN:
            service = data.rstrip(b"\0").decode(errors="replace")
            handler = self.server.service_handler(service)
            if handler is None:
                self.send(A_CLSE, 0, arg0)
                return
            with self._id_lock:
                local_id = self._next_id
                self._next_id += 1
            stream = _Stream(self, local_id, arg0)
            self.streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0)
            threading.Thread(
                target=self._run_service, args=(handler, stream, service), daemon=True, name=f"standin-{service[:20]}"
            ).start()
        elif command == A_WRTE:
            known = self.streams.get(arg1)
            if known is None:
                self.send(A_CLSE, 0, arg0)
                return
            known.inbound.put(data)
            self.send(A_OKAY, known.local_id, known.remote_id)
        elif command == A_OKAY:
            known = self.streams.get(arg1)
            if known is not None:
                known.okays.put(True)
        elif command == A_CLSE:
            known = self.streams.pop(arg1, None)
            if known is not None:
                known.host_closed()

    def _send_token(self) -> None:
        self._token = secrets.token_bytes(20)  # a fresh token for every attempt, as adbd does
        self.send(A_AUTH, AUTH_TOKEN, 0, self._token)

    def _auth(self, kind: int, data: bytes) -> None:
        server = self.server
        if kind == AUTH_SIGNATURE:
            self._auth_attempts += 1
            if server.verify(self._token, data):
                self.authenticated = True
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self._banner())
            elif self._auth_attempts >= MAX_AUTH_ATTEMPTS:
                log.warning("standin adbd: %d bad signatures, closing the connection", self._auth_attempts)
                raise _ConnectionDropped("too many failed AUTH attempts")
            else:
                self._send_token()  # not one of our keys: the client may try its next key
        elif kind == AUTH_RSAPUBLICKEY:
            key = data.rstrip(b"\0").decode(errors="replace").strip()
            if server.accept_new_keys:
                try:
                    server.authorize(key)
                except AdbKeyError as exc:
                    log.warning("standin adbd: refused a malformed public key (%s)", exc)
                    raise _ConnectionDropped("malformed public key") from None
                server.public_keys.append(key)
                self.authenticated = True
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self._banner())
            else:
                # a phone would ask its user; the stand-in has none: refuse and hang up
                server.refused_keys.append(key)
                log.warning(
                    "standin adbd: refused an unknown public key (%s); add it to the authorized keys",
                    key.split()[-1] if key.split() else "?",
                )
                raise _ConnectionDropped("unknown public key refused")

    def _run_service(self, handler: Any, stream: _Stream, service: str) -> None:
        try:
            handler(stream, service)
        except _ConnectionDropped:
            return
        except OSError:
            return
        except Exception:  # a bug in a service must not take the server down
            log.exception("standin adbd: service %r failed", service)
        try:
            stream.close()
        except OSError:
            pass


class StandinAdbd:
    """The stand-in device. ``root`` is its sandbox; ``port=0`` picks a free port."""

    def __init__(
        self,
        root: Path,
        port: int = 0,
        *,
        auth: bool = False,
        props: dict[str, str] | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        features: str = FEATURES,
        authorized_keys: Iterable[str | Path] = (),
        accept_new_keys: bool = False,
    ):
        self.root = Path(root).resolve()
        if any(ch in str(self.root) for ch in "'\"\\$`\n ") or ":" in str(self.root):
            raise ValueError(f"the sandbox root must be a plain path without quotes, spaces or '$': {self.root}")
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the stand-in adbd binds to loopback only (its shell is this computer's), not {host!r}")
        self.auth = auth
        self.accept_new_keys = accept_new_keys
        self._keys: dict[str, Any] = {}
        for key in read_authorized_keys(authorized_keys):
            self.authorize(key)
        if auth and not self._keys and not accept_new_keys:
            raise ValueError("auth=True needs authorized_keys (e.g. ~/.android/adbkey.pub) or accept_new_keys=True")
        self.refused_keys: list[str] = []
        self.features = features  # advertised in CNXN; without "shell_v2" clients fall back to shell v1
        self.faults = faults or Faults()
        self.props = dict(standin_fs.DEFAULT_PROPS)
        self.props.update(props or {})
        self.public_keys: list[str] = []
        self.pushed_bytes = 0
        standin_fs.populate(self.root, self.props)
        from . import standin_app

        standin_app.install_tools(self.root)  # pm / am / cmd package / pidof: the benchmark app's path
        self._sock = socket.create_server((host, port))
        self.host = host
        self.port = self._sock.getsockname()[1]
        self._connections: list[_Connection] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prefix_re = re.compile(r"(?<![\w/.\-~])/(" + "|".join(_SANDBOX_PREFIXES) + r")(?=/|$|[\s'\";|&)])")

    # lifecycle ---------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> StandinAdbd:
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="standin-adbd")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        for conn in list(self._connections):
            conn.drop()

    def __enter__(self) -> StandinAdbd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_connections(self) -> None:
        """Fault: cut every live connection now (the phone's cable was pulled)."""
        for conn in list(self._connections):
            conn.drop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="standin-conn").start()

    def _serve(self, conn: _Connection) -> None:
        try:
            conn.serve()
        finally:
            if conn in self._connections:
                self._connections.remove(conn)

    # auth --------------------------------------------------------------------------------------
    def authorize(self, key: str) -> None:
        """Trust one more public key (adb's format); AdbKeyError when it does not parse."""
        self._keys[key.split()[0]] = parse_adb_public_key(key)

    def verify(self, token: bytes, signature: bytes) -> bool:
        return any(verify_token_signature(k, token, signature) for k in list(self._keys.values()))

    # paths -------------------------------------------------------------------------------------
    def host_path(self, device_path: str) -> Path:
        """Where a device path lives in the sandbox: ".." cannot climb above the root, and a symlink that
        resolves outside it is refused (PermissionError)."""
        norm = os.path.normpath("/" + device_path.lstrip("/"))
        path = self.root / norm.lstrip("/")
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise PermissionError(13, "outside the stand-in's root", device_path)
        return path

    def rewrite_command(self, command: str) -> str:
        """Device paths in a shell command -> sandbox paths (the root has no characters needing quotes)."""
        return self._prefix_re.sub(lambda m: f"{self.root}/{m.group(1)}", command)

    # services ----------------------------------------------------------------------------------
    def service_handler(self, service: str) -> Any:
        name, _, _ = service.partition(":")
        if name == "shell":
            return self._shell_v1
        if name.startswith("shell,") and "v2" in name.split(",") and "shell_v2" in self.features:
            return self._shell_v2
        if name == "exec":
            return self._exec
        if name == "sync":
            return self._sync
        return None

    def _spawn(self, command: str, merge: bool, stdin: bool = False) -> subprocess.Popen[bytes]:
        faults = self.faults
        if faults.delay_s and faults.delay_match and faults.delay_match in command:
            command = f"sleep {faults.delay_s:g}; {command}"
        free = 4096 if faults.device_full else faults.free_bytes
        standin_fs.write_free_space(self.root, free)
        env = standin_fs.shell_env(self.root)
        if faults.garbage_match is not None and faults.garbage_match in command:
            env[standin_fs.GARBAGE_ENV] = "1"
        return subprocess.Popen(
            ["/bin/sh", "-c", self.rewrite_command(command)],
            cwd=self.root / "data/local/tmp",
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            env=env,
            start_new_session=True,
        )

    def _shell_v1(self, stream: _Stream, service: str) -> None:
        command = service.partition(":")[2]
        if not command.strip():
            return  # interactive shells are not supported: close at once
        proc = stream.process = self._spawn(command, merge=True)
        out = cast(io.BufferedReader, proc.stdout)
        for chunk in iter(lambda: out.read1(65536), b""):
            stream.write(chunk)
        proc.wait()

    def _exec(self, stream: _Stream, service: str) -> None:
        """Like shell v1, plus the host's bytes go to the command's stdin (``exec:cmd package install -S N``
        streams the APK that way)."""
        command = service.partition(":")[2]
        if not command.strip():
            return
        proc = stream.process = self._spawn(command, merge=True, stdin=True)
        stdin = cast(io.BufferedWriter, proc.stdin)
        out = cast(io.BufferedReader, proc.stdout)

        def feed() -> None:
            try:
                while True:
                    chunk = stream.inbound.get()
                    if chunk is None:
                        break
                    stdin.write(chunk)
                    stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            finally:
                try:
                    stdin.close()
                except OSError:
                    pass

        threading.Thread(target=feed, daemon=True, name="standin-exec-stdin").start()
        for chunk in iter(lambda: out.read1(65536), b""):
            stream.write(chunk)
        proc.wait()

    def _shell_v2(self, stream: _Stream, service: str) -> None:
        command = service.partition(":")[2]
        proc = stream.process = self._spawn(command, merge=False)
        assert proc.stdout is not None and proc.stderr is not None
        lock = threading.Lock()

        def pump(pipe: Any, packet_id: int) -> None:
            for chunk in iter(lambda: pipe.read1(65536), b""):
                with lock:
                    stream.write(struct.pack("<BI", packet_id, len(chunk)) + chunk)

        err_thread = threading.Thread(target=pump, args=(proc.stderr, 2), daemon=True)
        err_thread.start()
        pump(proc.stdout, 1)
        err_thread.join()
        code = proc.wait()
        code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, as sh reports it
        stream.write(struct.pack("<BIB", 3, 1, code & 0xFF))

    # sync --------------------------------------------------------------------------------------
    def _sync(self, stream: _Stream, service: str) -> None:
        while True:
            header = stream.read_exact(8)
            ident, length = header[:4], struct.unpack("<I", header[4:])[0]
            if ident == b"QUIT":
                return
            if ident not in (b"STAT", b"STA2", b"LST2", b"LIST", b"SEND", b"RECV"):
                self._sync_fail(stream, f"unknown sync request {ident!r}")
                return
            if length > 1024:
                self._sync_fail(stream, "path too long")
                return
            path = stream.read_exact(length).decode(errors="surrogateescape")
            if ident == b"STAT":
                self._sync_stat_v1(stream, path)
            elif ident in (b"STA2", b"LST2"):
                self._sync_stat_v2(stream, path, follow=ident == b"STA2")
            elif ident == b"LIST":
                self._sync_list(stream, path)
            elif ident == b"SEND":
                self._sync_send(stream, path)
            else:
                self._sync_recv(stream, path)

    @staticmethod
    def _sync_fail(stream: _Stream, message: str) -> None:
        data = message.encode()
        stream.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _sync_stat_v1(self, stream: _Stream, path: str) -> None:
        try:
            st = os.stat(self.host_path(path))
            stream.write(b"STAT" + struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
        except OSError:
            stream.write(b"STAT" + struct.pack("<III", 0, 0, 0))

    def _sync_stat_v2(self, stream: _Stream, path: str, follow: bool) -> None:
        ident = b"STA2" if follow else b"LST2"
        try:
            target = self.host_path(path)
            st = os.stat(target) if follow else os.lstat(target)
            stream.write(
                ident
                + struct.pack(
                    "<IQQIIIIQqqq",
                    0,
                    st.st_dev,
                    st.st_ino,
                    st.st_mode,
                    st.st_nlink,
                    st.st_uid,
                    st.st_gid,
                    st.st_size,
                    int(st.st_atime),
                    int(st.st_mtime),
                    int(st.st_ctime),
                )
            )
        except OSError as exc:
            stream.write(ident + struct.pack("<IQQIIIIQqqq", exc.errno or 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    def _sync_list(self, stream: _Stream, path: str) -> None:
        out = b""
        try:
            target = self.host_path(path)
            names = sorted(os.listdir(target))
        except OSError:
            names = []
        for name in names:
            try:
                st = os.lstat(target / name)
            except OSError:
                continue
            raw = name.encode(errors="surrogateescape")
            out += b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)) + raw
        stream.write(out + b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))

    def _sync_send(self, stream: _Stream, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"
        try:
            mode = int(mode_text)
        except ValueError:
            mode = 0o100644
        error: str | None = None
        try:
            target = self.host_path(path)
        except PermissionError:
            error = f"couldn't create file: Permission denied ({path})"
            target = self.root / "data/local/tmp/.refused"
        if self.faults.device_full:
            error = error or f"couldn't create file: No space left on device ({path})"
        tmp = target.with_name(f".{target.name}.standin-part")
        handle = None
        if error is None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    raise IsADirectoryError(f"{path} is a directory")
                handle = open(tmp, "wb")  # noqa: SIM115 - written chunk by chunk as DATA packets arrive, closed on DONE
            except OSError as exc:
                error = f"couldn't create file: {exc.strerror or exc}"
        received = 0
        try:
            while True:
                header = stream.read_exact(8)
                ident, length = header[:4], struct.unpack("<I", header[4:])[0]
                if ident == b"DATA":
                    if length > SYNC_DATA_MAX:
                        error = error or "data packet too large"
                    chunk = stream.read_exact(length)
                    received += len(chunk)
                    self.pushed_bytes += len(chunk)
                    limit = self.faults.drop_after_bytes
                    if limit is not None and received >= limit:
                        self.faults.drop_after_bytes = None  # one-shot
                        stream.conn.drop()
                        raise _ConnectionDropped("fault: dropped mid-push")
                    if handle is not None and error is None:
                        handle.write(chunk)
                elif ident == b"DONE":
                    break
                else:
                    error = error or f"unexpected {ident!r} during SEND"
                    break
        finally:
            if handle is not None:
                handle.close()
        if error is None:
            os.replace(tmp, target)
            os.chmod(target, stat.S_IMODE(mode) or 0o644)
            if length:
                os.utime(target, (length, length))
            stream.write(b"OKAY" + struct.pack("<I", 0))
        else:
            tmp.unlink(missing_ok=True)
            self._sync_fail(stream, error)

    def _sync_recv(self, stream: _Stream, path: str) -> None:
        try:
            with open(self.host_path(path), "rb") as handle:
                while True:
                    chunk = handle.read(SYNC_DATA_MAX)
                    if not chunk:
                        break
                    stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        except OSError as exc:
            self._sync_fail(
                stream,
                f"remote object '{path}' does not exist"
                if isinstance(exc, FileNotFoundError)
                else f"{exc.strerror}: {path}",
            )
            return
        stream.write(b"DONE" + struct.pack("<I", 0))


def main(argv: list[str] | None = None) -> int:
    """``python -m edgevit_deploy.device_bench.testing.standin_adbd ROOT [--port N] [--authorized-keys FILE]``."""
    import argparse
    import time

    parser = argparse.ArgumentParser(
        prog="python -m edgevit_deploy.device_bench.testing.standin_adbd",
        description="Run a stand-in adbd on loopback (for CI without a phone). " + SHELL_WARNING,
        epilog="Authentication is ON: only clients holding the private key of an authorized public key "
        "connect (adb-shell: EDGEVIT_ADB_KEY or ~/.android/adbkey; the adb client: ~/.android/adbkey "
        "or ADB_VENDOR_KEYS). --no-auth lets ANY local user run commands as you.",
    )
    parser.add_argument("root", type=Path, help="folder holding the device's file system (created)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--authorized-keys",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="adb public keys to accept (adbkey.pub, or an adb_keys file with one per line); "
        "repeatable; default ~/.android/adbkey.pub",
    )
    parser.add_argument(
        "--accept-new-keys",
        action="store_true",
        help="also accept any key a client offers (AUTH RSAPUBLICKEY), like tapping 'Allow' "
        "on every prompt: any local user gets a shell",
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="DANGEROUS: no authentication; any local user gets a shell as you"
    )
    parser.add_argument("--auth", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old scripts
    args = parser.parse_args(argv)
    keys: list[Path] = list(args.authorized_keys)
    if not args.no_auth and not keys:
        default = Path("~/.android/adbkey.pub").expanduser()
        if default.is_file():
            keys = [default]
        elif not args.accept_new_keys:
            parser.error(
                "authentication is on and no key is authorized: give --authorized-keys "
                "~/.android/adbkey.pub (run `adb start-server` once to create it), or --accept-new-keys"
            )
    for key_file in keys:
        if not key_file.is_file():
            parser.error(f"--authorized-keys {key_file}: no such file")
    try:
        server = StandinAdbd(
            args.root, args.port, auth=not args.no_auth, authorized_keys=keys, accept_new_keys=args.accept_new_keys
        )
    except (AdbKeyError, ValueError, OSError) as exc:
        parser.error(str(exc))
    print(SHELL_WARNING, file=sys.stderr, flush=True)
    if args.no_auth:
        print("WARNING: --no-auth: any local user can connect and run commands as you", file=sys.stderr, flush=True)
    with server as dev:
        mode = "no authentication" if args.no_auth else f"{len(dev._keys)} authorized key(s)"
        print(f"standin adbd listening on {dev.address} (root {dev.root}, {mode})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
