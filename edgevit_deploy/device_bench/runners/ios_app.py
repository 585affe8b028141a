"""The iOS benchmark app runner: the app runner of :mod:`.app` (push job -> launch -> follow the heartbeat ->
pull -> parity through the one validator) over an iOS transport (:mod:`..transports.devicectl`), which has
no shell: files go to the app's ``Documents/`` through its data container, the app is launched by bundle id.

What differs from Android, and only that, is overridden here: install check / launch / stop / poll, and the
row's platform fields. Core ML compute units ride on the delegate axis (cpu -> cpuOnly, gpu -> cpuAndGPU,
ane -> cpuAndNeuralEngine, all -> all; see ``jobs.builder.COMPUTE_UNITS``). ``ProcessInfo.thermalState``
(0 nominal, 1 fair, 2 serious, 3 critical) before or after the timed loop at serious or above marks the row
throttled. Energy is never measured on iOS (no per-app reading exists): the row says so.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DeviceDisconnectedError, DeviceError
from ..jobs import protocol as P
from ..types import Transport
from .app import AppProblem, AppRunner

log = logging.getLogger(__name__)

#: ProcessInfo.ThermalState raw values, as the app writes them in thermal.status
THERMAL_STATES = ("nominal", "fair", "serious", "critical")
THROTTLED_FROM = 2  # serious
ENERGY_NOTE = "unavailable on iOS: the system gives an app no energy or battery-current reading (nothing is estimated)"


class IosAppRunner(AppRunner):
    """Measure one Core ML row in the iOS app (``ios_app/``) through the job protocol."""

    name = "app"
    instrument = False
    files_dir = P.IOS_FILES_DIR
    crash_hint = (
        "see the device log (Xcode > Window > Devices and Simulators > Open Console, process "
        f"{P.IOS_EXECUTABLE}) and Settings > Privacy > Analytics Data for a crash report"
    )
    killer = "iOS jetsam memory limit"
    launch_hint = (
        f"after the launch: unlock the iPhone and open {P.IOS_EXECUTABLE} by hand, it runs the "
        "pending jobs when it comes to the foreground"
    )

    def _ios(self, transport: Transport) -> Any:
        for op in ("app_version", "install_app", "launch_app", "app_running", "terminate_app"):
            if not hasattr(transport, op):
                raise AppProblem(f"{transport.device_id}: not an iOS transport (use --device ios:UDID)")
        return transport

    def _ensure(self, transport: Transport) -> None:
        ios = self._ios(transport)
        version = ios.app_version()
        if version == P.APP_VERSION:
            return
        have = f"version {version} is installed" if version else "it is not installed"
        app = getattr(self.config, "ios_app", None)
        if app is None:
            raise AppProblem(
                f"the iOS benchmark app {P.IOS_BUNDLE_ID} {P.APP_VERSION} is needed but {have}: "
                "build it (ios_app/README.md) and pass --ios-app PATH.ipa"
            )
        try:
            ios.install_app(Path(app))
        except DeviceDisconnectedError:
            raise
        except DeviceError as exc:
            raise AppProblem(f"installing {app} failed: {exc}") from None
        version = ios.app_version()
        if version != P.APP_VERSION:
            raise AppProblem(
                f"{app} installed version {version}, this toolkit speaks protocol "
                f"{P.PROTOCOL_VERSION} with app {P.APP_VERSION}: rebuild the app from this checkout"
            )

    def _stop(self, transport: Transport) -> None:
        try:
            self._ios(transport).terminate_app()
        except DeviceError as exc:
            log.debug("%s: stopping the app: %s", transport.device_id, exc)

    def _cleanup(self, transport: Transport, job_id: str) -> None:
        """devicectl cannot delete in an app container: the job folder stays (the app keeps its results too)."""

    def _push_job(self, transport: Transport, staged: Path, job: P.Job) -> None:
        remote = f"{self.files_dir}/{P.JOBS_DIR}/{job.job_id}"
        local = P.job_dir(staged, job.job_id)
        files = [p for p in sorted(local.rglob("*")) if p.is_file() and p.name != P.JOB_FILE]
        try:
            for f in [*files, local / P.JOB_FILE]:  # job.json last: the app only sees complete jobs
                transport.push(f, f"{remote}/{f.relative_to(local).as_posix()}")
        except DeviceDisconnectedError:
            raise
        except DeviceError as exc:
            raise AppProblem(f"cannot copy job {job.job_id} into the app's container: {exc}") from None

    def _start(self, transport: Transport, timeout: float) -> str | None:
        ios = self._ios(transport)
        with tempfile.TemporaryDirectory(prefix="edgevit-ios-") as tmp:
            blank = Path(tmp) / P.STATUS_FILE  # no delete in devicectl: an empty heartbeat reads as "none yet"
            blank.write_text("")
            transport.push(blank, f"{self.files_dir}/{P.STATUS_FILE}")
        try:
            ios.launch_app()
        except DeviceDisconnectedError:
            raise
        except DeviceError as exc:
            return (
                f"launching {P.IOS_BUNDLE_ID} failed ({exc}); unlock the iPhone and open "
                f"{P.IOS_EXECUTABLE} by hand, it runs the pending jobs"
            )
        return None

    def _poll(self, transport: Transport, job_id: str) -> tuple[P.Status | None, bool, bool]:
        ios = self._ios(transport)
        status = None
        with tempfile.TemporaryDirectory(prefix="edgevit-ios-") as tmp:
            local = Path(tmp) / P.STATUS_FILE
            try:
                transport.pull(f"{self.files_dir}/{P.STATUS_FILE}", local)
                text = local.read_text(errors="replace").strip()
                if text:
                    status = P.Status.from_dict(json.loads(text), where="status.json")
            except FileNotFoundError:
                pass
            except (ValueError, P.ProtocolError) as exc:
                log.debug("%s: unreadable heartbeat (%s)", transport.device_id, exc)
        has_result = transport.exists(f"{self.files_dir}/{P.RESULTS_DIR}/{job_id}.json")
        return status, has_result, ios.app_running()

    # ------------------------------------------------------------------------------------- the row
    def _thermal_fields(self, result: P.Result) -> dict[str, Any]:
        def state(t: P.Thermal) -> dict[str, Any]:
            name = THERMAL_STATES[t.status] if t.status is not None and 0 <= t.status < 4 else None
            return {"thermal_status": t.status, "thermal_state": name}

        return {"thermal_before": state(result.thermal_before), "thermal_after": state(result.thermal_after)}

    def _throttled(self, result: P.Result) -> bool | None:
        states = [t.status for t in (result.thermal_before, result.thermal_after) if t.status is not None]
        return max(states) >= THROTTLED_FROM if states else None

    def _energy(self, result: P.Result, median_ms: float | None) -> tuple[float | None, float | None, str]:
        return None, None, ENERGY_NOTE

    def _extra_notes(self, result: P.Result, notes: list[str]) -> None:
        if result.compile_ms is not None:
            notes.append(
                f"Core ML compiled the package on the device in {result.compile_ms:.1f} ms "
                "(MLModel.compileModel, not part of init_ms)"
            )
        notes.append(f"compute units {result.runtime.get('delegate', '?')}")
