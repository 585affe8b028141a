"""The benchmark-app runners: measure a row inside the Android app (``android_app/``) through the device job
protocol (:mod:`edgevit_deploy.device_bench.jobs`), and check what it computed against PyTorch.

``AppRunner`` (``--runner app``): check the app is installed at the protocol's version (install
``--android-app PATH.apk`` when it is missing or outdated), push the job folder (model, the fixed parity
inputs, job.json last) into the app's external files dir, ``am start`` its Activity, follow the heartbeat
(status.json) until the job's result appears, pull the result and the outputs, validate them, and run THE
validator on the outputs against PyTorch on the same inputs (the row's ``parity`` column).
``InstrumentRunner`` (``--runner instrument``) starts the app's instrumentation test with ``am instrument -w``
instead, as device farms do. Runners never call subprocess: everything goes through the Transport.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import Artifact, measurement_base, sha256_of, size_of
from ..jobs import builder
from ..jobs import protocol as P
from ..stats import summarise
from ..types import BenchJob, Measurement, Transport
from .config import DEFAULT_DEVICE_TIMEOUT_S, RunnerConfig

log = logging.getLogger(__name__)

FILES_DIR = f"/sdcard/Android/data/{P.APP_PACKAGE}/files"
POLL_S = 0.5
_RESULT_MARK = "EDGEVIT_RESULT_PRESENT"
_ALIVE_MARK = "EDGEVIT_APP_ALIVE"


class AppProblem(Exception):
    """The app cannot take the job (not installed, outdated, install failed); the row fails with this reason."""


def installed_version(transport: Transport, package: str = P.APP_PACKAGE) -> str | None:
    """The installed app's versionName (``dumpsys package``), or None when it is not installed."""
    res = transport.shell(f"dumpsys package {shlex.quote(package)} | grep -m1 versionName=", timeout=60)
    match = re.search(r"versionName=(\S+)", res.stdout)
    return match.group(1) if match else None


def has_instrumentation(transport: Transport) -> bool:
    res = transport.shell("pm list instrumentation", timeout=60)
    pattern = rf"^instrumentation:{re.escape(P.APP_INSTRUMENTATION)}(\s|$)"
    return re.search(pattern, res.stdout, flags=re.MULTILINE) is not None


def install_app(transport: Transport, apk: Path) -> str:
    """Push ``apk`` and ``pm install -r -t`` it; the installer's output. AppProblem when it does not say Success."""
    remote = f"{transport.work_dir.rstrip('/')}/edgevit-bench-app.apk"
    transport.shell(f"mkdir -p {shlex.quote(transport.work_dir)}", timeout=60)
    transport.push(apk, remote)
    res = transport.shell(f"pm install -r -t {shlex.quote(remote)}", timeout=300)
    out = (res.stdout + res.stderr).strip()
    transport.shell(f"rm -f {shlex.quote(remote)}", timeout=60)
    if "Success" not in out:
        raise AppProblem(f"installing {apk} failed: {out[-300:] or f'exit {res.exit_code}'}")
    return out


def ensure_app(transport: Transport, config: RunnerConfig, instrument: bool = False) -> str:
    """Make sure the app (and for ``instrument`` its test package) is on the device at ``APP_VERSION``."""
    version = installed_version(transport)
    if version != P.APP_VERSION:
        have = f"version {version} is installed" if version else "it is not installed"
        if config.android_app is None:
            raise AppProblem(
                f"the benchmark app {P.APP_PACKAGE} {P.APP_VERSION} is needed but {have}: build it "
                "(android_app/README.md) and pass --android-app PATH.apk"
            )
        install_app(transport, config.android_app)
        version = installed_version(transport)
        if version != P.APP_VERSION:
            raise AppProblem(
                f"{config.android_app} installed version {version}, this toolkit speaks protocol "
                f"{P.PROTOCOL_VERSION} with app {P.APP_VERSION}: rebuild the APK from this checkout"
            )
    if instrument and not has_instrumentation(transport):
        raise AppProblem(
            f"the instrumentation {P.APP_INSTRUMENTATION} is not installed: install the test APK "
            "(cd android_app && ./gradlew installReleaseAndroidTest, see android_app/README.md)"
        )
    return version


def energy_from_samples(samples: list[list[float]], latency_ms: float | None) -> tuple[float | None, float | None]:
    """(mJ per inference, mean W) from the app's [t_ms, current_uA, voltage_uV] samples: whole-device draw."""
    if not samples or latency_ms is None:
        return None, None
    watts = [abs(s[1]) * abs(s[2]) * 1e-12 for s in samples]
    power = float(np.mean(watts))
    return power * latency_ms, power


class AppRunner:
    """Measure one row in the benchmark app through the job protocol (see module docstring)."""

    name = "app"
    records_thermal = True  # the app reports the thermal state before and after the job (the sweep does not probe)
    instrument = False
    #: the app's files dir as the transport addresses it (iOS: ``Documents`` in the app's data container)
    files_dir = FILES_DIR
    #: where a user looks when the app died (the failure reasons name it)
    crash_hint = "see `adb logcat` / `adb shell dumpsys activity exit-info " + P.APP_PACKAGE + "`"
    launch_hint = "after am start (is the screen locked, or the app stopped by the system?)"
    killer = "low-memory killer"

    def __init__(self, config: RunnerConfig | None = None):
        self.config = config or RunnerConfig.from_env()
        self._checked: set[str] = set()

    # ------------------------------------------------------------------------------------- device ops
    # (overridden by the iOS app runner, runners/ios_app.py, whose transport has no shell)
    def _ensure(self, transport: Transport) -> None:
        ensure_app(transport, self.config, instrument=self.instrument)

    def _stop(self, transport: Transport) -> None:
        transport.shell(f"am force-stop {shlex.quote(P.APP_PACKAGE)}", timeout=60)

    def _cleanup(self, transport: Transport, job_id: str) -> None:
        transport.shell(f"rm -rf {self._q(f'{self.files_dir}/{P.JOBS_DIR}/{job_id}')}", timeout=60)

    def _result_exists(self, transport: Transport, remote: str) -> bool:
        return transport.exists(remote)

    def _q(self, path: str) -> str:
        return shlex.quote(path)

    def _push_job(self, transport: Transport, staged: Path, job: P.Job) -> None:
        remote = f"{self.files_dir}/{P.JOBS_DIR}/{job.job_id}"
        made = transport.shell(
            f"rm -rf {self._q(remote)} && mkdir -p {self._q(remote + '/inputs')} "
            f"{self._q(self.files_dir + '/' + P.RESULTS_DIR)}",
            timeout=60,
        )
        if not made.ok:
            raise AppProblem(f"cannot create {remote} on the device: {(made.stdout + made.stderr).strip()[:300]}")
        local = P.job_dir(staged, job.job_id)
        files = [p for p in sorted(local.rglob("*")) if p.is_file() and p.name != P.JOB_FILE]
        for f in files:
            transport.push(f, f"{remote}/{f.relative_to(local).as_posix()}")
        transport.push(local / P.JOB_FILE, f"{remote}/{P.JOB_FILE}")  # last: the app only sees complete jobs

    def _start(self, transport: Transport, timeout: float) -> str | None:
        """Start the app (or run its instrumentation to the end); a failure reason, or None."""
        transport.shell(f"rm -f {self._q(self.files_dir + '/' + P.STATUS_FILE)}", timeout=60)
        if self.instrument:
            res = transport.shell(f"am instrument -w -r {shlex.quote(P.APP_INSTRUMENTATION)}", timeout=timeout)
            out = (res.stdout + res.stderr).strip()
            if res.timed_out:
                return f"am instrument did not finish within {timeout:g} s"
            if "Process crashed" in out or "INSTRUMENTATION_FAILED" in out or "FAILURES!!!" in out:
                return f"the instrumentation test failed: {out[-300:]}"
            return None
        res = transport.shell(f"am start -n {shlex.quote(P.APP_ACTIVITY)}", timeout=60)
        out = (res.stdout + res.stderr).strip()
        if not res.ok or "Error" in out:
            return f"am start failed: {out[-300:] or f'exit {res.exit_code}'}"
        return None

    def _poll(self, transport: Transport, job_id: str) -> tuple[P.Status | None, bool, bool]:
        """(heartbeat, result present, app process alive) in one shell round trip."""
        status_path = self._q(f"{self.files_dir}/{P.STATUS_FILE}")
        result_path = self._q(f"{self.files_dir}/{P.RESULTS_DIR}/{job_id}.json")
        res = transport.shell(
            f"cat {status_path} 2>/dev/null; echo; "
            f"test -e {result_path} && echo {_RESULT_MARK}; "
            f"pidof {shlex.quote(P.APP_PACKAGE)} >/dev/null 2>&1 && echo {_ALIVE_MARK}; true",
            timeout=60,
        )
        text = res.stdout
        has_result, alive = _RESULT_MARK in text, _ALIVE_MARK in text
        body = text.split(_RESULT_MARK)[0].split(_ALIVE_MARK)[0].strip()
        status = None
        if body:
            try:
                status = P.Status.from_dict(json.loads(body), where="status.json")
            except (ValueError, P.ProtocolError) as exc:
                log.debug("%s: unreadable heartbeat (%s)", transport.device_id, exc)
        return status, has_result, alive

    def _follow(self, transport: Transport, job: P.Job) -> str | None:
        """Wait for the job's result while the heartbeat moves; a failure reason, or None when it is there."""
        cfg = self.config
        start = time.monotonic()
        deadline = start + job.timeout_s + cfg.launch_timeout_s
        last_seq: int | None = None
        last_status: P.Status | None = None
        last_change = start
        dead_polls = 0
        while True:
            status, has_result, alive = self._poll(transport, job.job_id)
            now = time.monotonic()
            if has_result:
                return None
            if status is not None and status.seq != last_seq:
                last_seq, last_status, last_change = status.seq, status, now
            where = (
                f"job {last_status.job_id or '-'}, phase {last_status.phase}, iteration {last_status.iteration}"
                if last_status
                else "before its first heartbeat"
            )
            if last_status is not None and last_status.state == "done" and not alive:
                return (
                    f"the app finished without a result for job {job.job_id} (last heartbeat: {where}); "
                    f"{self.crash_hint}"
                )
            if last_status is not None and not alive:
                dead_polls += 1
                if dead_polls >= 2:  # two polls apart: not the moment between a result and the process exit
                    return (
                        f"the app process died without a result ({where}): it crashed or was killed by the "
                        f"{self.killer}; {self.crash_hint}"
                    )
            else:
                dead_polls = 0
            if last_status is None and now - start > cfg.launch_timeout_s:
                return f"the app never started: no heartbeat {cfg.launch_timeout_s:g} s {self.launch_hint}"
            if last_status is not None and now - last_change > cfg.heartbeat_timeout_s:
                state = "still running (hung)" if alive else "gone"
                return f"the heartbeat stopped for {now - last_change:.0f} s ({where}); the app process is {state}"
            if now > deadline:
                return f"no result within the job's {job.timeout_s:g} s timeout ({where})"
            time.sleep(POLL_S)

    def _pull_result(self, transport: Transport, local_files: Path, job: P.Job) -> tuple[P.Result, str]:
        rel = f"{P.RESULTS_DIR}/{job.job_id}.json"
        transport.pull(f"{self.files_dir}/{rel}", local_files / rel)
        text = (local_files / rel).read_text(errors="replace")
        try:
            doc = json.loads(text)
            outputs = P.Result.from_dict(doc, where=f"device {rel}").outputs
        except ValueError as exc:
            raise P.ProtocolError(f"device {rel}: not valid JSON ({exc})") from None
        for out in outputs:
            if out.file.startswith(f"{P.RESULTS_DIR}/{job.job_id}/"):
                transport.pull(f"{self.files_dir}/{out.file}", local_files / out.file)
        return P.read_result(local_files, job), text

    # ------------------------------------------------------------------------------------- the row
    def run(self, transport: Transport, job: BenchJob, artifact: Any) -> Measurement:
        if not isinstance(artifact, Artifact):
            path = Path(artifact)
            artifact = Artifact(path=path, sha256=sha256_of(path), size_bytes=size_of(path), key="")
        mode = "instrument" if self.instrument else "app"
        base = measurement_base(job, artifact, runtime=mode)
        timeout = self.config.timeout_s or DEFAULT_DEVICE_TIMEOUT_S

        def failed(reason: str, **extra: Any) -> Measurement:
            return Measurement(status="failed", reason=reason, **{**base, **extra})

        try:
            _model, inputs, reference = _reference(artifact.path, job, self.config)
            pjob = builder.build_job(job, artifact.path, artifact.sha256, inputs, timeout_s=timeout)
        except Exception as exc:
            return failed(f"{type(exc).__name__}: {exc}")
        try:
            if transport.device_id not in self._checked:
                self._ensure(transport)
                self._checked.add(transport.device_id)
        except AppProblem as exc:
            return failed(str(exc))

        with tempfile.TemporaryDirectory(prefix="edgevit-app-") as tmp:
            tmp_path = Path(tmp)
            result_remote = f"{self.files_dir}/{P.RESULTS_DIR}/{pjob.job_id}.json"
            status, has_result, alive = self._poll(transport, pjob.job_id)
            if has_result:
                log.info("%s: job %s already has a result on the device (resumed)", transport.device_id, pjob.job_id)
            elif alive and status is not None and status.job_id == pjob.job_id and not self.instrument:
                log.info(
                    "%s: the app is still running job %s (resumed): following it", transport.device_id, pjob.job_id
                )
                problem = self._follow(transport, pjob)
                if problem is not None:
                    self._stop(transport)
                    return failed(problem)
            else:
                staged = tmp_path / "stage"
                builder.stage_job(staged, pjob, artifact.path, inputs)
                try:
                    self._push_job(transport, staged, pjob)
                except AppProblem as exc:
                    return failed(str(exc))
                problem = self._start(transport, timeout + self.config.launch_timeout_s)
                if problem is None and not self.instrument:
                    problem = self._follow(transport, pjob)
                if problem is None and not self._result_exists(transport, result_remote):
                    problem = f"the app wrote no result for job {pjob.job_id}"
                if problem is not None:
                    self._stop(transport)
                    return failed(problem)
            try:
                result, raw = self._pull_result(transport, tmp_path / "files", pjob)
            except P.ProtocolError as exc:
                return failed(f"corrupt result from the app: {exc}")
            except FileNotFoundError as exc:
                return failed(f"the app's result or outputs could not be pulled: {exc}")
            self._cleanup(transport, pjob.job_id)
            return self._measurement(job, base, result, raw, tmp_path / "files", reference, mode)

    def _measurement(
        self,
        job: BenchJob,
        base: dict[str, Any],
        result: P.Result,
        raw: str,
        files: Path,
        reference: np.ndarray,
        mode: str,
    ) -> Measurement:
        from ...verify.report import Thresholds
        from ...verify.validator import validate_outputs

        rt = result.runtime
        base.update(
            runtime=f"{mode}: {rt['version'] or rt['name']} [{rt['delegate']}, {rt['threads']}t]",
            raw_output=raw[-20000:],
            **self._thermal_fields(result),
        )
        notes = [
            f"app {result.device.get('app_version', '')} on {result.device.get('model', '')} "
            f"({result.device.get('os', '')})"
        ]
        throttled = self._throttled(result)
        if not result.ok:
            return Measurement(
                status="failed",
                reason=f"the app reported: {result.error}",
                notes=notes,
                throttled=throttled,
                peak_memory_mb=result.peak_memory_mb,
                **base,
            )
        summary = summarise(result.latencies_ms)
        energy_mj, power_w, energy_note = self._energy(result, summary.median)
        candidate = P.read_outputs(files, result)
        parity = validate_outputs(
            reference,
            candidate,
            Thresholds.for_precision(job.precision),
            executor=f"on-device {mode} ({rt['name']}, {rt['delegate']})",
        )
        if not parity.passed:
            notes.append(f"on-device outputs differ from PyTorch: {parity.reason}")
        self._extra_notes(result, notes)
        if job.profile:  # the job protocol carries no per-op timings (yet): said, never silently missing
            notes.append(f"op profile not available for the {mode} runner (the job protocol has no per-op timings)")
        return Measurement(
            status="ok",
            init_ms=result.load_ms,
            first_ms=result.first_ms,
            warmup_count=result.warmup,
            latencies_ms=list(result.latencies_ms),
            **summary.as_measurement_fields(),
            peak_memory_mb=result.peak_memory_mb,
            energy_mj=energy_mj,
            power_w=power_w,
            energy_note=energy_note,
            throttled=throttled,
            notes=notes,
            parity=parity.to_dict(),
            **base,
        )

    def _thermal_fields(self, result: P.Result) -> dict[str, Any]:
        return {
            "thermal_before": {
                "thermal_status": result.thermal_before.status,
                "thermal_headroom": result.thermal_before.headroom,
            },
            "thermal_after": {
                "thermal_status": result.thermal_after.status,
                "thermal_headroom": result.thermal_after.headroom,
            },
        }

    def _throttled(self, result: P.Result) -> bool | None:
        """Android's thermal status (PowerManager's scale is thermalservice's), judged by the one rule."""
        from .. import android

        before, after = result.thermal_before.status, result.thermal_after.status
        if before is None or after is None:
            return None
        return bool(android.throttle_reasons({"thermal_status": before}, {"thermal_status": after}))

    def _energy(self, result: P.Result, median_ms: float | None) -> tuple[float | None, float | None, str]:
        energy_mj, power_w = energy_from_samples(result.power_samples, median_ms)
        note = (
            (
                "battery current x voltage sampled by the app (BatteryManager) during the timed loop: "
                "whole-device draw, idle not subtracted"
            )
            if energy_mj is not None
            else "the app got no battery current / voltage readings on this device"
        )
        return energy_mj, power_w, note

    def _extra_notes(self, result: P.Result, notes: list[str]) -> None:
        """Platform notes of an ok row (none on Android)."""


class InstrumentRunner(AppRunner):
    """The same jobs through the app's instrumentation test (``am instrument -w``), as device farms run it."""

    name = "instrument"
    instrument = True


_REFERENCE_LOCK = threading.Lock()
_REFERENCES: dict[tuple[str, ...], tuple[Any, np.ndarray, np.ndarray]] = {}


def _reference(artifact_path: Path, job: BenchJob, config: RunnerConfig) -> tuple[Any, np.ndarray, np.ndarray]:
    """The PyTorch model of the artifact, the fixed parity inputs (N, C, H, W) and PyTorch's outputs on them.

    Built once per artifact and under a lock: device threads run in parallel, and model construction draws
    from torch's global RNG (two interleaved constructions would get other weights than the export had)."""
    key = (str(artifact_path), sha256_of(artifact_path), job.model, str(job.img_size), str(config.checkpoint))
    with _REFERENCE_LOCK:
        if key not in _REFERENCES:
            _REFERENCES.clear()  # one artifact's reference at a time: rows of one artifact run back to back
            _REFERENCES[key] = _build_reference(artifact_path, job, config)
        return _REFERENCES[key]


def _build_reference(artifact_path: Path, job: BenchJob, config: RunnerConfig) -> tuple[Any, np.ndarray, np.ndarray]:
    from ...verify.artifact import model_for_artifact, read_artifact
    from ...verify.inputs import parity_inputs
    from ...verify.parity import reference_outputs

    parsed = read_artifact(Path(artifact_path))[3]
    model = model_for_artifact(job.model, parsed, config.checkpoint, job.img_size)
    if parsed is not None and parsed.layout == "NHWC":
        raise ValueError("the benchmark app feeds NCHW inputs; export without --nhwc")
    model.eval()
    inputs = parity_inputs(model.deploy_cfg)
    return model, inputs, reference_outputs(model, inputs)
