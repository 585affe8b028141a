"""iPhones through ``xcrun devicectl`` (Xcode 15+, macOS): every call runs one devicectl subcommand with
``--json-output FILE`` and reads that file, never the human-readable text.

Subcommands used: ``list devices``, ``device info details``, ``device info apps --bundle-id``,
``device info processes``, ``device install app``, ``device copy to|from --domain-type appDataContainer
--domain-identifier BUNDLE``, ``device process launch --terminate-existing``, ``device process terminate``.

Remote paths are relative to the app's data container (``Documents/jobs/...``). iOS has no shell: ``shell``
refuses every command with exit code 127 (the iOS app runner never asks for one).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DeviceDisconnectedError, DeviceError, DeviceNotFoundError, DeviceTimeoutError
from ..types import DeviceInfo, ShellResult

log = logging.getLogger(__name__)

#: the command that runs devicectl (``xcrun`` on PATH; $EDGEVIT_XCRUN overrides it)
XCRUN_ENV = "EDGEVIT_XCRUN"
DEFAULT_TIMEOUT_S = 120.0
#: NSCocoaErrorDomain NSFileReadNoSuchFileError: what ``copy from`` reports for a missing file
_NO_SUCH_FILE = ("NSCocoaErrorDomain", 260)


class DevicectlError(DeviceError):
    """A devicectl command that ended with ``outcome: failed``; ``domain`` / ``code`` from its error object."""

    def __init__(self, device: str, command: str, message: str, domain: str = "", code: int | None = None):
        self.command, self.domain, self.code = command, domain, code
        super().__init__(device, f"devicectl {command} failed: {message}")


def _xcrun() -> list[str]:
    custom = os.environ.get(XCRUN_ENV)
    if custom:
        return [custom]
    found = shutil.which("xcrun")
    if found is None:
        raise DeviceError(
            "ios",
            "xcrun not found: the devicectl transport needs Xcode 15+ on macOS "
            "(xcode-select --install), see docs/ios.md",
        )
    return [found]


def _message(error: dict[str, Any]) -> str:
    info = error.get("userInfo") or {}
    for key in ("NSLocalizedDescription", "NSLocalizedFailureReason", "NSUnderlyingError"):
        value = info.get(key)
        if isinstance(value, dict) and "string" in value:
            return str(value["string"])
        if isinstance(value, str):
            return value
    return f"{error.get('domain', '?')} error {error.get('code', '?')}"


def run_devicectl(args: list[str], device: str = "ios", timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """``xcrun devicectl ARGS --json-output TMP``: the document's ``result``; DevicectlError on ``failed``."""
    with tempfile.TemporaryDirectory(prefix="edgevit-devicectl-") as tmp:
        out = Path(tmp) / "out.json"
        argv = [*_xcrun(), "devicectl", *args, "--json-output", str(out)]
        command = " ".join(args[:4])
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceTimeoutError(device, f"devicectl {' '.join(args)}", timeout) from None
        try:
            doc = json.loads(out.read_text())
        except (OSError, ValueError):
            tail = (proc.stderr or proc.stdout).strip()[-300:]
            raise DevicectlError(device, command, f"no JSON output (exit {proc.returncode}): {tail}") from None
    outcome = (doc.get("info") or {}).get("outcome")
    if outcome != "success" or proc.returncode != 0:
        error = doc.get("error") or {}
        message = _message(error) if error else f"exit {proc.returncode}"
        code = error.get("code")
        domain = str(error.get("domain", ""))
        if "CoreDevice" in domain and (
            "not found" in message.lower() or "not connected" in message.lower() or "unavailable" in message.lower()
        ):
            raise DeviceDisconnectedError(
                device,
                f"devicectl {command}: {message} (is the iPhone plugged in, "
                "unlocked and trusted? `xcrun devicectl list devices`)",
            )
        raise DevicectlError(device, command, message, domain, code if isinstance(code, int) else None)
    return dict(doc.get("result") or {})


def list_iphones() -> list[dict[str, Any]]:
    """``devicectl list devices``: the iOS devices (watches, TVs and Macs left out), as devicectl describes them."""
    result = run_devicectl(["list", "devices"])
    return [d for d in result.get("devices", []) if (d.get("hardwareProperties") or {}).get("platform") == "iOS"]


def device_info_from(doc: dict[str, Any], device_id: str) -> DeviceInfo:
    """A DeviceInfo from a devicectl device object (``list devices`` / ``device info details``)."""
    hw = doc.get("hardwareProperties") or {}
    props = doc.get("deviceProperties") or {}
    return DeviceInfo(
        id=device_id,
        kind="ios",
        model=str(hw.get("productType", "")),
        soc=str(hw.get("hardwareModel", "")),
        os_version=f"iOS {props.get('osVersionNumber', '?')}",
        abi=str((hw.get("cpuType") or {}).get("name", "")),
        extra={
            "name": props.get("name", ""),
            "marketing_name": hw.get("marketingName", ""),
            "udid": hw.get("udid", ""),
            "developer_mode": props.get("developerModeStatus", ""),
            "transport": "devicectl",
        },
    )


class DevicectlTransport:
    """One iPhone by its UDID (or CoreDevice identifier), through ``xcrun devicectl``."""

    kind = "ios"

    def __init__(
        self,
        udid: str,
        device_id: str | None = None,
        bundle_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ):
        from ..jobs.protocol import IOS_BUNDLE_ID

        self.udid = udid
        self.device_id = device_id or f"ios:{udid}"
        self.bundle_id = bundle_id or IOS_BUNDLE_ID
        self.work_dir = "Documents"
        self.timeout_s = timeout_s

    def _run(self, *args: str, timeout: float | None = None) -> dict[str, Any]:
        return run_devicectl(list(args), self.device_id, timeout or self.timeout_s)

    def _container(self) -> list[str]:
        return ["--domain-type", "appDataContainer", "--domain-identifier", self.bundle_id]

    def connect(self) -> DevicectlTransport:
        self.device_info()
        return self

    def close(self) -> None:
        """Nothing to close: every call is one devicectl process."""

    def __enter__(self) -> DevicectlTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- device
    def device_info(self) -> DeviceInfo:
        result = self._run("device", "info", "details", "--device", self.udid)
        return device_info_from(result, self.device_id)

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        return ShellResult(
            exit_code=127,
            stdout="",
            stderr="iOS has no shell; the devicectl transport only copies files and launches the benchmark app",
        )

    def free_space(self, remote_dir: str) -> int:
        raise DeviceError(self.device_id, "devicectl does not report the free space of an app container")

    # ---------------------------------------------------------------------------------------- files
    def push(self, local: Path, remote: str) -> None:
        local = Path(local)
        if not local.is_file():
            raise FileNotFoundError(f"cannot push {local}: not a file")
        self._run(
            "device",
            "copy",
            "to",
            "--device",
            self.udid,
            "--source",
            str(local),
            "--destination",
            remote,
            *self._container(),
        )

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        try:
            self._run(
                "device",
                "copy",
                "from",
                "--device",
                self.udid,
                "--source",
                remote,
                "--destination",
                str(tmp),
                *self._container(),
            )
        except DevicectlError as exc:
            tmp.unlink(missing_ok=True)
            if (exc.domain, exc.code) == _NO_SUCH_FILE:
                raise FileNotFoundError(f"{self.device_id}: {remote} is not in the app's container") from None
            raise
        os.replace(tmp, local)

    def exists(self, remote: str) -> bool:
        with tempfile.TemporaryDirectory(prefix="edgevit-ios-") as tmp:
            try:
                self.pull(remote, Path(tmp) / "probe")
            except FileNotFoundError:
                return False
        return True

    # ---------------------------------------------------------------------------------------- the app
    def app_version(self) -> str | None:
        """The installed benchmark app's CFBundleShortVersionString, or None when it is not installed."""
        result = self._run("device", "info", "apps", "--device", self.udid, "--bundle-id", self.bundle_id)
        for app in result.get("apps", []):
            if app.get("bundleIdentifier") == self.bundle_id:
                return str(app.get("version") or "")
        return None

    def install_app(self, app: Path) -> None:
        result = self._run("device", "install", "app", "--device", self.udid, str(app), timeout=600)
        ids = [a.get("bundleID") for a in result.get("installedApplications", [])]
        if self.bundle_id not in ids:
            raise DevicectlError(
                self.device_id, "device install app", f"{app} installed {ids or 'nothing'}, not {self.bundle_id}"
            )

    def launch_app(self) -> int | None:
        """Launch (relaunch) the app; its process id."""
        result = self._run("device", "process", "launch", "--device", self.udid, "--terminate-existing", self.bundle_id)
        pid = (result.get("process") or {}).get("processIdentifier")
        return int(pid) if isinstance(pid, int) else None

    def _app_pids(self) -> list[int]:
        from ..jobs.protocol import IOS_EXECUTABLE

        result = self._run("device", "info", "processes", "--device", self.udid)
        marker = f"/{IOS_EXECUTABLE}.app/{IOS_EXECUTABLE}"
        return [
            int(p["processIdentifier"])
            for p in result.get("runningProcesses", [])
            if str(p.get("executable", "")).endswith(marker) and isinstance(p.get("processIdentifier"), int)
        ]

    def app_running(self) -> bool:
        return bool(self._app_pids())

    def terminate_app(self) -> None:
        for pid in self._app_pids():
            try:
                self._run("device", "process", "terminate", "--device", self.udid, "--pid", str(pid))
            except DevicectlError as exc:  # it ended in between
                log.debug("%s: terminate %d: %s", self.device_id, pid, exc)


def only_iphone() -> str:
    """The UDID of the single attached iPhone (``--device ios:``); DeviceNotFoundError for none or several."""
    phones = list_iphones()
    if len(phones) != 1:
        have = ", ".join(f"ios:{(p.get('hardwareProperties') or {}).get('udid', '?')}" for p in phones)
        raise DeviceNotFoundError(
            "ios:",
            f"{len(phones)} iPhones attached ({have or 'none'}): name one with "
            "--device ios:UDID (`edgevit-bench devices` lists them)",
        )
    return str(phones[0]["hardwareProperties"]["udid"])
