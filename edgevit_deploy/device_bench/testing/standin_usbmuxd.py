"""A stand-in iPhone behind a stand-in usbmuxd, speaking the real protocols so that **pymobiledevice3 itself**
drives it (pointed at it with ``usbmux_address=`` / ``$EDGEVIT_USBMUX_ADDRESS``), on Linux CI.

- usbmuxd: the plist protocol (version 1, ``MessageType`` plists after a 16-byte little-endian header) on a
  temporary unix socket: ``ReadBUID``, ``ListDevices``, ``ReadPairRecord``, ``SavePairRecord``, ``Listen``
  (``Attached`` / ``Detached`` as iPhones come and go) and ``Connect``, after which the socket carries the
  device port's own protocol.
- lockdownd (port 62078): ``QueryType``, ``GetValue``, ``StartSession`` (TLS from then on, with the device
  certificate of a pair record generated here with ``cryptography``: root CA, host and device certificates),
  ``StartService`` (a fresh port per start; the developer services answer ``InvalidService``, as on an
  iPhone without a mounted developer disk image), ``StopSession``.
- ``com.apple.mobile.installation_proxy``: ``Lookup``, ``Browse``, ``Install`` / ``Upgrade`` of a package that
  was copied to ``/PublicStaging`` over AFC.
- ``com.apple.mobile.house_arrest``: ``VendContainer`` / ``VendDocuments``, then AFC over the app's container.
- ``com.apple.afc``: AFC over the media folder. AFC is served packet by packet (``CFA6LPAA`` headers): file
  info, read dir, make dir, remove, rename, open / read / write / seek / close, device info.

The iPhones are the sandbox of the stand-in devicectl (:mod:`.standin_devicectl`, the same ``ROOT/<udid>/``
folders: ``device.json``, ``attached``, ``apps/<bundle>/data``, ``thermal``, ``fault``, ``quota``), so the
Python reference iOS app (:mod:`..jobs.reference_ios_app`) runs the jobs, started exactly as the devicectl
stand-in starts it. Extra files: ``ROOT/<udid>/media/`` (the AFC media root), ``ROOT/<udid>/pair_record.plist``.

Launching: an iPhone without developer services cannot be told to launch an app; the user opens it. The
stand-in plays that user: when the host resets the app's heartbeat (writes an empty ``Documents/status.json``,
which the host does just before it asks for the launch) the app is started, unless ``fault`` says ``nolaunch``.
Faults (cheap ones): ``unpaired`` present = this host never paired (usbmuxd has no pair record, so no
session can start); remove ``attached`` = the iPhone is unplugged (every open connection to it drops, usbmuxd
lists it no more, ``Listen`` clients get ``Detached``); ``quota`` = bytes the app container may hold (an AFC
write past it answers ``NO_SPACE_LEFT``); ``fault`` = the reference app's fault of the next launch.

Bound to a temporary unix socket only; :class:`StandinUsbmuxd` runs it in threads of the calling process
(``python -m edgevit_deploy.device_bench.testing.standin_usbmuxd ROOT SOCKET`` runs it in the foreground).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import logging
import os
import plistlib
import secrets
import shutil
import socket
import socketserver
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import standin_devicectl as dctl

log = logging.getLogger(__name__)

LOCKDOWN_PORT = 62078
BUID = "5A1E9D2C-0000-4000-8000-EDGE5700D001"
SERVICES = (
    "com.apple.afc",
    "com.apple.mobile.house_arrest",
    "com.apple.mobile.installation_proxy",
)
# usbmuxd results
RESULT_OK, RESULT_BADDEV, RESULT_CONNREFUSED = 0, 2, 3
# AFC
AFC_MAGIC = b"CFA6LPAA"
AFC_HEADER = struct.Struct("<8sQQQQ")
OP_STATUS, OP_DATA, OP_READ_DIR = 0x01, 0x02, 0x03
OP_REMOVE, OP_MAKE_DIR, OP_FILE_INFO, OP_DEVINFO = 0x08, 0x09, 0x0A, 0x0B
OP_OPEN, OP_OPEN_RES, OP_READ, OP_WRITE, OP_SEEK, OP_TELL, OP_TELL_RES, OP_CLOSE = (
    0x0D,
    0x0E,
    0x0F,
    0x10,
    0x11,
    0x12,
    0x13,
    0x14,
)
OP_SET_SIZE, OP_RENAME = 0x15, 0x18
E_SUCCESS, E_UNKNOWN, E_INVALID_ARG, E_NOT_FOUND, E_IS_DIR, E_PERM = 0, 1, 7, 8, 9, 10
E_UNKNOWN_PACKET, E_NO_SPACE, E_DIR_NOT_EMPTY = 6, 18, 33


class Detached(Exception):
    """The iPhone was unplugged: drop the connection."""


# ------------------------------------------------------------------------------------------ pair records
def make_pair_record(host_id: str, system_buid: str = BUID) -> tuple[dict[str, Any], bytes]:
    """(pair record as usbmuxd keeps it, the device's private key PEM): a root CA, and host and device
    certificates it signed, as a real pairing makes them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(k: rsa.RSAPrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    root_key, host_key, device_key = key(), key(), key()

    def cert(subject_key: rsa.RSAPrivateKey, cn: str, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root")]))
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256())
        )

    def pem(c: x509.Certificate) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    record = {
        "DeviceCertificate": pem(cert(device_key, "Device", False)),
        "HostCertificate": pem(cert(host_key, "Host", False)),
        "HostPrivateKey": pem_key(host_key),
        "RootCertificate": pem(cert(root_key, "Root", True)),
        "RootPrivateKey": pem_key(root_key),
        "HostID": host_id,
        "SystemBUID": system_buid,
        "WiFiMACAddress": "f0:18:98:00:00:01",
        "EscrowBag": secrets.token_bytes(32),
    }
    return record, pem_key(device_key)


# ------------------------------------------------------------------------------------------ one iPhone
@dataclass
class Phone:
    """One sandboxed iPhone (a ``ROOT/<udid>`` folder of the devicectl stand-in)."""

    root: Path
    folder: Path
    device_id: int
    _record: dict[str, Any] | None = None
    _device_key: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def udid(self) -> str:
        return self.folder.name

    @property
    def attached(self) -> bool:
        return (self.folder / "attached").exists()

    def check(self) -> None:
        if not self.attached:
            raise Detached(self.udid)

    def doc(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "device.json").read_text()))

    def pair_record(self) -> tuple[dict[str, Any], bytes]:
        """The pair record (made once, kept in ``pair_record.plist``) and the device key."""
        with self._lock:
            if self._record is None:
                path = self.folder / "pair_record.plist"
                if path.is_file():
                    saved = plistlib.loads(path.read_bytes())
                    self._record, self._device_key = saved["record"], saved["device_key"]
                else:
                    from pymobiledevice3.pair_records import generate_host_id

                    self._record, self._device_key = make_pair_record(generate_host_id())
                    path.write_bytes(plistlib.dumps({"record": self._record, "device_key": self._device_key}))
            return self._record, self._device_key

    def values(self) -> dict[str, Any]:
        """lockdownd's values, from the devicectl device object of the sandbox."""
        doc = self.doc()
        hw, props = doc.get("hardwareProperties") or {}, doc.get("deviceProperties") or {}
        return {
            "DeviceName": props.get("name", "iPhone"),
            "DeviceClass": "iPhone",
            "ProductType": hw.get("productType", ""),
            "ProductVersion": props.get("osVersionNumber", ""),
            "BuildVersion": props.get("osBuildUpdate", ""),
            "HardwareModel": hw.get("hardwareModel", ""),
            "CPUArchitecture": (hw.get("cpuType") or {}).get("name", "arm64e"),
            "ChipID": int(hw.get("chipID", 0x8120)),
            "UniqueChipID": int(hw.get("ecid", 0)),
            "UniqueDeviceID": self.udid,
            "SerialNumber": hw.get("serialNumber", ""),
            "WiFiAddress": "f0:18:98:00:00:01",
            "DevicePublicKey": b"-----BEGIN RSA PUBLIC KEY-----\nstand-in\n-----END RSA PUBLIC KEY-----\n",
            "ProductName": "iPhone OS",
        }

    def media(self) -> Path:
        path = self.folder / "media"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def app(self, bundle: str) -> Path | None:
        folder = self.folder / "apps" / bundle
        return folder if (folder / "app.json").is_file() else None

    def quota_left(self, container: Path) -> int | None:
        quota = self.folder / "quota"
        if not quota.is_file():
            return None
        used = sum(p.stat().st_size for p in container.rglob("*") if p.is_file())
        return max(0, int(quota.read_text()) - used)

    def devicectl(self, *args: str) -> dict[str, Any]:
        """Run one command of the devicectl stand-in over the same sandbox (install, launch, processes)."""
        return dctl.run(self.root, list(args))[1]


# ------------------------------------------------------------------------------------------ framing
def _recv_exact(sock: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("peer closed")
        data += chunk
    return data


def recv_plist(sock: Any) -> dict[str, Any]:
    (size,) = struct.unpack(">I", _recv_exact(sock, 4))
    return dict(plistlib.loads(_recv_exact(sock, size)))


def send_plist(sock: Any, doc: dict[str, Any]) -> None:
    data = plistlib.dumps(doc)
    sock.sendall(struct.pack(">I", len(data)) + data)


# ------------------------------------------------------------------------------------------ AFC
class AfcServer:
    """AFC over one folder (the media root, or an app's container / Documents)."""

    def __init__(
        self, phone: Phone, base: Path, container: Path | None = None, on_written: Callable[[Path], None] | None = None
    ):
        self.phone = phone
        self.base = base
        self.container = container  # what a quota limits
        self.on_written = on_written  # called with a file written (closed after writing, or renamed to)
        self.handles: dict[int, tuple[IO[Any], Path]] = {}
        self._next = itertools.count(1)

    def path(self, raw: bytes) -> Path:
        rel = raw.split(b"\0", 1)[0].decode().lstrip("/")
        path = (self.base / rel).resolve()
        if self.base.resolve() not in (path, *path.parents):
            raise PermissionError(rel)
        return path

    def serve(self, sock: Any) -> None:
        while True:
            header = _recv_exact(sock, AFC_HEADER.size)
            magic, entire, this, num, op = AFC_HEADER.unpack(header)
            if magic != AFC_MAGIC or entire < AFC_HEADER.size:
                return
            body = _recv_exact(sock, entire - AFC_HEADER.size) if entire > AFC_HEADER.size else b""
            self.phone.check()
            try:
                rop, payload = self.handle(op, body, max(this, AFC_HEADER.size) - AFC_HEADER.size)
            except FileNotFoundError:
                rop, payload = OP_STATUS, struct.pack("<Q", E_NOT_FOUND)
            except IsADirectoryError:
                rop, payload = OP_STATUS, struct.pack("<Q", E_IS_DIR)
            except PermissionError:
                rop, payload = OP_STATUS, struct.pack("<Q", E_PERM)
            except (OSError, ValueError, KeyError, struct.error):
                rop, payload = OP_STATUS, struct.pack("<Q", E_UNKNOWN)
            sock.sendall(
                AFC_HEADER.pack(AFC_MAGIC, AFC_HEADER.size + len(payload), AFC_HEADER.size + len(payload), num, rop)
                + payload
            )

    @staticmethod
    def ok() -> tuple[int, bytes]:
        return OP_STATUS, struct.pack("<Q", E_SUCCESS)

    def handle(self, op: int, body: bytes, head: int) -> tuple[int, bytes]:
        if op == OP_FILE_INFO:
            path = self.path(body)
            st = path.lstat()
            kind = "S_IFDIR" if path.is_dir() else "S_IFREG"
            info = {
                "st_size": st.st_size,
                "st_blocks": (st.st_size + 511) // 512,
                "st_nlink": st.st_nlink,
                "st_ifmt": kind,
                "st_mtime": st.st_mtime_ns,
                "st_birthtime": st.st_ctime_ns,
            }
            return OP_DATA, b"".join(f"{k}\0{v}\0".encode() for k, v in info.items())
        if op == OP_READ_DIR:
            path = self.path(body)
            names = [".", "..", *sorted(p.name for p in path.iterdir())]
            return OP_DATA, b"".join(n.encode() + b"\0" for n in names)
        if op == OP_MAKE_DIR:
            self.path(body).mkdir(parents=True, exist_ok=True)
            return self.ok()
        if op == OP_REMOVE:
            path = self.path(body)
            if path.is_dir():
                if any(path.iterdir()):
                    return OP_STATUS, struct.pack("<Q", E_DIR_NOT_EMPTY)
                path.rmdir()
            else:
                path.unlink()
            return self.ok()
        if op == OP_RENAME:
            src, dst, _ = body.split(b"\0", 2)
            os.replace(self.path(src), self.path(dst))
            if self.on_written is not None:
                self.on_written(self.path(dst))
            return self.ok()
        if op == OP_DEVINFO:
            usage = shutil.disk_usage(self.base)
            free = usage.free
            if self.container is not None:
                left = self.phone.quota_left(self.container)
                free = free if left is None else left
            info = {
                "Model": self.phone.values()["ProductType"],
                "FSTotalBytes": usage.total,
                "FSFreeBytes": free,
                "FSBlockSize": 4096,
            }
            return OP_DATA, b"".join(f"{k}\0{v}\0".encode() for k, v in info.items())
        if op == OP_OPEN:
            (mode,) = struct.unpack_from("<Q", body)
            path = self.path(body[8:])
            if not path.parent.is_dir():
                raise FileNotFoundError(path)
            if path.is_dir():
                raise IsADirectoryError(path)
            flags = {1: "rb", 2: "r+b" if path.exists() else "w+b", 3: "wb", 4: "w+b", 5: "ab", 6: "a+b"}[mode]
            handle = next(self._next)
            self.handles[handle] = (open(path, flags), path)  # noqa: SIM115 - closed by FILE_CLOSE
            return OP_OPEN_RES, struct.pack("<Q", handle)
        if op == OP_READ:
            handle, size = struct.unpack_from("<QQ", body)
            return OP_DATA, self.handles[handle][0].read(size)
        if op == OP_WRITE:
            (handle,) = struct.unpack_from("<Q", body)
            data = body[max(8, head) :]
            if self.container is not None:
                left = self.phone.quota_left(self.container)
                if left is not None and len(data) > left:
                    return OP_STATUS, struct.pack("<Q", E_NO_SPACE)
            f = self.handles[handle][0]
            f.write(data)
            f.flush()
            return self.ok()
        if op == OP_SEEK:
            handle, whence, offset = struct.unpack_from("<QQq", body)
            self.handles[handle][0].seek(offset, whence)
            return self.ok()
        if op == OP_TELL:
            (handle,) = struct.unpack_from("<Q", body)
            return OP_TELL_RES, struct.pack("<Q", self.handles[handle][0].tell())
        if op == OP_SET_SIZE:
            handle, size = struct.unpack_from("<QQ", body)
            self.handles[handle][0].truncate(size)
            return self.ok()
        if op == OP_CLOSE:
            (handle,) = struct.unpack_from("<Q", body)
            f, path = self.handles.pop(handle)
            f.close()
            if self.on_written is not None and f.mode != "rb":
                self.on_written(path)
            return self.ok()
        return OP_STATUS, struct.pack("<Q", E_UNKNOWN_PACKET)

    def close(self) -> None:
        for f, _ in self.handles.values():
            f.close()
        self.handles.clear()


# ------------------------------------------------------------------------------------------ the daemon
class StandinUsbmuxd:
    """usbmuxd + the iPhones of ``root`` on the unix socket ``socket_path`` (a temporary one by default)."""

    def __init__(self, root: Path, socket_path: Path | None = None):
        self.root = Path(root)
        self._tmp = None
        if socket_path is None:
            self._tmp = tempfile.mkdtemp(prefix="edgevit-usbmuxd-")
            socket_path = Path(self._tmp) / "usbmuxd"
        self.socket_path = Path(socket_path)
        self._ids: dict[str, int] = {}
        self._phones: dict[str, Phone] = {}
        self._ports: dict[tuple[str, int], str] = {}
        self._port_counter = itertools.count(49200)
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: dict[str, set[int]] = {}  # open file descriptors of each iPhone's connections
        self._stop = threading.Event()

    @property
    def address(self) -> str:
        """What pymobiledevice3 takes as ``usbmux_address`` (a unix socket path)."""
        return str(self.socket_path)

    # ---------------------------------------------------------------------------- lifecycle
    def start(self) -> StandinUsbmuxd:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._client(self.request)

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

        self.socket_path.unlink(missing_ok=True)
        self._server = Server(str(self.socket_path), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="standin-usbmuxd", daemon=True)
        self._thread.start()
        threading.Thread(target=self._watch_detach, name="standin-usbmuxd-detach", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for conns in self._conns.values():
            for fd in list(conns):
                _shut_fd(fd)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> StandinUsbmuxd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------- phones
    def phones(self) -> list[Phone]:
        out = []
        with self._lock:
            for folder in sorted(p for p in self.root.iterdir() if (p / "device.json").is_file()):
                if folder.name not in self._phones:
                    self._ids[folder.name] = len(self._ids) + 1
                    self._phones[folder.name] = Phone(self.root, folder, self._ids[folder.name])
                if (folder / "attached").exists():
                    out.append(self._phones[folder.name])
        return out

    def _phone(self, *, udid: str | None = None, device_id: int | None = None) -> Phone | None:
        for phone in self.phones():
            if phone.udid == udid or phone.device_id == device_id:
                return phone
        return None

    def _track(self, phone: Phone, fd: int) -> None:
        with self._lock:
            self._conns.setdefault(phone.udid, set()).add(fd)

    def _untrack(self, phone: Phone, fd: int) -> None:
        with self._lock:
            self._conns.get(phone.udid, set()).discard(fd)

    def _watch_detach(self) -> None:
        """Unplugging (``attached`` removed) drops every connection to that iPhone at once."""
        while not self._stop.wait(0.2):
            with self._lock:
                gone = [u for u, conns in self._conns.items() if conns and not (self.root / u / "attached").exists()]
                fds = [fd for u in gone for fd in self._conns.pop(u)]
            for fd in fds:
                _shut_fd(fd)

    # ---------------------------------------------------------------------------- usbmuxd
    def _client(self, sock: socket.socket) -> None:
        try:
            while True:
                try:
                    head = _recv_exact(sock, 16)
                except (EOFError, OSError):
                    return
                length, version, message, tag = struct.unpack("<IIII", head)
                body = _recv_exact(sock, length - 16)
                if version != 1 or message != 8:
                    self._reply(sock, tag, {"MessageType": "Result", "Number": 1})
                    continue
                request = plistlib.loads(body)
                kind = request.get("MessageType")
                if kind == "ReadBUID":
                    self._reply(sock, tag, {"BUID": BUID})
                elif kind == "ListDevices":
                    self._reply(sock, tag, {"DeviceList": [self._attached(p) for p in self.phones()]})
                elif kind == "ReadPairRecord":
                    phone = self._phone(udid=str(request.get("PairRecordID", "")))
                    if phone is None or (phone.folder / "unpaired").exists():
                        self._reply(sock, tag, {"MessageType": "Result", "Number": RESULT_BADDEV})
                    else:
                        self._reply(sock, tag, {"PairRecordData": plistlib.dumps(phone.pair_record()[0])})
                elif kind in ("SavePairRecord", "DeletePairRecord"):
                    self._reply(sock, tag, {"MessageType": "Result", "Number": RESULT_OK})
                elif kind == "Listen":
                    self._reply(sock, tag, {"MessageType": "Result", "Number": RESULT_OK})
                    self._listen(sock)
                    return
                elif kind == "Connect":
                    port = socket.ntohs(int(request.get("PortNumber", 0)))
                    phone = self._phone(device_id=int(request.get("DeviceID", -1)))
                    if phone is None:
                        self._reply(sock, tag, {"MessageType": "Result", "Number": RESULT_BADDEV})
                        continue
                    service = "lockdownd" if port == LOCKDOWN_PORT else self._ports.pop((phone.udid, port), None)
                    if service is None:
                        self._reply(sock, tag, {"MessageType": "Result", "Number": RESULT_CONNREFUSED})
                        continue
                    self._reply(sock, tag, {"MessageType": "Result", "Number": RESULT_OK})
                    self._device(phone, service, sock)
                    return
                else:
                    self._reply(sock, tag, {"MessageType": "Result", "Number": 1})
        except (EOFError, OSError, Detached, ssl.SSLError):
            return
        finally:
            _shut(sock)

    @staticmethod
    def _reply(sock: socket.socket, tag: int, doc: dict[str, Any]) -> None:
        data = plistlib.dumps(doc)
        sock.sendall(struct.pack("<IIII", 16 + len(data), 1, 8, tag) + data)

    @staticmethod
    def _attached(phone: Phone) -> dict[str, Any]:
        return {
            "MessageType": "Attached",
            "DeviceID": phone.device_id,
            "Properties": {
                "ConnectionType": "USB",
                "DeviceID": phone.device_id,
                "LocationID": 0x14100000 + phone.device_id,
                "ProductID": 0x12A8,
                "SerialNumber": phone.udid,
                "ConnectionSpeed": 480000000,
            },
        }

    def _listen(self, sock: socket.socket) -> None:
        seen: set[str] = set()
        while not self._stop.is_set():
            now = {p.udid: p for p in self.phones()}
            for udid in sorted(set(now) - seen):
                self._reply(sock, 0, self._attached(now[udid]))
            for udid in sorted(seen - set(now)):
                self._reply(sock, 0, {"MessageType": "Detached", "DeviceID": self._ids[udid]})
            seen = set(now)
            time.sleep(0.2)

    # ---------------------------------------------------------------------------- device side
    def _device(self, phone: Phone, service: str, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._track(phone, fd)
        try:
            if service == "lockdownd":
                self._lockdownd(phone, sock)
            elif service == "com.apple.mobile.installation_proxy":
                self._installation_proxy(phone, sock)
            elif service == "com.apple.mobile.house_arrest":
                self._house_arrest(phone, sock)
            elif service == "com.apple.afc":
                AfcServer(phone, phone.media()).serve(sock)
        except (EOFError, OSError, Detached, ssl.SSLError) as exc:
            log.debug("%s %s: %s", phone.udid, service, exc)
        finally:
            self._untrack(phone, fd)

    def _lockdownd(self, phone: Phone, sock: Any) -> None:
        tls: list[ssl.SSLSocket] = []  # the session's TLS socket, closed when the client goes
        try:
            self._lockdown_requests(phone, sock, tls)
        finally:
            for t in tls:
                t.close()

    def _lockdown_requests(self, phone: Phone, sock: Any, tls: list[ssl.SSLSocket]) -> None:
        session = False
        while True:
            request = recv_plist(sock)
            phone.check()
            name = str(request.get("Request", ""))
            reply: dict[str, Any] = {"Request": name}
            if name == "QueryType":
                reply["Type"] = "com.apple.mobile.lockdown"
            elif name == "GetValue":
                values = phone.values()
                key, domain = request.get("Key"), request.get("Domain")
                if domain:
                    reply["Error"] = "MissingValue"
                elif key is None:
                    reply["Value"] = values
                elif key in values:
                    reply["Value"] = values[key]
                else:
                    reply["Error"] = "MissingValue"
            elif name == "StartSession":
                record, device_key = phone.pair_record()
                if request.get("HostID") != record["HostID"]:
                    reply["Error"] = "InvalidHostID"
                else:
                    reply.update(SessionID=str(uuid.uuid4()).upper(), EnableSessionSSL=True)
                    send_plist(sock, reply)
                    sock = _tls_server(sock, record, device_key)
                    tls.append(sock)
                    session = True
                    continue
            elif name == "StopSession":
                session = False
            elif name == "StartService":
                service = str(request.get("Service", ""))
                if not session:
                    reply["Error"] = "InvalidService" if service not in SERVICES else "SessionInactive"
                elif service not in SERVICES:
                    reply["Error"] = "InvalidService"  # developer services: no developer disk image mounted
                else:
                    port = next(self._port_counter)
                    self._ports[(phone.udid, port)] = service
                    reply.update(Service=service, Port=port, EnableServiceSSL=False)
            else:
                reply["Error"] = "UnsupportedRequest"
            send_plist(sock, reply)

    def _installation_proxy(self, phone: Phone, sock: socket.socket) -> None:
        while True:
            request = recv_plist(sock)
            phone.check()
            command = request.get("Command")
            options = request.get("ClientOptions") or {}
            if command in ("Lookup", "Browse"):
                apps = {}
                for app_json in sorted((phone.folder / "apps").glob("*/app.json")):
                    app = json.loads(app_json.read_text())
                    if options.get("BundleIDs") and app["bundleIdentifier"] not in options["BundleIDs"]:
                        continue
                    apps[app["bundleIdentifier"]] = {
                        "CFBundleIdentifier": app["bundleIdentifier"],
                        "CFBundleShortVersionString": app.get("version", ""),
                        "CFBundleVersion": app.get("bundleVersion", ""),
                        "CFBundleExecutable": app.get("name", dctl.EXECUTABLE),
                        "ApplicationType": "User",
                        "UIFileSharingEnabled": True,
                        "Container": str(phone.folder / "apps" / app["bundleIdentifier"] / "data"),
                    }
                if command == "Lookup":
                    send_plist(sock, {"LookupResult": apps, "Status": "Complete"})
                else:
                    send_plist(
                        sock,
                        {
                            "CurrentIndex": 0,
                            "CurrentAmount": len(apps),
                            "CurrentList": list(apps.values()),
                            "Status": "BrowsingApplications",
                        },
                    )
                    send_plist(sock, {"Status": "Complete"})
            elif command in ("Install", "Upgrade"):
                package = (phone.media() / str(request.get("PackagePath", "")).lstrip("/")).resolve()
                for status, pct in (
                    ("CreatingStagingDirectory", 5),
                    ("ExtractingPackage", 15),
                    ("VerifyingApplication", 40),
                ):
                    send_plist(sock, {"Status": status, "PercentComplete": pct})
                try:
                    phone.devicectl("device", "install", "app", "--device", phone.udid, str(package))
                except dctl.Fail as exc:
                    send_plist(sock, {"Error": "ApplicationVerificationFailed", "ErrorDescription": exc.message})
                    continue
                send_plist(sock, {"Status": "GeneratingApplicationMap", "PercentComplete": 90})
                send_plist(sock, {"Status": "Complete"})
            else:
                send_plist(sock, {"Error": "UnknownCommand", "ErrorDescription": f"unknown command {command!r}"})

    def _house_arrest(self, phone: Phone, sock: socket.socket) -> None:
        request = recv_plist(sock)
        bundle = str(request.get("Identifier", ""))
        app = phone.app(bundle)
        if app is None:
            send_plist(sock, {"Error": "ApplicationLookupFailed"})
            return
        container = app / "data"
        (container / "Documents").mkdir(parents=True, exist_ok=True)
        base = container / "Documents" if request.get("Command") == "VendDocuments" else container
        send_plist(sock, {"Status": "Complete"})

        def user_opens_app(path: Path) -> None:
            if path.name == "status.json" and path.parent == container / "Documents" and path.stat().st_size == 0:
                phone.devicectl("device", "process", "launch", "--device", phone.udid, "--terminate-existing", bundle)

        server = AfcServer(phone, base, container, on_written=user_opens_app)
        try:
            server.serve(sock)
        finally:
            server.close()


def _tls_server(sock: socket.socket, record: dict[str, Any], device_key: bytes) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with _pem_file(record["DeviceCertificate"] + b"\n" + device_key) as pem:
        ctx.load_cert_chain(pem)
    return ctx.wrap_socket(sock, server_side=True)


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    """A temporary file holding ``data`` for the ``with`` block (ssl loads certificates from files only)."""
    fd, path = tempfile.mkstemp(prefix="edgevit-standin-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        os.unlink(path)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _shut_fd(fd: int) -> None:
    """Shut a connection down by its descriptor (shutdown acts on the socket, not on one descriptor of it)."""
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    _shut(dup)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Stand-in usbmuxd + iPhones over a devicectl stand-in sandbox.")
    parser.add_argument("root", type=Path)
    parser.add_argument("socket", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with StandinUsbmuxd(args.root, args.socket) as daemon:
        log.info("usbmuxd stand-in on %s over %s", daemon.address, args.root)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
