"""A stand-in ``xcrun devicectl`` over sandboxed iPhones, so the devicectl transport and the iOS app runner run
on Linux CI. It answers the subcommands the transport uses, writing ``--json-output`` documents of the shapes
real devicectl writes (tests/fixtures/devicectl/, with their sources), and exits 1 with an ``error`` document
when the real one fails.

Sandbox (``$EDGEVIT_STANDIN_IOS`` = ROOT)::

    ROOT/<udid>/device.json            the devicectl device object (list devices / device info details)
    ROOT/<udid>/attached               present while the iPhone is plugged in (remove it = detached)
    ROOT/<udid>/apps/<bundle>/app.json installed app: bundleIdentifier, version, name
    ROOT/<udid>/apps/<bundle>/data/    the app's data container (Documents/ inside)
    ROOT/<udid>/apps/<bundle>/pid      the launched app's process id
    ROOT/<udid>/thermal                nominal | fair | serious | critical, one per line: each launch takes the
                                       first line (the last one stays), the app reads it from thermal.now
    ROOT/<udid>/fault                  EDGEVIT_APP_FAULT of the next launch (crash:<phase>, hang:<phase>, corrupt,
                                       nolaunch = the launch "succeeds" but the app never runs)
    ROOT/<udid>/quota                  bytes the app container may hold (copy to fails past it)

``device process launch`` starts the Python reference iOS app (:mod:`..jobs.reference_ios_app`) over the
container's ``Documents/``. An "app" to install is an ``.ipa`` (zip with ``Payload/NAME.app/Info.plist``) or
a ``.app`` folder, read for CFBundleIdentifier / CFBundleShortVersionString; :func:`write_fake_ipa` makes one.
Standard library only: every devicectl call is one process, so it starts fast.
"""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

ROOT_ENV = "EDGEVIT_STANDIN_IOS"
VERSION = "397.28"
EXECUTABLE = "EdgeVitBench"
_REPO = Path(__file__).resolve().parents[3]


class Fail(Exception):
    def __init__(self, domain: str, code: int, message: str):
        self.domain, self.code, self.message = domain, code, message
        super().__init__(message)


def not_found(what: str) -> Fail:
    return Fail("NSCocoaErrorDomain", 260, f"The file “{what}” couldn’t be opened because there is no such file.")


# ------------------------------------------------------------------------------------------ helpers for tests
def make_iphone(root: Path, device: dict[str, Any]) -> Path:
    """Create (attach) a sandboxed iPhone from a devicectl device object; its folder."""
    udid = device["hardwareProperties"]["udid"]
    folder = Path(root) / udid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "device.json").write_text(json.dumps(device))
    (folder / "attached").write_text("")
    return folder


def write_fake_ipa(path: Path, bundle_id: str, version: str) -> Path:
    """A minimal .ipa: ``Payload/EdgeVitBench.app/Info.plist`` (binary plist) and a placeholder executable."""
    info = {
        "CFBundleIdentifier": bundle_id,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": "1",
        "CFBundleExecutable": EXECUTABLE,
        "UIFileSharingEnabled": True,
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"Payload/{EXECUTABLE}.app/Info.plist", plistlib.dumps(info, fmt=plistlib.FMT_BINARY))
        zf.writestr(f"Payload/{EXECUTABLE}.app/{EXECUTABLE}", b"\xcf\xfa\xed\xfe" + os.urandom(64))
    return Path(path)


def install_xcrun(bin_dir: Path, root: Path) -> Path:
    """Write an ``xcrun`` shim into ``bin_dir`` that runs this stand-in over ``root``; its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "xcrun"
    shim.write_text(
        f"#!/bin/sh\nexport {ROOT_ENV}='{root}'\nexport PYTHONPATH='{_REPO}'\n"
        f"exec '{sys.executable}' -S '{Path(__file__).resolve()}' \"$@\"\n"
    )
    shim.chmod(0o755)
    return shim


# ------------------------------------------------------------------------------------------ the sandbox
def _devices(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "device.json").is_file() and (p / "attached").exists())


def _device(root: Path, ident: str) -> Path:
    for folder in _devices(root):
        doc = json.loads((folder / "device.json").read_text())
        if ident in (folder.name, doc.get("identifier"), doc.get("deviceProperties", {}).get("name")):
            return folder
    raise Fail("com.apple.dt.CoreDeviceError", 1000, f"The specified device was not found. ({ident})")


def _app(dev: Path, bundle: str) -> Path:
    folder = dev / "apps" / bundle
    if not (folder / "app.json").is_file():
        raise Fail("com.apple.dt.CoreDeviceError", 10002, f"The requested application {bundle} is not installed.")
    return folder


def _inside(base: Path, rel: str) -> Path:
    rel = rel.lstrip("/")
    path = (base / rel).resolve()
    if base.resolve() not in (path, *path.parents):
        raise Fail("NSCocoaErrorDomain", 257, f"{rel} is outside the app's container")
    return path


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _pid(app: Path) -> int | None:
    try:
        pid = int((app / "pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _read_bundle(path: Path) -> dict[str, Any]:
    try:
        if path.is_dir():
            return plistlib.loads((path / "Info.plist").read_bytes())
        with zipfile.ZipFile(path) as zf:
            names = [
                n
                for n in zf.namelist()
                if n.count("/") == 2 and n.startswith("Payload/") and n.endswith(".app/Info.plist")
            ]
            return plistlib.loads(zf.read(names[0]))
    except (OSError, zipfile.BadZipFile, IndexError, plistlib.InvalidFileException, ValueError):
        raise Fail("com.apple.dt.CoreDeviceError", 3002, f"The item at {path.name} is not a valid bundle.") from None


# ------------------------------------------------------------------------------------------ commands
def _opt(args: list[str], name: str, default: str | None = None) -> str:
    if name in args:
        return args[args.index(name) + 1]
    if default is None:
        raise Fail("com.apple.dt.CoreDeviceError", 1, f"Missing expected argument '{name}'")
    return default


def _positional(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("--"):
            skip = a not in ("--terminate-existing", "--quiet")
        else:
            out.append(a)
    return out


def run(root: Path, args: list[str]) -> tuple[str, dict[str, Any]]:
    """(commandType, result) of one devicectl command line (without --json-output)."""
    words = _positional(args)
    if words[:2] == ["list", "devices"]:
        return "list.devices", {"devices": [json.loads((d / "device.json").read_text()) for d in _devices(root)]}
    if words[:1] != ["device"]:
        raise Fail("com.apple.dt.CoreDeviceError", 1, f"Unknown command {' '.join(words[:3])}")
    dev = _device(root, _opt(args, "--device"))
    cmd = words[1:3]
    if cmd == ["info", "details"]:
        return "device.info.details", json.loads((dev / "device.json").read_text())
    if cmd == ["info", "apps"]:
        bundle = _opt(args, "--bundle-id", "")
        apps = (
            [json.loads(p.read_text()) for p in sorted((dev / "apps").glob("*/app.json"))]
            if (dev / "apps").is_dir()
            else []
        )
        return "device.info.apps", {"apps": [a for a in apps if not bundle or a["bundleIdentifier"] == bundle]}
    if cmd == ["info", "processes"]:
        procs = []
        for app in sorted((dev / "apps").glob("*")) if (dev / "apps").is_dir() else []:
            pid = _pid(app)
            if pid is not None:
                procs.append(
                    {
                        "executable": f"file:///private/var/containers/Bundle/Application/"
                        f"{app.name}/{EXECUTABLE}.app/{EXECUTABLE}",
                        "processIdentifier": pid,
                    }
                )
        return "device.info.processes", {"runningProcesses": procs}
    if cmd == ["install", "app"]:
        src = Path(words[3])
        info = _read_bundle(src)
        bundle = str(info.get("CFBundleIdentifier", ""))
        folder = dev / "apps" / bundle
        (folder / "data" / "Documents").mkdir(parents=True, exist_ok=True)
        (folder / "app.json").write_text(
            json.dumps(
                {
                    "bundleIdentifier": bundle,
                    "name": EXECUTABLE,
                    "version": info.get("CFBundleShortVersionString", ""),
                    "bundleVersion": info.get("CFBundleVersion", ""),
                }
            )
        )
        return "device.install.app", {
            "deviceIdentifier": json.loads((dev / "device.json").read_text())["identifier"],
            "installedApplications": [
                {
                    "bundleID": bundle,
                    "installationURL": f"file:///private/var/containers/Bundle/Application/{bundle}/{EXECUTABLE}.app/",
                }
            ],
        }
    if cmd[:1] == ["copy"] and cmd[1:] in (["to"], ["from"]):
        if _opt(args, "--domain-type") != "appDataContainer":
            raise Fail("com.apple.dt.CoreDeviceError", 1, "the stand-in knows the appDataContainer domain only")
        container = _app(dev, _opt(args, "--domain-identifier")) / "data"
        if cmd[1] == "to":
            src, dst = Path(_opt(args, "--source")), _inside(container, _opt(args, "--destination"))
            quota = dev / "quota"
            if quota.is_file() and _size(container) + src.stat().st_size > int(quota.read_text()):
                raise Fail("NSCocoaErrorDomain", 640, "The file couldn’t be saved because there isn’t enough space.")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        else:
            src_rel = _opt(args, "--source")
            src, dst = _inside(container, src_rel), Path(_opt(args, "--destination"))
            if not src.is_file():
                raise not_found(Path(src_rel).name)
            shutil.copyfile(src, dst)
        return f"device.copy.{cmd[1]}", {"deviceIdentifier": dev.name}
    if cmd == ["process", "launch"]:
        bundle = words[3]
        app = _app(dev, bundle)
        old = _pid(app)
        if old is not None and "--terminate-existing" in args:
            os.kill(old, signal.SIGKILL)
        fault = (dev / "fault").read_text().strip() if (dev / "fault").is_file() else ""
        if fault == "nolaunch":  # the launch request went through, the app never ran (locked phone)
            return "device.process.launch", {"process": {"processIdentifier": 0}}
        states = (dev / "thermal").read_text().split() if (dev / "thermal").is_file() else []
        (dev / "thermal.now").write_text(states[0] if states else "nominal")
        if len(states) > 1:
            (dev / "thermal").write_text("\n".join(states[1:]))
        env = {**os.environ, "PYTHONPATH": str(_REPO), "EDGEVIT_APP_FAULT": fault}
        with open(app / "app.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edgevit_deploy.device_bench.jobs.reference_ios_app",
                    str(app / "data" / "Documents"),
                    "--device-json",
                    str(dev / "device.json"),
                    "--thermal-file",
                    str(dev / "thermal.now"),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        (app / "pid").write_text(str(proc.pid))
        return "device.process.launch", {
            "process": {
                "processIdentifier": proc.pid,
                "executableURL": {
                    "relative": f"file:///private/var/containers/Bundle/Application/{bundle}/{EXECUTABLE}.app/"
                },
            }
        }
    if cmd == ["process", "terminate"]:
        pid = int(_opt(args, "--pid"))
        for app in (dev / "apps").glob("*"):
            if _pid(app) == pid:
                os.kill(pid, signal.SIGKILL)
                return "device.process.terminate", {"process": {"processIdentifier": pid}}
        raise Fail("com.apple.dt.CoreDeviceError", 10001, f"No process with pid {pid}.")
    raise Fail("com.apple.dt.CoreDeviceError", 1, f"Unknown command device {' '.join(cmd)}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "devicectl":
        print(f'xcrun: error: unable to find utility "{argv[0] if argv else ""}"', file=sys.stderr)
        return 72
    args = argv[1:]
    out = None
    if "--json-output" in args:
        i = args.index("--json-output")
        out = args[i + 1]
        args = args[:i] + args[i + 2 :]
    root = Path(os.environ[ROOT_ENV])
    info: dict[str, Any] = {
        "arguments": ["devicectl", *argv[1:]],
        "environment": {"TERM": "xterm-256color"},
        "jsonVersion": 2,
        "version": VERSION,
    }
    try:
        command, result = run(root, args)
        doc: dict[str, Any] = {
            "info": {**info, "commandType": f"devicectl.{command}", "outcome": "success"},
            "result": result,
        }
        code = 0
    except Fail as exc:
        doc = {
            "error": {
                "code": exc.code,
                "domain": exc.domain,
                "userInfo": {"NSLocalizedDescription": {"string": exc.message}},
            },
            "info": {**info, "commandType": "devicectl", "outcome": "failed"},
        }
        print(f"ERROR: {exc.message} ({exc.domain} error {exc.code}.)", file=sys.stderr)
        code = 1
    if out:
        text = json.dumps(doc, indent=2)
        if out == "-":
            print(text)
        else:
            Path(out).write_text(text)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
