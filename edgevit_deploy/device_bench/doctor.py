"""``edgevit-bench doctor``: what each Android runner needs on one device, what is missing, and how to get it.

Runners: ``benchmark_model`` (LiteRT's tool binary), ``onnxruntime_perf_test`` (ONNX Runtime's),
``executor_runner`` (ExecuTorch's, for ``.pte`` rows), ``app``
(the benchmark app's Activity) and ``instrument`` (its instrumentation test). Each check reads the device
through the Transport; nothing is installed or pushed.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from .jobs import protocol as P
from .types import Transport

#: ELF e_machine -> Android ABI of a tool binary
_ELF_ABI = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}
MIN_FREE_BYTES = 200 * 1024 * 1024

LITERT_SOURCES = (
    "https://storage.googleapis.com/litert/binaries/latest/android_arm64/benchmark_model "
    "(https://ai.google.dev/edge/litert/next/benchmark), or build //litert/tools:benchmark_model "
    "with bazel --config=android_arm64"
)
ORT_SOURCES = (
    "build onnxruntime_perf_test for Android from source (./build.sh --android --android_abi arm64-v8a "
    "...; onnxruntime/test/perftest); ONNX Runtime publishes no prebuilt Android binary"
)


@dataclass
class Check:
    runner: str
    ready: bool
    detail: str
    fix: str = ""


def elf_abi(path: Path) -> str | None:
    """The Android ABI an ELF binary was built for, or None when it is not an ELF file."""
    head = Path(path).read_bytes()[:20]
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    little = head[5] == 1
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    return _ELF_ABI.get(machine, f"e_machine {machine}")


def _free(transport: Transport, folder: str) -> int | None:
    try:
        return transport.free_space(folder)
    except Exception:
        return None


def _tool_check(
    transport: Transport, runner: str, binary: Path | None, device_abi: str, sources: str, flag: str
) -> Check:
    if binary is None:
        return Check(
            runner, False, "no binary configured", f"pass {flag} PATH (the {device_abi or 'device'} build): {sources}"
        )
    if not binary.is_file():
        return Check(runner, False, f"{binary} does not exist", f"pass {flag} PATH: {sources}")
    abi = elf_abi(binary)
    if abi is None:
        return Check(runner, False, f"{binary} is not an ELF executable", f"use the Android build: {sources}")
    if device_abi and abi != device_abi and not (device_abi == "arm64-v8a" and abi == "armeabi-v7a"):
        return Check(
            runner,
            False,
            f"{binary.name} is built for {abi}, the device is {device_abi}",
            f"use the {device_abi} build: {sources}",
        )
    from .artifacts import Artifact, remote_path, sha256_of, size_of

    remote = remote_path(transport, Artifact(binary, sha256_of(binary), size_of(binary), "tool"))
    pushed = transport.exists(remote)
    return Check(
        runner, True, f"{binary.name} ({abi}); " + ("already on the device" if pushed else "pushed on the first run")
    )


def diagnose(
    transport: Transport,
    benchmark_model: Path | None = None,
    ort_perf_test: Path | None = None,
    android_app: Path | None = None,
    executor_runner: Path | None = None,
) -> list[Check]:
    """One Check per runner, plus the device's free space. ``executor_runner`` defaults to
    $EDGEVIT_EXECUTOR_RUNNER."""
    from .runners.app import FILES_DIR, has_instrumentation, installed_version

    info = transport.device_info()
    checks: list[Check] = []
    free = _free(transport, transport.work_dir.rsplit("/", 1)[0] or "/")
    if free is not None and free < MIN_FREE_BYTES:
        checks.append(
            Check(
                "device",
                False,
                f"{free // 2**20} MB free under {transport.work_dir}",
                "free some space on the device (models and runner binaries go there)",
            )
        )
    else:
        space = f"{free // 2**20} MB free" if free is not None else "free space unknown"
        checks.append(Check("device", True, f"{info.model} ({info.abi}, {info.os_version}); {space}"))
    checks.append(
        _tool_check(transport, "benchmark_model", benchmark_model, info.abi, LITERT_SOURCES, "--benchmark-model")
    )
    checks.append(
        _tool_check(transport, "onnxruntime_perf_test", ort_perf_test, info.abi, ORT_SOURCES, "--ort-perf-test")
    )
    from .runners.executor_runner import ENV_EXECUTOR_RUNNER, SOURCES

    if executor_runner is None and os.environ.get(ENV_EXECUTOR_RUNNER):
        executor_runner = Path(os.environ[ENV_EXECUTOR_RUNNER])
    checks.append(_tool_check(transport, "executor_runner", executor_runner, info.abi, SOURCES, "--executor-runner"))
    version = installed_version(transport)
    build = (
        "build it (cd android_app && ./gradlew assembleRelease, see android_app/README.md) and pass "
        "--android-app PATH.apk to install it"
    )
    if version is None:
        checks.append(
            Check(
                "app",
                False,
                f"{P.APP_PACKAGE} is not installed",
                "pass --android-app PATH.apk to the sweep" if android_app else build,
            )
        )
    elif version != P.APP_VERSION:
        checks.append(
            Check(
                "app",
                False,
                f"{P.APP_PACKAGE} {version} is installed; this toolkit needs "
                f"{P.APP_VERSION} (protocol {P.PROTOCOL_VERSION})",
                build,
            )
        )
    else:
        listing = transport.shell(f"ls {shlex.quote(FILES_DIR)} 2>/dev/null", timeout=60)
        checks.append(
            Check(
                "app",
                True,
                f"{P.APP_PACKAGE} {version}; files dir "
                + ("present" if listing.ok and listing.stdout.strip() else "created on first launch"),
            )
        )
    if has_instrumentation(transport):
        checks.append(
            Check(
                "instrument",
                version == P.APP_VERSION,
                f"{P.APP_INSTRUMENTATION} installed",
                "" if version == P.APP_VERSION else "install the matching app first",
            )
        )
    else:
        checks.append(
            Check(
                "instrument",
                False,
                f"{P.APP_INSTRUMENTATION} is not installed",
                "cd android_app && ./gradlew installReleaseAndroidTest (or adb install the androidTest APK)",
            )
        )
    return checks
