"""The stand-in device's package manager and activity manager: ``pm`` / ``cmd package`` (list, path, install,
uninstall, list instrumentation, the streamed ``cmd package install -S SIZE`` that current adb clients use),
``am start`` / ``am instrument`` / ``am force-stop``, ``pidof``, and ``dumpsys package`` (versionName).

``am start -n org.edgevit.bench/.BenchActivity`` launches the Python reference app
(:mod:`edgevit_deploy.device_bench.jobs.reference_app`) in the background over the app's sandboxed external
files dir, so the host's app runner is exercised with real timings and real outputs.

An "APK" for the stand-in is a zip holding ``edgevit-standin.json`` (``package``, ``versionName``,
``versionCode``, optional ``instrumentation``: the test package's runner); :func:`write_fake_apk` makes one.
A real APK (binary manifest) is refused with the message the real installer gives for a corrupt file.

Faults: write ``crash:<phase>``, ``hang:<phase>``, ``oom:<phase>`` or ``corrupt`` to :func:`fault_file` and the
next launched app behaves so (see reference_app).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from . import standin_fs

MANIFEST = "edgevit-standin.json"
TOOLS = ("pm", "am", "cmd", "pidof")
_STATE = "data/standin"


def _state(root: Path) -> Path:
    path = root / _STATE
    path.mkdir(parents=True, exist_ok=True)
    return path


def fault_file(root: Path) -> Path:
    return _state(Path(root)) / "app_fault"


def write_fake_apk(
    path: Path, package: str, version_name: str, version_code: int = 1, instrumentation: str | None = None
) -> Path:
    path = Path(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            MANIFEST,
            json.dumps(
                {
                    "package": package,
                    "versionName": version_name,
                    "versionCode": version_code,
                    "instrumentation": instrumentation,
                }
            ),
        )
        zf.writestr("classes.dex", b"dex\n035\0" + os.urandom(256))
    return path


def install_tools(root: Path) -> None:
    """Put the pm / am / cmd / pidof shims in the sandbox's system/bin (called by StandinAdbd)."""
    root = Path(root)
    repo = Path(__file__).resolve().parents[3]
    for tool in TOOLS:
        script = root / "system/bin" / tool
        script.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH='{repo}'${{PYTHONPATH:+:$PYTHONPATH}} "
            f"exec '{sys.executable}' -m edgevit_deploy.device_bench.testing.standin_app {tool} \"$@\"\n"
        )
        script.chmod(0o755)
    _write_dumpsys(root, _packages(root))


# ------------------------------------------------------------------------------------------ packages
def _packages(root: Path) -> dict[str, dict]:
    path = _state(root) / "packages.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_packages(root: Path, packages: dict[str, dict]) -> None:
    path = _state(root) / "packages.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(packages, indent=1, sort_keys=True))
    os.replace(tmp, path)
    _write_dumpsys(root, packages)


def _write_dumpsys(root: Path, packages: dict[str, dict]) -> None:
    """What ``dumpsys package`` prints (the stand-in's dumpsys reads .standin/dumpsys/<service>)."""
    lines = ["Packages:"]
    for name in sorted(packages):
        info = packages[name]
        lines += [
            f"  Package [{name}] (standin):",
            f"    versionCode={info['versionCode']} minSdk=26 targetSdk=34",
            f"    versionName={info['versionName']}",
            f"    codePath={info['path']}",
        ]
    target = root / ".standin/dumpsys/package"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")


def install_apk(root: Path, data: bytes) -> str:
    """Install an APK's bytes; the installer's output line (``Success`` or ``Failure [...]``)."""
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            manifest = json.loads(zf.read(MANIFEST))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return "Failure [INSTALL_PARSE_FAILED_NOT_APK: Failed to parse the APK (stand-in: no edgevit-standin.json)]"
    name = manifest["package"]
    packages = _packages(root)
    folder = root / "data/app" / f"{name}-standin"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.apk").write_bytes(data)
    packages[name] = {
        "versionName": manifest["versionName"],
        "versionCode": manifest["versionCode"],
        "path": f"/data/app/{name}-standin/base.apk",
        "instrumentation": manifest.get("instrumentation"),
    }
    _save_packages(root, packages)
    return "Success"


def _pm(root: Path, args: list[str], stdin: bytes | None = None) -> int:
    packages = _packages(root)
    if not args:
        print("usage: pm list packages | path | install | uninstall | list instrumentation", file=sys.stderr)
        return 1
    cmd, rest = args[0], args[1:]
    if cmd == "list" and rest[:1] == ["packages"]:
        filters = [a for a in rest[1:] if not a.startswith("-")]
        for name in sorted(packages):
            if not filters or any(f in name for f in filters):
                extra = f" versionCode:{packages[name]['versionCode']}" if "--show-versioncode" in rest else ""
                print(f"package:{name}{extra}")
        return 0
    if cmd == "list" and rest[:1] == ["instrumentation"]:
        for name in sorted(packages):
            runner = packages[name].get("instrumentation")
            if runner:
                target = name[: -len(".test")] if name.endswith(".test") else name
                print(f"instrumentation:{name}/{runner} (target={target})")
        return 0
    if cmd == "path":
        if rest and rest[0] in packages:
            print(f"package:{packages[rest[0]]['path']}")
            return 0
        return 1
    if cmd == "install":
        files = [a for a in rest if not a.startswith("-")]
        if "-S" in rest:  # streamed: cmd package install -S SIZE reads the APK from stdin
            size = int(rest[rest.index("-S") + 1])
            data = stdin if stdin is not None else sys.stdin.buffer.read(size)
            data = data[:size]
            if len(data) != size:
                print(f"Failure [INSTALL_FAILED_INVALID_APK: got {len(data)} of {size} bytes]")
                return 1
        elif files:
            path = Path(files[-1])
            if not path.is_file():
                print(f"Failure [INSTALL_FAILED_INVALID_URI: {files[-1]} does not exist]")
                return 1
            data = path.read_bytes()
        else:
            print("Error: no package specified")
            return 1
        line = install_apk(root, data)
        print(line)
        return 0 if line == "Success" else 1
    if cmd == "uninstall":
        if rest and rest[-1] in packages:
            packages.pop(rest[-1])
            _save_packages(root, packages)
            print("Success")
            return 0
        print("Failure [DELETE_FAILED_INTERNAL_ERROR]")
        return 1
    print(f"Unknown command: {cmd}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------------------------------ the app process
def _pid(root: Path) -> int | None:
    path = _state(root) / "app.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    try:  # a zombie (exited, not reaped by its session) is not running
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return None
    except OSError:
        pass
    return pid


def _app_command(root: Path, package: str) -> tuple[list[str], dict[str, str], Path]:
    files = root / "sdcard/Android/data" / package / "files"
    files.mkdir(parents=True, exist_ok=True)
    env = standin_fs.shell_env(root)
    env.pop("EDGEVIT_APP_FAULT", None)
    fault = fault_file(root)
    if fault.is_file() and fault.read_text().strip():
        env["EDGEVIT_APP_FAULT"] = fault.read_text().strip()
    supply = root / "sys/class/power_supply/battery"
    cmd = [sys.executable, "-m", "edgevit_deploy.device_bench.jobs.reference_app", str(files)]
    if supply.is_dir():
        cmd += ["--power-supply", str(supply)]
    return cmd, env, files


def _am(root: Path, args: list[str]) -> int:
    packages = _packages(root)
    if args[:1] == ["start"]:
        component = args[args.index("-n") + 1] if "-n" in args else ""
        package, _, activity = component.partition("/")
        if package not in packages or activity not in (".BenchActivity", f"{package}.BenchActivity"):
            print(f"Error: Activity class {{{component}}} does not exist.")
            return 1
        running = _pid(root)
        for _ in range(40):  # an app that is finishing its last job: let it exit, then start anew
            if running is None:
                break
            time.sleep(0.05)
            running = _pid(root)
        print(f"Starting: Intent {{ cmp={component} }}")
        if running is not None:
            print("Warning: Activity not started, its current task has been brought to the front")
            return 0
        cmd, env, _files = _app_command(root, package)
        log = open(_state(root) / "app.log", "ab")  # noqa: SIM115 - handed to the detached app process
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=root, start_new_session=True
        )
        (_state(root) / "app.pid").write_text(str(proc.pid))
        return 0
    if args[:1] == ["force-stop"]:
        pid = _pid(root)
        if pid is not None and len(args) > 1 and args[1] in packages:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return 0
    if args[:1] == ["instrument"]:
        target = [a for a in args[1:] if "/" in a]
        test_pkg = target[-1].split("/")[0] if target else ""
        info = packages.get(test_pkg)
        if info is None or not info.get("instrumentation"):
            print(f"INSTRUMENTATION_FAILED: {target[-1] if target else '(none)'}")
            print(f"android.util.AndroidException: INSTRUMENTATION_FAILED: {target[-1] if target else ''}")
            return 1
        package = test_pkg[: -len(".test")] if test_pkg.endswith(".test") else test_pkg
        if package not in packages:
            print(f"INSTRUMENTATION_RESULT: shortMsg=Unable to find instrumentation target package: {package}")
            return 1
        cmd, env, _files = _app_command(root, package)
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
            start_new_session=True,
        )
        (_state(root) / "app.pid").write_text(str(proc.pid))
        code = proc.wait()
        print("INSTRUMENTATION_STATUS: class=org.edgevit.bench.BenchInstrumentedTest")
        print("INSTRUMENTATION_STATUS: test=runPendingJobs")
        if code == 0:
            print("INSTRUMENTATION_STATUS_CODE: 0")
            print("INSTRUMENTATION_RESULT: stream=\n\nTime: 1\n\nOK (1 test)\n")
            print("INSTRUMENTATION_CODE: -1")
        else:
            print("INSTRUMENTATION_RESULT: shortMsg=Process crashed.")
            print("INSTRUMENTATION_CODE: 0")
        return 0
    print(f"Error: unknown am command {args[:1]}", file=sys.stderr)
    return 1


def _pidof(root: Path, args: list[str]) -> int:
    packages = _packages(root)
    pid = _pid(root)
    if pid is not None and args and args[-1] in packages:
        print(pid)
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = Path(os.environ[standin_fs.ROOT_ENV])
    tool, args = argv[0], argv[1:]
    if tool == "pm":
        return _pm(root, args)
    if tool == "cmd":
        if args[:1] == ["package"]:
            return _pm(root, args[1:])
        print(f"cmd: Can't find service: {args[:1]}", file=sys.stderr)
        return 20
    if tool == "am":
        return _am(root, args)
    if tool == "pidof":
        return _pidof(root, args)
    return 127


if __name__ == "__main__":
    raise SystemExit(main())
