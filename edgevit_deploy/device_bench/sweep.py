"""Run a sweep: every job of a :class:`SweepSpec` on its device, each result committed to the store as
soon as it is measured; configurations already measured ok in the same sweep id are skipped.

Every row carries a sweep id. By default it is derived from the spec (:func:`spec_sweep_id`), so the same
command run again after a kill resumes: configurations measured ok under that id are skipped, failed ones are
measured again (their failure rows stay in the store's history). ``rerun=True`` starts a new sweep id (the
spec's id + ``-rN``, the first N free in the store) and measures everything again; the old rows stay.

Devices run in parallel (one thread each), each one job at a time. A transport fault (the device
dropped) is retried after a reconnect; when the device stays unreachable its remaining rows are
stored as failed with the reason and the other devices go on. The library logs; progress goes to
the optional :class:`SweepCallbacks` (the CLI draws a progress bar from them).

A row that cannot be committed (store disk full, read-only, locked) stops every device after its current
job and ``run`` raises :class:`StoreWriteError` naming how many rows were committed; those rows stay.
Ctrl-C (KeyboardInterrupt in the calling thread) stops the devices, records nothing half-measured and
re-raises once the device threads have ended (or after a grace period).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .android import throttled
from .artifacts import ArtifactCache, measurement_base
from .errors import DeviceDisconnectedError, DeviceNotFoundError
from .runners import runner_kind
from .store import ResultStore, StoreError, StoreWriteError, new_run_id
from .sweep_config import SweepSpec
from .types import BenchJob, DeviceInfo, Measurement, Runner, Transport

log = logging.getLogger(__name__)

#: exceptions that mean "the device went away", as opposed to "this job failed"
TRANSPORT_FAULTS: tuple[type[BaseException], ...] = (
    DeviceDisconnectedError,
    DeviceNotFoundError,
    ConnectionError,
    EOFError,
    BrokenPipeError,
)

#: how long an interrupted sweep waits for its device threads to notice before returning
STOP_GRACE_S = 10.0

TransportOpener = Callable[[str], Transport]
RunnerFactory = Callable[[str, str], Runner]


class SweepCallbacks:
    """Progress hooks; every method is optional to override. Called from device threads."""

    def on_start(self, total: int, todo: int) -> None: ...
    def on_job_start(self, job: BenchJob) -> None: ...
    def on_result(self, m: Measurement) -> None: ...
    def on_device_failed(self, device: str, reason: str) -> None: ...


@dataclass
class SweepResult:
    total: int
    skipped: int
    measurements: list[Measurement] = field(default_factory=list)
    sweep_id: str = ""  # the sweep id every row of this run was stored under

    @property
    def ok(self) -> int:
        return sum(m.status == "ok" for m in self.measurements)

    @property
    def failed(self) -> int:
        return sum(m.status != "ok" for m in self.measurements)


def open_device(device_id: str, work_dir: str | Path | None = None) -> Transport:
    """The transport of ``device_id`` (``local``: the host, working in ``work_dir``); one factory for every kind."""
    from .transports import open_transport

    return open_transport(device_id, local_work_dir=work_dir)


def default_runner_factory(config: Any = None) -> RunnerFactory:
    """The runner table's choice (``runners.get_runner``) for every kind of device, ``local`` included."""

    def factory(target: str, kind: str) -> Runner:
        from .runners import get_runner

        return get_runner(target, kind, config)

    return factory


def snapshot(transport: Transport) -> dict[str, Any]:
    """Thermal state and CPU frequencies, where the transport can read them (empty otherwise)."""
    reader = getattr(transport, "thermal_snapshot", None)
    if reader is None:
        return {}
    try:
        return dict(reader())
    except Exception as exc:
        log.debug("%s: no thermal snapshot: %s", transport.device_id, exc)
        return {}


class _Stopped(Exception):
    """Internal: this device thread ends now (the sweep was stopped or the store failed)."""


def spec_sweep_id(spec: SweepSpec) -> str:
    """The default sweep id of ``spec``: ``sweep-`` + 12 hex digits of a hash of what it measures (every row's
    configuration, :data:`~.types.ROW_KEY`; the sha256 of given artifact files; the checkpoint; the toolkit
    version). The same command gives the same id, so running it again resumes; as with the row key, warm-up,
    iterations and cooldown are not part of it (a resume with other counts skips what is measured). A toolkit
    upgrade, or other bytes of a given file, start a new sweep (new figures)."""
    from .. import __version__

    what = {
        "jobs": sorted(list(job.key) for job in spec.jobs()),
        "artifacts": sorted(a.sha256 for a in spec.given_artifacts()),  # given files: other bytes, another sweep
        "checkpoint": spec.checkpoint,
        "toolkit": __version__,
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return f"sweep-{digest[:12]}"


def rerun_sweep_id(base: str, taken: Iterable[str]) -> str:
    """``base`` + ``-rN`` with the first N >= 2 not in ``taken`` (the store's sweep ids)."""
    used = set(taken)
    n = 2
    while f"{base}-r{n}" in used:
        n += 1
    return f"{base}-r{n}"


def check_sweep_id(sweep_id: str) -> str:
    """A sweep id given by the user: 1-100 printable characters without spaces (raises SweepConfigError)."""
    from .sweep_config import SweepConfigError

    if not sweep_id or len(sweep_id) > 100 or any(c.isspace() or not c.isprintable() for c in sweep_id):
        raise SweepConfigError(f"--sweep-id must be 1-100 printable characters without spaces, got {sweep_id!r}")
    return sweep_id


def failed(job: BenchJob, reason: str, device: DeviceInfo | None = None) -> Measurement:
    return Measurement(status="failed", reason=reason, device=device, **measurement_base(job))


class Sweep:
    def __init__(
        self,
        spec: SweepSpec,
        store: ResultStore,
        cache: ArtifactCache,
        opener: TransportOpener = open_device,
        runner_factory: RunnerFactory | None = None,
        callbacks: SweepCallbacks | None = None,
        reconnect_attempts: int = 3,
        reconnect_delay_s: float = 2.0,
        sweep_id: str | None = None,
        rerun: bool = False,
        tags: Sequence[str] = (),
    ):
        """``sweep_id``: the id to store rows under and resume from (default :func:`spec_sweep_id`);
        ``rerun``: a new id derived from it (:func:`rerun_sweep_id`); ``tags``: labels on every row."""
        self.spec = spec
        base = check_sweep_id(sweep_id) if sweep_id is not None else spec_sweep_id(spec)
        self.sweep_id = rerun_sweep_id(base, store.sweep_ids()) if rerun else base
        self.tags = list(dict.fromkeys(tags))
        self.store = store
        self.cache = cache
        self.opener = opener
        self.runner_factory = runner_factory or default_runner_factory()
        self.callbacks = callbacks or SweepCallbacks()
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay_s = reconnect_delay_s
        self._results: list[Measurement] = []
        self._results_lock = threading.Lock()
        self._transports: dict[str, Transport] = {}  # open per device, closed on interrupt
        self._stop = threading.Event()  # set on Ctrl-C or a store failure: devices end
        self._store_error: StoreError | None = None  # the first write that failed
        self._crash: BaseException | None = None  # an unexpected error in a device thread

    def pending(self) -> tuple[list[BenchJob], int]:
        jobs = self.spec.jobs()
        done = self.store.completed_keys(include_failed=not self.spec.retry_failed, sweep_id=self.sweep_id)
        todo = [j for j in jobs if j.key not in done]
        return todo, len(jobs)

    def run(self) -> SweepResult:
        todo, total = self.pending()
        log.info(
            "sweep %s: %d rows, %d already done, %d to measure", self.sweep_id, total, total - len(todo), len(todo)
        )
        self.callbacks.on_start(total, len(todo))
        by_device: dict[str, list[BenchJob]] = {}
        for job in todo:
            by_device.setdefault(job.device, []).append(job)
        threads = [
            threading.Thread(target=self._device_worker, args=(dev, jobs), name=f"sweep-{dev}", daemon=True)
            for dev, jobs in by_device.items()
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            log.warning("sweep interrupted: closing devices; every row measured so far is in the store")
            self._stop.set()
            for transport in list(self._transports.values()):
                try:
                    transport.close()
                except Exception:
                    pass
            deadline = time.monotonic() + STOP_GRACE_S
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            raise
        if self._store_error is not None:
            committed = len(self._results)
            raise StoreWriteError(
                f"{self._store_error} [{committed} row(s) of this run were committed before the failure and are kept]"
            ) from self._store_error
        if self._crash is not None:
            raise self._crash
        return SweepResult(
            total=total, skipped=total - len(todo), measurements=list(self._results), sweep_id=self.sweep_id
        )

    # --------------------------------------------------------------------------------- per device
    def _record(self, m: Measurement) -> None:
        if self._stop.is_set():
            raise _Stopped()
        m.run_id = new_run_id()
        m.sweep_id = self.sweep_id
        m.tags = list(dict.fromkeys([*m.tags, *self.tags]))
        try:
            self.store.put(m)
        except StoreError as exc:
            with self._results_lock:
                if self._store_error is None:
                    self._store_error = exc
            self._stop.set()
            log.debug("%s: %s; stopping the sweep (raised once every worker has stopped)", m.job.device, exc)
            raise _Stopped() from exc
        with self._results_lock:
            self._results.append(m)
        self.callbacks.on_result(m)

    def _connect(self, device: str) -> Transport:
        last: BaseException | None = None
        for attempt in range(1, self.reconnect_attempts + 1):
            try:
                return self.opener(device)
            except Exception as exc:
                last = exc
                log.warning("%s: connect attempt %d/%d failed: %s", device, attempt, self.reconnect_attempts, exc)
                if attempt < self.reconnect_attempts:
                    time.sleep(self.reconnect_delay_s)
        raise ConnectionError(f"cannot reach {device} after {self.reconnect_attempts} attempts: {last}")

    def _reconnect(self, device: str, transport: Transport) -> Transport:
        reconnect = getattr(transport, "reconnect", None)
        if reconnect is not None:
            try:
                reconnect()
                transport.device_info()  # prove the link works again
                return transport
            except Exception as exc:
                log.warning("%s: reconnect failed: %s", device, exc)
        try:
            transport.close()
        except Exception:
            pass
        return self._connect(device)

    def _give_up(self, device: str, jobs: Sequence[BenchJob], reason: str, info: DeviceInfo | None) -> None:
        log.error("%s: %s; marking its %d remaining rows failed", device, reason, len(jobs))
        self.callbacks.on_device_failed(device, reason)
        for job in jobs:
            self._record(failed(job, reason, info))

    def _device_worker(self, device: str, jobs: list[BenchJob]) -> None:
        """One device's jobs; never dies with a traceback (errors end up in ``run``)."""
        try:
            self._device_jobs(device, jobs)
        except _Stopped:
            log.info("%s: stopped", device)
        except Exception as exc:
            log.exception("%s: device thread failed", device)
            with self._results_lock:
                self._crash = self._crash or exc
            self._stop.set()

    def _device_jobs(self, device: str, jobs: list[BenchJob]) -> None:
        try:
            transport = self._connect(device)
            info = transport.device_info()
        except _Stopped:
            raise
        except Exception as exc:
            self._give_up(device, jobs, f"device unreachable: {exc}", None)
            return
        self._transports[device] = transport
        try:
            for i, job in enumerate(jobs):
                if i and job.cooldown_s > 0:
                    self._stop.wait(job.cooldown_s)
                if self._stop.is_set():
                    raise _Stopped()
                self.callbacks.on_job_start(job)
                attempt = 0
                while True:
                    try:
                        m = self._measure(transport, job, info)
                        break
                    except TRANSPORT_FAULTS as exc:
                        if self._stop.is_set():
                            raise _Stopped() from exc
                        attempt += 1
                        log.warning(
                            "%s dropped during %s (%s); reconnecting (%d/%d)",
                            device,
                            job.key,
                            exc,
                            attempt,
                            self.reconnect_attempts,
                        )
                        if attempt > self.reconnect_attempts:
                            self._give_up(device, jobs[i:], f"device dropped: {exc}", info)
                            return
                        try:
                            transport = self._transports[device] = self._reconnect(device, transport)
                        except Exception as exc2:
                            self._give_up(device, jobs[i:], f"device dropped and did not come back: {exc2}", info)
                            return
                self._record(m)
        finally:
            self._transports.pop(device, None)
            try:
                transport.close()
            except Exception:
                pass

    def _measure(self, transport: Transport, job: BenchJob, info: DeviceInfo) -> Measurement:
        """One row. Job-level problems become a failed Measurement; transport faults propagate."""
        try:
            artifact = self.cache.ensure(job)
        except Exception as exc:
            log.warning("export failed for %s: %s", job.key, exc)
            return failed(job, f"export failed: {type(exc).__name__}: {exc}", info)
        try:
            runner = self.runner_factory(job.target, runner_kind(transport.kind, job.runner))
        except Exception as exc:
            return failed(job, str(exc), info)
        # a runner that reads the device's state itself (the Android tools, the apps) is not probed around
        # again: one probe before the run, one after, judged by ``android.throttle_reasons``
        probe = not getattr(runner, "records_thermal", False)
        before = snapshot(transport) if probe else {}
        try:
            m = runner.run(transport, job, artifact.path)
        except TRANSPORT_FAULTS:
            raise
        except Exception as exc:
            log.warning("%s failed on %s: %s", job.key, job.device, exc)
            m = failed(job, f"{type(exc).__name__}: {exc}", info)
        after = snapshot(transport) if probe else {}
        m.device = m.device or info
        m.artifact_sha256 = m.artifact_sha256 or artifact.sha256
        m.model_size_bytes = m.model_size_bytes or artifact.size_bytes
        if artifact.parity:  # a given file's report.json figures; an on-device check keeps its place
            m.parity = {**m.parity, "report_json": artifact.parity} if m.parity else dict(artifact.parity)
        m.thermal_before = m.thermal_before or before
        m.thermal_after = m.thermal_after or after
        if m.throttled is None:
            m.throttled = throttled(m.thermal_before, m.thermal_after)
        return m
