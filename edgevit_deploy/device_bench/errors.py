"""Typed errors of device benchmarking. Every message says what went wrong and what to do."""

from __future__ import annotations

from typing import ClassVar

from ..errors import EdgeVitDeployError


class DeviceError(EdgeVitDeployError, RuntimeError):
    """Base class of errors talking to a device."""

    def __init__(self, device: str, message: str):
        self.device = device
        super().__init__(f"{device}: {message}")


class DeviceNotFoundError(DeviceError):
    """The device id is unknown to the adb server, or its address is unreachable."""

    exit_code: ClassVar[int] = 2  # the CLI's code: a device id that names no reachable device is bad input


class DeviceDisconnectedError(DeviceError):
    """The connection dropped; ``transport.reconnect()`` may bring it back."""


class DeviceTimeoutError(DeviceError):
    """A command did not finish in time."""

    def __init__(self, device: str, command: str, timeout_s: float):
        self.command = command
        self.timeout_s = timeout_s
        super().__init__(
            device,
            f"command did not finish within {timeout_s:g} s: {command[:200]} "
            "(raise the runner timeout, or lower --num_runs)",
        )


class DeviceFullError(DeviceError):
    """Not enough free space on the device for a push."""

    def __init__(self, device: str, remote_dir: str, free_bytes: int | None, needed_bytes: int):
        self.remote_dir = remote_dir
        self.free_bytes = free_bytes
        self.needed_bytes = needed_bytes
        free = "unknown" if free_bytes is None else f"{free_bytes} bytes"
        super().__init__(
            device,
            f"not enough space in {remote_dir}: {free} free, {needed_bytes} bytes needed "
            "(delete old artifacts from the device's work dir, or pick another --work-dir)",
        )


class DeviceCommandError(DeviceError):
    """A shell command the toolkit needed failed (non-zero exit)."""

    def __init__(self, device: str, command: str, exit_code: int, output: str):
        self.command = command
        self.exit_code = exit_code
        self.output = output
        super().__init__(device, f"`{command[:200]}` exited with {exit_code}: {output.strip()[-500:]}")


class DeviceIdError(EdgeVitDeployError, ValueError):
    """A device id that does not parse."""


class RunnerConfigError(EdgeVitDeployError, ValueError):
    """A runner cannot run: missing tool binary, unknown option, no runner for a target."""
