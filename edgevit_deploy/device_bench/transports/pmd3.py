"""iPhones through pymobiledevice3 (pure Python: Linux, macOS, Windows), behind the same interface as the
devicectl transport (:mod:`.devicectl`), so the iOS app runner (``runners/ios_app.py``) drives either.

- usbmux -> lockdown (``create_using_usbmux(udid, usbmux_address=...)``): device name, ProductType, iOS version,
  board (HardwareModel), chip (ChipID, e.g. ``T8120``) and CPU architecture.
- ``installation_proxy``: is the app installed, at which version (``Lookup``); install an ``.ipa`` / ``.app``
  (copied to ``/PublicStaging`` over AFC, then ``Install``).
- ``house_arrest`` (``VendContainer``) + AFC: remote paths are relative to the app's data container
  (``Documents/jobs/...``, as with devicectl); push (a temporary name, then a rename), pull, exists, remove,
  free space (AFC device info).
- Launch: DVT process control (``com.apple.instruments...``) when the iPhone offers it: before iOS 17 over
  lockdown (developer disk image mounted), on iOS 17+ through the tunnel of a running
  ``pymobiledevice3 remote tunneld`` (its HTTP endpoint, 127.0.0.1:49151 unless ``$EDGEVIT_TUNNELD_ADDRESS``).
  Otherwise one log line asks the user to open the app, and the runner waits on the app's heartbeat; whether
  the app runs is then read from the heartbeat (it moves while the app lives).

``usbmux_address``: the option, else ``$EDGEVIT_USBMUX_ADDRESS``, else pymobiledevice3's default (``/var/run/
usbmuxd``, or ``$USBMUXD_SOCKET_ADDRESS``). Errors are the device errors of ``device_bench/errors.py``:
unplugged -> DeviceDisconnectedError, container full -> DeviceFullError, not paired -> DeviceError saying how.
pymobiledevice3 is asynchronous: each transport runs its own event loop in a thread and waits on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import posixpath
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import DeviceDisconnectedError, DeviceError, DeviceFullError, DeviceNotFoundError, DeviceTimeoutError
from ..types import DeviceInfo, ShellResult

log = logging.getLogger(__name__)

T = TypeVar("T")

USBMUX_ENV = "EDGEVIT_USBMUX_ADDRESS"
TUNNELD_ENV = "EDGEVIT_TUNNELD_ADDRESS"  # HOST:PORT of `pymobiledevice3 remote tunneld`, or "off"
TUNNELD_DEFAULT = ("127.0.0.1", 49151)
DEFAULT_TIMEOUT_S = 120.0
#: without process listing, the app counts as running while its heartbeat changed this recently
DEFAULT_LIVENESS_S = 5.0
CHUNK = 4 * 1024 * 1024
_AFC_NO_SPACE = 18
_TUNNELD_HINT = (
    "on iOS 17+ launching needs the developer tunnel: run `sudo python3 -m pymobiledevice3 remote tunneld` "
    "in another terminal (Developer Mode on, phone unlocked)"
)


def pmd3() -> Any:
    """pymobiledevice3, or MissingBackendError saying to install the ``ios`` extra."""
    from ..._lazy import require

    return require("pymobiledevice3", "ios")


def devicectl_available() -> bool:
    """``xcrun devicectl`` can be used (macOS with Xcode, or $EDGEVIT_XCRUN): ``ios:`` prefers it then."""
    from .devicectl import XCRUN_ENV

    return bool(os.environ.get(XCRUN_ENV) or shutil.which("xcrun"))


def resolve_usbmux_address(address: str | None = None) -> str | None:
    """The usbmuxd address to use: the argument, $EDGEVIT_USBMUX_ADDRESS, or None (pymobiledevice3's default)."""
    return address or os.environ.get(USBMUX_ENV) or None


def usbmuxd_reachable(address: str | None = None) -> bool:
    """Cheap check before importing anything: a unix-socket usbmuxd exists where it should."""
    address = resolve_usbmux_address(address) or os.environ.get("USBMUXD_SOCKET_ADDRESS")
    if address and ":" in address:
        return True  # HOST:PORT: only a connection tells
    return Path(address or "/var/run/usbmuxd").exists()


def tunneld_address() -> tuple[str, int] | None:
    """Where `pymobiledevice3 remote tunneld` is expected (None when $EDGEVIT_TUNNELD_ADDRESS=off)."""
    text = os.environ.get(TUNNELD_ENV, "")
    if text.lower() in ("off", "none", "0"):
        return None
    if text:
        host, _, port = text.rpartition(":")
        return host or "127.0.0.1", int(port)
    return TUNNELD_DEFAULT


# ------------------------------------------------------------------------------------------ the event loop
class _Loop:
    """One asyncio loop in a daemon thread; ``run`` waits on a coroutine from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="edgevit-pmd3", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


def _run_once(coro: Coroutine[Any, Any, T], timeout: float = DEFAULT_TIMEOUT_S) -> T:
    loop = _Loop()
    try:
        return loop.run(coro, timeout)
    finally:
        loop.close()


def _is_gone(exc: BaseException) -> bool:
    """An error that means the iPhone (or usbmuxd) is not there / the connection dropped."""
    exceptions = pmd3().exceptions
    if isinstance(exc, exceptions.AfcException):
        return False
    gone = (
        exceptions.ConnectionTerminatedError,
        exceptions.MuxException,
        exceptions.DeviceNotFoundError,
        exceptions.NoDeviceConnectedError,
        asyncio.IncompleteReadError,
        ConnectionError,
        EOFError,
    )
    return isinstance(exc, gone) or (isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError))


def _paired_problem(device: str, exc: BaseException) -> DeviceError | None:
    exceptions = pmd3().exceptions
    if isinstance(exc, exceptions.PasswordRequiredError):
        return DeviceError(device, "the iPhone is locked with a passcode: unlock it and keep it unlocked")
    if isinstance(exc, (exceptions.NotPairedError, exceptions.PairingError, exceptions.InvalidHostIDError)):
        return DeviceError(
            device,
            f"this host is not paired with the iPhone ({type(exc).__name__}): plug it in, unlock it, tap Trust "
            "and enter the passcode, or run `python3 -m pymobiledevice3 lockdown pair` (see docs/ios.md)",
        )
    return None


# ------------------------------------------------------------------------------------------ listing
@dataclass
class IphoneEntry:
    """One iPhone usbmuxd lists: its lockdown values (empty with the error when it could not be read)."""

    udid: str
    connection: str
    info: DeviceInfo | None = None
    paired: bool = False
    error: str | None = None

    @property
    def id(self) -> str:
        return f"ios:{self.udid}"

    @property
    def state(self) -> str:
        if self.error is not None:
            return "error"
        return "device" if self.paired else "unpaired"


def device_info_from(values: dict[str, Any], device_id: str, transport: str = "pymobiledevice3") -> DeviceInfo:
    """A DeviceInfo from lockdown values (GetValue of the default domain)."""
    chip = values.get("ChipID")
    return DeviceInfo(
        id=device_id,
        kind="ios",
        model=str(values.get("ProductType", "")),
        soc=str(values.get("HardwareModel", "")),
        os_version=f"iOS {values.get('ProductVersion', '?')}",
        abi=str(values.get("CPUArchitecture", "")),
        extra={
            "name": values.get("DeviceName", ""),
            "udid": values.get("UniqueDeviceID", ""),
            "chip": f"T{chip:04X}" if isinstance(chip, int) and chip else "",
            "build": values.get("BuildVersion", ""),
            "transport": transport,
        },
    )


async def _list(address: str | None) -> list[IphoneEntry]:
    from pymobiledevice3 import usbmux
    from pymobiledevice3.lockdown import create_using_usbmux

    entries = []
    for dev in await usbmux.list_devices(usbmux_address=address):
        entry = IphoneEntry(udid=dev.serial, connection=dev.connection_type)
        try:
            lockdown = await create_using_usbmux(dev.serial, autopair=False, usbmux_address=address)
            try:
                entry.paired = bool(lockdown.paired)
                entry.info = device_info_from(dict(lockdown.all_values), f"ios:{dev.serial}")
            finally:
                await lockdown.close()
        except Exception as exc:  # a device that fails the probe is listed with the error, never dropped
            entry.error = f"{type(exc).__name__}: {exc}"
        entries.append(entry)
    return entries


def list_iphones(address: str | None = None, timeout: float = 60.0) -> list[IphoneEntry]:
    """The iPhones usbmuxd sees: UDID, name, model, iOS version, chip (in ``info``), paired or not.
    DeviceError when usbmuxd cannot be reached."""
    pmd3()
    address = resolve_usbmux_address(address)
    try:
        return _run_once(_list(address), timeout)
    except Exception as exc:
        if _is_gone(exc):
            raise DeviceError("ios", f"usbmuxd is not reachable at {address or 'its default address'}: {exc}") from None
        raise


def only_iphone(address: str | None = None) -> str:
    """The UDID of the single attached iPhone (``--device ios:``); DeviceNotFoundError for none or several."""
    phones = list_iphones(address)
    if len(phones) != 1:
        have = ", ".join(f"ios:{p.udid}" for p in phones)
        raise DeviceNotFoundError(
            "ios:",
            f"{len(phones)} iPhones attached ({have or 'none'}): name one with "
            "--device ios:UDID (`edgevit-bench devices` lists them)",
        )
    return phones[0].udid


# ------------------------------------------------------------------------------------------ the transport
class Pmd3Transport:
    """One iPhone by its UDID, through pymobiledevice3 (see the module doc)."""

    kind = "ios"

    def __init__(
        self,
        udid: str,
        device_id: str | None = None,
        bundle_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        usbmux_address: str | None = None,
        liveness_s: float = DEFAULT_LIVENESS_S,
    ):
        from ..jobs.protocol import IOS_BUNDLE_ID

        pmd3()
        self.udid = udid
        self.device_id = device_id or f"ios-pmd3:{udid}"
        self.bundle_id = bundle_id or IOS_BUNDLE_ID
        self.work_dir = "Documents"
        self.timeout_s = timeout_s
        self.liveness_s = liveness_s
        self.usbmux_address = resolve_usbmux_address(usbmux_address)
        self._loop: _Loop | None = None
        self._lockdown: Any = None
        self._afc: Any = None
        self._values: dict[str, Any] = {}
        self._launched_pid: int | None = None
        self._beat: tuple[str, float] | None = None  # (heartbeat digest, host time it was first seen)
        self._lock = threading.RLock()

    # ---------------------------------------------------------------------------- plumbing
    def _run(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None, retry: bool = True) -> T:
        """Run ``make()`` on the loop; one reconnect and retry after a dropped connection."""
        with self._lock:
            if self._loop is None:
                self._loop = _Loop()
            for attempt in (0, 1):
                try:
                    return self._loop.run(make(), timeout or self.timeout_s)
                except TimeoutError:
                    self._drop()
                    raise DeviceTimeoutError(
                        self.device_id, getattr(make, "__name__", "pymobiledevice3 call"), timeout or self.timeout_s
                    ) from None
                except Exception as exc:
                    problem = _paired_problem(self.device_id, exc)
                    if problem is not None:
                        raise problem from None
                    if not _is_gone(exc):
                        raise
                    self._drop()
                    if attempt or not retry:
                        raise DeviceDisconnectedError(
                            self.device_id,
                            f"the iPhone was detached or stopped answering ({type(exc).__name__}: {exc}); "
                            "plug it in, unlock it and tap Trust",
                        ) from None
                    log.info("%s: connection dropped (%s); reconnecting", self.device_id, type(exc).__name__)
            raise AssertionError("unreachable")

    def _drop(self) -> None:
        """Forget the connections (they are dead or stuck); the next call opens new ones."""
        self._lockdown = self._afc = None

    async def _ld(self) -> Any:
        if self._lockdown is None:
            from pymobiledevice3.exceptions import ConnectionFailedToUsbmuxdError
            from pymobiledevice3.exceptions import DeviceNotFoundError as Pmd3NotFound
            from pymobiledevice3.lockdown import create_using_usbmux

            try:
                if not usbmuxd_reachable(self.usbmux_address):  # no socket there: say so before connecting
                    raise ConnectionFailedToUsbmuxdError()
                lockdown = await create_using_usbmux(self.udid, autopair=False, usbmux_address=self.usbmux_address)
            except ConnectionFailedToUsbmuxdError:
                raise DeviceNotFoundError(
                    self.device_id,
                    f"usbmuxd is not reachable at {self.usbmux_address or 'its default address'} (Linux: install "
                    "and start usbmuxd; or set $EDGEVIT_USBMUX_ADDRESS), see docs/ios.md",
                ) from None
            except Pmd3NotFound:
                raise DeviceDisconnectedError(
                    self.device_id,
                    f"usbmuxd does not list the iPhone {self.udid} (unplugged? `edgevit-bench devices` lists "
                    "what is attached)",
                ) from None
            if not lockdown.paired:
                await lockdown.close()
                raise _paired_problem(self.device_id, pmd3().exceptions.NotPairedError()) or DeviceError(
                    self.device_id, "not paired"
                )
            self._lockdown = lockdown
            self._values = dict(lockdown.all_values)
        return self._lockdown

    async def _container(self) -> Any:
        if self._afc is None:
            from pymobiledevice3.exceptions import AppNotInstalledError
            from pymobiledevice3.services.house_arrest import HouseArrestService

            try:
                self._afc = await HouseArrestService.create(await self._ld(), self.bundle_id, documents_only=False)
            except AppNotInstalledError:
                raise DeviceError(
                    self.device_id, f"the app {self.bundle_id} is not installed: its container cannot be reached"
                ) from None
        return self._afc

    # ---------------------------------------------------------------------------- lifecycle
    def connect(self) -> Pmd3Transport:
        async def hello() -> None:
            await self._ld()

        try:
            self._run(hello, retry=False)
        except DeviceDisconnectedError as exc:
            raise DeviceNotFoundError(self.device_id, str(exc).split(": ", 1)[-1]) from None
        return self

    def reconnect(self) -> None:
        self._drop()
        self.connect()

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                afc, lockdown = self._afc, self._lockdown

                async def bye() -> None:
                    for item in (afc, lockdown):
                        if item is not None:
                            try:
                                await getattr(item, "aclose", item.close)()  # AFC: stops its reader task too
                            except Exception as exc:  # closing a dead connection
                                log.debug("%s: close: %s", self.device_id, exc)

                try:
                    self._loop.run(bye(), 10)
                except Exception as exc:
                    log.debug("%s: close: %s", self.device_id, exc)
                self._loop.close()
                self._loop = None
            self._drop()

    def __enter__(self) -> Pmd3Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- device
    def device_info(self) -> DeviceInfo:
        async def values() -> dict[str, Any]:
            ld = await self._ld()
            return dict(await ld.get_value())

        self._values = self._run(values)
        return device_info_from(self._values, self.device_id)

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        return ShellResult(
            exit_code=127,
            stdout="",
            stderr="iOS has no shell; the pymobiledevice3 transport only copies files and launches the benchmark app",
        )

    def free_space(self, remote_dir: str) -> int:
        async def info() -> dict[str, str]:
            return dict(await (await self._container()).get_device_info())

        return int(self._run(info).get("FSFreeBytes", 0))

    # ---------------------------------------------------------------------------- files
    def push(self, local: Path, remote: str) -> None:
        """Copy one file into the app's container (under a temporary name, then renamed)."""
        local = Path(local)
        if not local.is_file():
            raise FileNotFoundError(f"cannot push {local}: not a file")
        size = local.stat().st_size
        parent = posixpath.dirname(remote)
        tmp = posixpath.join(parent, f".{posixpath.basename(remote)}.{uuid.uuid4().hex[:8]}.part")

        async def copy() -> None:
            from pymobiledevice3.exceptions import AfcException

            afc = await self._container()
            if parent:
                await afc.makedirs(parent)
            try:
                handle = await afc.fopen(tmp, "w")
                try:
                    with open(local, "rb") as f:
                        while chunk := f.read(CHUNK):
                            await afc.fwrite(handle, chunk)
                finally:
                    await afc.fclose(handle)
                await afc.rename(tmp, remote)
            except AfcException as exc:
                await afc.rm_single(tmp, force=True)
                if getattr(exc, "status", None) == _AFC_NO_SPACE:
                    free = None
                    try:
                        free = int((await afc.get_device_info()).get("FSFreeBytes", 0))
                    except Exception as info_exc:  # the free space only decorates the message
                        log.debug("%s: device info: %s", self.device_id, info_exc)
                    raise DeviceFullError(self.device_id, parent or "/", free, size) from None
                raise DeviceError(self.device_id, f"copying {local.name} to {remote} failed: {exc}") from None

        copy.__name__ = f"push {remote}"
        self._run(copy)

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(f".{local.name}.part")

        async def copy() -> None:
            from pymobiledevice3.exceptions import AfcException, AfcFileNotFoundError

            afc = await self._container()
            try:
                info = await afc.stat(remote)
                handle = await afc.fopen(remote, "r")
                try:
                    with open(part, "wb") as f:
                        left = int(info["st_size"])
                        while left > 0:
                            chunk = await afc.fread(handle, min(CHUNK, left))
                            if not chunk:
                                break
                            f.write(chunk)
                            left -= len(chunk)
                finally:
                    await afc.fclose(handle)
            except AfcFileNotFoundError:
                raise FileNotFoundError(f"{self.device_id}: {remote} is not in the app's container") from None
            except AfcException as exc:
                raise DeviceError(self.device_id, f"reading {remote} failed: {exc}") from None

        copy.__name__ = f"pull {remote}"
        try:
            self._run(copy)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, local)

    def read_bytes(self, remote: str) -> bytes | None:
        """A small file of the container (None when it is not there)."""

        async def read() -> bytes | None:
            from pymobiledevice3.exceptions import AfcFileNotFoundError

            try:
                return bytes(await (await self._container()).get_file_contents(remote))
            except AfcFileNotFoundError:
                return None

        return self._run(read)

    def exists(self, remote: str) -> bool:
        async def probe() -> bool:
            return bool(await (await self._container()).exists(remote))

        return self._run(probe)

    def remove(self, remote: str) -> None:
        """Delete a file or folder of the container (AFC can, unlike devicectl)."""

        async def rm() -> None:
            afc = await self._container()
            if await afc.exists(remote):
                await afc.rm(remote, force=True)

        self._run(rm)

    # ---------------------------------------------------------------------------- the app
    def app_version(self) -> str | None:
        """The installed benchmark app's CFBundleShortVersionString, or None when it is not installed."""

        async def lookup() -> dict[str, Any]:
            from pymobiledevice3.services.installation_proxy import InstallationProxyService

            async with InstallationProxyService(await self._ld()) as proxy:
                return dict(await proxy.lookup({"BundleIDs": [self.bundle_id], "ApplicationType": "Any"}) or {})

        app = self._run(lookup).get(self.bundle_id)
        return None if app is None else str(app.get("CFBundleShortVersionString") or "")

    def install_app(self, app: Path) -> None:
        """Install an ``.ipa`` (or a ``.app`` folder): copied to /PublicStaging over AFC, then ``Install``."""
        app = Path(app)
        if app.is_dir():
            from pymobiledevice3.services.installation_proxy import create_ipa_contents_from_directory

            package = create_ipa_contents_from_directory(str(app))
        else:
            package = app.read_bytes()
        staged = f"/PublicStaging/edgevit-{uuid.uuid4().hex[:8]}.ipa"

        async def install() -> None:
            from pymobiledevice3.services.afc import AfcService
            from pymobiledevice3.services.installation_proxy import InstallationProxyService

            ld = await self._ld()
            async with AfcService(ld) as afc:
                await afc.makedirs("/PublicStaging")
                await afc.set_file_contents(staged, package)
                try:
                    async with InstallationProxyService(ld) as proxy:
                        await proxy.service.send_plist(
                            {"Command": "Install", "ClientOptions": {}, "PackagePath": staged}
                        )
                        while True:
                            answer: dict[str, Any] = dict(await proxy.service.recv_plist())
                            if not answer:
                                raise DeviceError(self.device_id, f"installing {app.name}: installation_proxy hung up")
                            if answer.get("Error"):
                                raise DeviceError(
                                    self.device_id,
                                    f"installing {app.name} failed: {answer['Error']}: "
                                    f"{answer.get('ErrorDescription', '')}",
                                )
                            if answer.get("Status") == "Complete":
                                return
                finally:
                    await afc.rm_single(staged, force=True)

        install.__name__ = f"install {app.name}"
        self._run(install, timeout=max(self.timeout_s, 600))

    # launching --------------------------------------------------------------------
    def _developer_provider(self) -> tuple[Any, str] | None:
        """(a service provider offering DVT, how) or None; on iOS 17+ through tunneld."""
        from packaging.version import Version

        version = str(self._values.get("ProductVersion") or "0")
        if Version(version) >= Version("17"):
            address = tunneld_address()
            if address is None:
                return None

            async def rsd() -> Any:
                from pymobiledevice3.exceptions import TunneldConnectionError
                from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid

                try:
                    found = await get_tunneld_device_by_udid(self.udid, address)
                except TunneldConnectionError:
                    log.info("%s: no tunneld at %s:%d; %s", self.device_id, *address, _TUNNELD_HINT)
                    return None
                if found is None:
                    log.info(
                        "%s: tunneld at %s:%d has no tunnel to this iPhone; %s", self.device_id, *address, _TUNNELD_HINT
                    )
                return found

            provider = self._run(rsd, timeout=30)
            return None if provider is None else (provider, "tunneld")

        async def ld() -> Any:
            return await self._ld()

        return self._run(ld), "lockdown"

    def _dvt(self, action: Callable[[Any], Coroutine[Any, Any, T]]) -> T | None:
        """Run ``action(process_control)`` over DVT; None when the iPhone offers no developer services."""
        try:
            found = self._developer_provider()
        except DeviceError:
            raise
        except Exception as exc:
            log.info("%s: developer services: %s", self.device_id, exc)
            return None
        if found is None:
            return None
        provider, how = found

        async def go() -> T | None:
            from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
            from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

            try:
                async with DvtProvider(provider) as dvt, ProcessControl(dvt) as control:
                    return await action(control)
            except (pmd3().exceptions.InvalidServiceError, pmd3().exceptions.StartServiceError) as exc:
                log.info(
                    "%s: no developer services over %s (%s): mount the developer disk image "
                    "(`python3 -m pymobiledevice3 mounter auto-mount`) with Developer Mode on",
                    self.device_id,
                    how,
                    type(exc).__name__,
                )
                return None
            finally:
                if how == "tunneld":  # a connection of its own per call: close it
                    try:
                        await getattr(provider, "aclose", provider.close)()
                    except Exception as exc:
                        log.debug("%s: closing the tunnel's RSD: %s", self.device_id, exc)

        return self._run(go, retry=False)

    def launch_app(self) -> int | None:
        """Launch (relaunch) the app through DVT; without developer services, ask the user to open it."""
        from ..jobs.protocol import IOS_EXECUTABLE

        async def launch(control: Any) -> int:
            return int(await control.launch(self.bundle_id, kill_existing=True))

        pid = self._dvt(launch)
        self._launched_pid = pid
        self._beat = None
        if pid is None:
            log.warning(
                "%s: open %s on the iPhone now (unlocked): it runs the pending jobs; waiting for its heartbeat",
                self.device_id,
                IOS_EXECUTABLE,
            )
        return pid

    def app_running(self) -> bool:
        """DVT's process lookup when it launched the app; otherwise the heartbeat moved in the last
        ``liveness_s`` and does not say ``done``."""
        if self._launched_pid is not None:

            async def pid(control: Any) -> int:
                return int(await control.process_identifier_for_bundle_identifier(self.bundle_id))

            found = self._dvt(pid)
            if found is not None:
                return found > 0
        from ..jobs import protocol as P

        text = self.read_bytes(f"{self.work_dir}/{P.STATUS_FILE}") or b""
        digest = hashlib.sha256(text).hexdigest()
        now = time.monotonic()
        try:
            state = json.loads(text).get("state")
        except (ValueError, AttributeError):
            self._beat = None
            return False
        if self._beat is None or self._beat[0] != digest:
            self._beat = (digest, now)
        return state != "done" and now - self._beat[1] < self.liveness_s

    def terminate_app(self) -> None:
        async def kill(control: Any) -> None:
            pid = int(await control.process_identifier_for_bundle_identifier(self.bundle_id))
            if pid > 0:
                await control.kill(pid)

        if self._launched_pid is not None:
            try:
                self._dvt(kill)
            except DeviceError as exc:
                log.debug("%s: terminate: %s", self.device_id, exc)


def device_entries(address: str | None = None) -> list[IphoneEntry]:
    """``edgevit-bench devices``: the iPhones usbmuxd lists (none without usbmuxd or pymobiledevice3; one
    ``error`` entry when usbmuxd fails)."""
    if not usbmuxd_reachable(address):
        return []
    try:
        return list_iphones(address)
    except DeviceError as exc:
        log.info("iPhones not listed: %s", exc)
        return [IphoneEntry(udid="", connection="", error=str(exc))]
    except ImportError as exc:  # MissingBackendError: pymobiledevice3 not installed
        log.info("iPhones not listed: %s", exc)
        return []


def open_ios(via: str, udid: str, device_id: str, connect: bool = True, **options: Any) -> Any:
    """The transport of an ``ios:`` / ``ios-pmd3:`` / ``ios-devicectl:`` device id (``udid`` empty = the only
    attached iPhone): ``ios:`` takes devicectl when ``xcrun devicectl`` exists, else pymobiledevice3."""
    transport: Any
    if via == "ios-devicectl" or (via == "ios" and devicectl_available()):
        from .devicectl import DevicectlTransport
        from .devicectl import only_iphone as only_devicectl_iphone

        transport = DevicectlTransport(udid or only_devicectl_iphone(), device_id=device_id, **options)
    else:
        transport = Pmd3Transport(udid or only_iphone(options.get("usbmux_address")), device_id=device_id, **options)
    if connect:
        transport.connect()
    return transport
