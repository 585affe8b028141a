"""A small adbd-compatible server on loopback: the stand-in phone of the tests (and of users' CI).

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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import standin_fs

log = logging.getLogger(__name__)

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (
    0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257, 0x48545541)
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
FEATURES = "shell_v2,cmd,stat_v2"
SYNC_DATA_MAX = 64 * 1024
_HEADER = struct.Struct("<6I")
_OKAY_TIMEOUT_S = 60.0
_SANDBOX_PREFIXES = ("data", "sdcard", "storage", "sys", "mnt", "vendor", "odm")


@dataclass
class Faults:
    """Fault injection. Every knob is read at the moment it matters, so tests may flip them live."""

    drop_after_bytes: int | None = None   # close the connection once a push has received this many bytes (one-shot)
    device_full: bool = False             # SEND fails with "No space left on device"; df reports little space
    free_bytes: int | None = None         # what df reports as available (default: the host's real free space)
    delay_s: float = 0.0                  # sleep this long before running commands containing delay_match
    delay_match: str = ""
    garbage_match: str | None = None      # in commands containing this, the stand-in tools print random bytes


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
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + step])
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
        return (f"device::ro.product.name={props.get('ro.product.name', 'standin')};"
                f"ro.product.model={props.get('ro.product.model', 'Standin')};"
                f"ro.product.device={props.get('ro.product.device', 'standin')};"
                f"features={self.server.features}").encode()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.peer_maxdata = max(1, min(arg1 or 4096, MAX_PAYLOAD))
            if self.authenticated:
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self._banner())
            else:
                self.send(A_AUTH, AUTH_TOKEN, 0, self._token)
        elif command == A_AUTH:
            if arg0 == AUTH_SIGNATURE:
                # we keep no list of authorised keys: ask for the public key (as a fresh device does)
                self.send(A_AUTH, AUTH_TOKEN, 0, self._token)
            elif arg0 == AUTH_RSAPUBLICKEY:
                self.server.public_keys.append(data.rstrip(b"\0").decode(errors="replace"))
                self.authenticated = True
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self._banner())
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
            threading.Thread(target=self._run_service, args=(handler, stream, service), daemon=True,
                             name=f"standin-{service[:20]}").start()
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                self.send(A_CLSE, 0, arg0)
                return
            stream.inbound.put(data)
            self.send(A_OKAY, stream.local_id, stream.remote_id)
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.okays.put(True)
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.host_closed()

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

    def __init__(self, root: Path, port: int = 0, *, auth: bool = False, props: dict[str, str] | None = None,
                 faults: Faults | None = None, host: str = "127.0.0.1", features: str = FEATURES):
        self.root = Path(root).resolve()
        if any(ch in str(self.root) for ch in "'\"\\$`\n ") or ":" in str(self.root):
            raise ValueError(f"the sandbox root must be a plain path without quotes, spaces or '$': {self.root}")
        self.auth = auth
        self.features = features   # advertised in CNXN; without "shell_v2" clients fall back to shell v1
        self.faults = faults or Faults()
        self.props = dict(standin_fs.DEFAULT_PROPS)
        self.props.update(props or {})
        self.public_keys: list[str] = []
        self.pushed_bytes = 0
        standin_fs.populate(self.root, self.props)
        from . import standin_app

        standin_app.install_tools(self.root)   # pm / am / cmd package / pidof: the benchmark app's path
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

    # paths -------------------------------------------------------------------------------------
    def host_path(self, device_path: str) -> Path:
        """Where a device path lives in the sandbox (".." cannot climb above the sandbox root)."""
        norm = os.path.normpath("/" + device_path.lstrip("/"))
        return self.root / norm.lstrip("/")

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
        return subprocess.Popen(["/bin/sh", "-c", self.rewrite_command(command)], cwd=self.root / "data/local/tmp",
                                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge else subprocess.PIPE, env=env,
                                start_new_session=True)

    def _shell_v1(self, stream: _Stream, service: str) -> None:
        command = service.partition(":")[2]
        if not command.strip():
            return  # interactive shells are not supported: close at once
        proc = stream.process = self._spawn(command, merge=True)
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            stream.write(chunk)
        proc.wait()

    def _exec(self, stream: _Stream, service: str) -> None:
        """Like shell v1, plus the host's bytes go to the command's stdin (``exec:cmd package install -S N``
        streams the APK that way)."""
        command = service.partition(":")[2]
        if not command.strip():
            return
        proc = stream.process = self._spawn(command, merge=True, stdin=True)
        assert proc.stdin is not None and proc.stdout is not None

        def feed() -> None:
            try:
                while True:
                    chunk = stream.inbound.get()
                    if chunk is None:
                        break
                    proc.stdin.write(chunk)
                    proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        threading.Thread(target=feed, daemon=True, name="standin-exec-stdin").start()
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
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
            stream.write(ident + struct.pack("<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink,
                                             st.st_uid, st.st_gid, st.st_size, int(st.st_atime),
                                             int(st.st_mtime), int(st.st_ctime)))
        except OSError as exc:
            stream.write(ident + struct.pack("<IQQIIIIQqqq", exc.errno or 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    def _sync_list(self, stream: _Stream, path: str) -> None:
        target = self.host_path(path)
        out = b""
        try:
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
        target = self.host_path(path)
        error: str | None = None
        if self.faults.device_full:
            error = f"couldn't create file: No space left on device ({path})"
        tmp = target.with_name(f".{target.name}.standin-part")
        handle = None
        if error is None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    raise IsADirectoryError(f"{path} is a directory")
                handle = open(tmp, "wb")
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
        target = self.host_path(path)
        try:
            with open(target, "rb") as handle:
                while True:
                    chunk = handle.read(SYNC_DATA_MAX)
                    if not chunk:
                        break
                    stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        except OSError as exc:
            self._sync_fail(stream, f"remote object '{path}' does not exist" if isinstance(exc, FileNotFoundError)
                            else f"{exc.strerror}: {path}")
            return
        stream.write(b"DONE" + struct.pack("<I", 0))


def main(argv: list[str] | None = None) -> int:
    """``python -m edgevit_deploy.device_bench.testing.standin_adbd ROOT [--port N] [--auth]``."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Run a stand-in adbd on loopback (for CI without a phone).")
    parser.add_argument("root", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth", action="store_true")
    args = parser.parse_args(argv)
    with StandinAdbd(args.root, args.port, auth=args.auth) as dev:
        print(f"standin adbd listening on {dev.address} (sandbox {dev.root})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
