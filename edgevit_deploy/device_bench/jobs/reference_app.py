"""The Python reference implementation of the benchmark app: what ``android_app/bench-core`` does, function
for function (``JobRunner.runPending`` = :func:`run_pending`, ``JobRunner.runJob`` = :func:`run_job`,
``TimingLoop.run`` = :func:`timing_loop`, ``Heartbeat`` = :class:`Heartbeat`), with the host runtimes of
the target table as its ``ModelRunner`` (real timings, real outputs).

The stand-in adbd's ``am start`` launches it over the sandboxed files dir, so the host side of the app
runner is tested end to end without a phone::

    python -m edgevit_deploy.device_bench.jobs.reference_app FILES_DIR [--power-supply DIR]

Fault knobs for tests (``EDGEVIT_APP_FAULT``): ``crash:<phase>`` (the process dies in that phase),
``hang:<phase>`` (the heartbeat stops and the process sleeps), ``corrupt`` (the result file is garbage),
``oom:<phase>`` (killed by SIGKILL, as the low-memory killer does), ``perturb`` (the saved outputs are
changed, as a delegate that silently computes something else would).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import protocol as P

log = logging.getLogger(__name__)

FAULT_ENV = "EDGEVIT_APP_FAULT"
HEARTBEAT_INTERVAL_S = 0.5


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ModelRunner(Protocol):
    """bench-core's ``ModelRunner``: load once, run one input, name the runtime."""

    def load(self, model_path: Path, runtime: P.RuntimeRef) -> None: ...
    def run(self, x: np.ndarray) -> np.ndarray: ...
    def runtime_version(self) -> str: ...
    def close(self) -> None: ...


class DelegateError(RuntimeError):
    """The requested delegate cannot be applied (a failed result with this reason, never a CPU fallback)."""


class HostModelRunner:
    """The host runtime of the target whose ``app_runtime`` is the job's runtime (LiteRT / onnxruntime /
    ExecuTorch's Python runtime for ``.pte``; the Android app's ExecuTorchRunner is its twin)."""

    CPU_DELEGATES = ("cpu", "xnnpack")

    def __init__(self) -> None:
        self.session: Any = None
        self.name = ""

    def load(self, model_path: Path, runtime: P.RuntimeRef) -> None:
        from ...converters.table import TARGETS

        specs = [s for s in TARGETS.values() if s.app_runtime == runtime.name]
        if not specs:
            raise RuntimeError(f"no host runtime for app runtime {runtime.name!r}")
        if runtime.delegate not in self.CPU_DELEGATES:
            raise DelegateError(
                f"delegate {runtime.delegate!r} cannot be applied: the reference app runs on the host CPU only"
            )
        host = specs[0].load_host_runtime()
        reason = host.unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.name = host.name
        self.session = host.load(model_path, threads=runtime.threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(x), dtype=np.float32)

    def runtime_version(self) -> str:
        return f"{self.name} (host reference app)"

    def close(self) -> None:
        self.session = None


class Heartbeat:
    """bench-core's ``Heartbeat``: ``status.json`` rewritten atomically by a background thread every
    ``interval_s`` (and at once on every phase change), ``seq`` growing with every write."""

    def __init__(self, files_dir: Path, app_version: str = P.APP_VERSION, interval_s: float = HEARTBEAT_INTERVAL_S):
        self.files_dir = Path(files_dir)
        self.app_version = app_version
        self.interval_s = interval_s
        self.seq = 0
        self.job_id: str | None = None
        self.phase = "start"
        self.iteration = 0
        self.done_jobs: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="heartbeat")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def update(self, job_id: str | None = None, phase: str | None = None, iteration: int | None = None) -> None:
        changed = False
        with self._lock:
            if job_id is not None and job_id != self.job_id:
                self.job_id, changed = job_id, True
            if phase is not None and phase != self.phase:
                self.phase, changed = phase, True
            if iteration is not None:
                self.iteration = iteration
        if changed:
            self.beat()

    def beat(self, state: str = "running") -> None:
        with self._lock:
            self.seq += 1
            doc = {
                "protocol": P.PROTOCOL_VERSION,
                "state": state,
                "seq": self.seq,
                "job_id": self.job_id,
                "phase": self.phase,
                "iteration": self.iteration,
                "updated_at": utc_now(),
                "app_version": self.app_version,
                "done_jobs": list(self.done_jobs),
            }
            P.atomic_write_json(self.files_dir / P.STATUS_FILE, doc)

    def stop(self, state: str = "done") -> None:
        """Stop beating; ``state=done`` writes the final status (the app found no more pending jobs)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self.job_id, self.phase = None, "idle"
        self.beat(state)

    def freeze(self) -> None:
        """Fault: stop writing without a final status (what a hung app looks like)."""
        self._stop.set()


class PowerSampler:
    """bench-core's ``PowerSampler``: battery current (uA) and voltage (uV) read every ``interval_s``
    while the timed loop runs (BatteryManager on Android; the power_supply files here)."""

    def __init__(self, supply_dir: Path | None, interval_s: float = 0.05):
        self.supply_dir = supply_dir
        self.interval_s = interval_s
        self.samples: list[list[float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _read(self) -> list[float] | None:
        assert self.supply_dir is not None
        try:
            current = float((self.supply_dir / "current_now").read_text().split()[0])
            voltage = float((self.supply_dir / "voltage_now").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return [round((time.perf_counter() - self._t0) * 1000.0, 3), current, voltage]

    def _loop(self) -> None:
        while True:
            sample = self._read()
            if sample is not None:
                self.samples.append(sample)
            if self._stop.wait(self.interval_s):
                return

    def start(self) -> PowerSampler:
        if self.supply_dir is not None and self.supply_dir.is_dir():
            self._t0 = time.perf_counter()
            self._thread = threading.Thread(target=self._loop, daemon=True, name="power")
            self._thread.start()
        return self

    def stop(self) -> list[list[float]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples


def _fault() -> tuple[str, str]:
    kind, _, phase = os.environ.get(FAULT_ENV, "").partition(":")
    return kind, phase


def _fault_point(phase: str, heartbeat: Heartbeat) -> None:
    kind, where = _fault()
    if where != phase:
        return
    if kind == "crash":
        log.error("fault: crashing in phase %s", phase)
        os._exit(134)
    if kind == "oom":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        heartbeat.freeze()
        while True:
            time.sleep(3600)


def timing_loop(
    runner: ModelRunner, x: np.ndarray, warmup: int, iterations: int, deadline: float, heartbeat: Heartbeat
) -> tuple[float, list[float]]:
    """bench-core's ``TimingLoop.run``: the first inference (timed apart), ``warmup`` untimed runs, then
    ``iterations`` timed ones; ``TimeoutError`` when the monotonic ``deadline`` passes."""
    t0 = time.perf_counter()
    runner.run(x)
    first_ms = (time.perf_counter() - t0) * 1000.0
    heartbeat.update(phase="warmup")
    for i in range(warmup):
        heartbeat.update(iteration=i)
        runner.run(x)
        if time.monotonic() > deadline:
            raise TimeoutError(f"job timed out during warm-up ({i + 1} of {warmup} runs)")
    heartbeat.update(phase="timing", iteration=0)
    _fault_point("timing", heartbeat)
    latencies: list[float] = []
    for i in range(iterations):
        heartbeat.update(iteration=i)
        t0 = time.perf_counter()
        runner.run(x)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        if time.monotonic() > deadline:
            raise TimeoutError(f"job timed out after {i + 1} of {iterations} timed runs")
    return first_ms, latencies


def device_info() -> dict[str, str]:
    """What the Android app reads from ``Build``; here from ``getprop`` when there is one (the stand-in's)."""

    def prop(name: str) -> str:
        try:
            out = subprocess.run(["getprop", name], capture_output=True, text=True, timeout=10)
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    release = prop("ro.build.version.release")
    return {
        "model": prop("ro.product.model") or os.uname().nodename,
        "manufacturer": prop("ro.product.manufacturer"),
        "os": f"Android {release}" if release else f"{os.uname().sysname} {os.uname().release}",
        "abi": prop("ro.product.cpu.abi") or os.uname().machine,
        "app_version": P.APP_VERSION,
    }


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def run_job(
    files_dir: Path,
    job_id: str,
    runner_factory: Callable[[], ModelRunner],
    heartbeat: Heartbeat,
    supply_dir: Path | None = None,
    device: Callable[[], dict[str, str]] | None = None,
    thermal: Callable[[], P.Thermal] = P.Thermal,
) -> P.Result:
    """bench-core's ``JobRunner.runJob``: load, time, save outputs, then write the result atomically.
    Every failure (bad job, load error, delegate refused, timeout) is a failed result with its reason.

    ``device`` / ``thermal`` read the platform (the iOS app: model identifier, ``ProcessInfo.thermalState``);
    a runner with a ``compile(path) -> path`` step (Core ML: ``MLModel.compileModel``) has it timed apart
    from the load (``compile_ms``)."""
    files_dir = Path(files_dir)
    folder = P.job_dir(files_dir, job_id)
    started = utc_now()
    heartbeat.update(job_id=job_id, phase="load", iteration=0)
    base: dict[str, Any] = {
        "job_id": job_id,
        "device": (device or device_info)(),
        "started_at": started,
        "thermal_before": thermal(),
        "thermal_after": P.Thermal(),
    }
    runtime_doc = {"name": "", "version": "", "delegate": "", "threads": 1}
    try:
        job = P.read_job(folder)
    except (P.ProtocolError, OSError) as exc:
        result = P.Result(
            status="failed", error=f"unreadable job: {exc}", runtime=runtime_doc, finished_at=utc_now(), **base
        )
        P.atomic_write_json(P.result_path(files_dir, job_id), result.to_dict())
        return result
    runtime_doc.update(name=job.runtime.name, delegate=job.runtime.delegate, threads=job.runtime.threads)
    deadline = time.monotonic() + job.timeout_s
    runner = runner_factory()
    load_ms = first_ms = compile_ms = None
    latencies: list[float] = []
    samples: list[list[float]] = []
    outputs: list[P.Tensor] = []
    output_inputs: list[int] = []
    try:
        from ..artifacts import sha256_of

        model_path = folder / job.model.file
        if sha256_of(model_path) != job.model.sha256:
            raise RuntimeError(f"model file {job.model.file} does not match its sha256 (incomplete push?)")
        inputs = [P.load_npy(folder / t.file, t.shape) for t in job.inputs]
        _fault_point("load", heartbeat)
        compile_step = getattr(runner, "compile", None)
        if compile_step is not None:
            t0 = time.perf_counter()
            model_path = compile_step(model_path)
            compile_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        runner.load(model_path, job.runtime)
        load_ms = (time.perf_counter() - t0) * 1000.0
        runtime_doc["version"] = runner.runtime_version()
        sampler = PowerSampler(supply_dir).start()
        try:
            first_ms, latencies = timing_loop(runner, inputs[0], job.warmup, job.iterations, deadline, heartbeat)
        finally:
            samples = sampler.stop()
        if job.save_outputs:
            heartbeat.update(phase="outputs")
            _fault_point("outputs", heartbeat)
            for i, x in enumerate(inputs):
                y = runner.run(x)
                if _fault()[0] == "perturb":
                    y = y + np.float32(0.5) * (np.arange(y.size, dtype=np.float32).reshape(y.shape) % 2)
                rel = P.output_rel(job_id, i)
                P.save_npy(files_dir / rel, y)
                outputs.append(P.Tensor(name="output", file=rel, shape=list(y.shape)))
                output_inputs.append(i)
        status, error = "ok", None
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        latencies, outputs, output_inputs = [], [], []
    finally:
        runner.close()
    result = P.Result(
        status=status,
        error=error,
        runtime=runtime_doc,
        load_ms=load_ms,
        first_ms=first_ms,
        warmup=job.warmup,
        latencies_ms=latencies,
        peak_memory_mb=_peak_memory_mb(),
        power_samples=samples,
        outputs=outputs,
        output_inputs=output_inputs,
        finished_at=utc_now(),
        compile_ms=compile_ms,
        **base,
    )
    result.thermal_after = thermal()
    kind, _ = _fault()
    if kind == "corrupt":
        P.atomic_write_bytes(P.result_path(files_dir, job_id), b'{"protocol": 1, "job_id": "')
    else:
        P.atomic_write_json(P.result_path(files_dir, job_id), result.to_dict())
    heartbeat.done_jobs.append(job_id)
    return result


def run_pending(
    files_dir: Path,
    runner_factory: Callable[[], ModelRunner] = HostModelRunner,
    supply_dir: Path | None = None,
    heartbeat: Heartbeat | None = None,
    **platform: Any,
) -> list[P.Result]:
    """bench-core's ``JobRunner.runPending``: every job without a result, in name order, then ``done``."""
    files_dir = Path(files_dir)
    beat = heartbeat or Heartbeat(files_dir).start()
    results = []
    try:
        while True:  # jobs pushed while the app works are run too (every job ends with a result file)
            pending = P.pending_jobs(files_dir)
            if not pending:
                break
            for job_id in pending:
                results.append(run_job(files_dir, job_id, runner_factory, beat, supply_dir, **platform))
    finally:
        beat.stop("done")
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Reference benchmark app: run the pending jobs of a files dir.")
    parser.add_argument("files_dir", type=Path)
    parser.add_argument("--power-supply", type=Path, help="folder with current_now / voltage_now")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s reference_app: %(message)s")
    if not args.files_dir.is_dir():
        print(f"error: files dir {args.files_dir} does not exist", file=sys.stderr)
        return 2
    results = run_pending(args.files_dir, supply_dir=args.power_supply)
    log.info("%d jobs run, %d ok", len(results), sum(r.ok for r in results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
