"""Host runner: one clean ``python -m edgevit_deploy.device_bench.host_worker`` process per measurement,
started through the transport (the runner never calls subprocess itself)."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from ..artifacts import Artifact, measurement_base, push_once, sha256_of, size_of
from ..host_worker import RESULT_PREFIX
from ..stats import summarise
from ..types import BenchJob, Measurement, Transport

log = logging.getLogger(__name__)

#: seconds allowed for loading plus every iteration, on top of a per-iteration allowance
BASE_TIMEOUT_S = 300.0
PER_ITERATION_TIMEOUT_S = 5.0


def parse_worker_output(stdout: str) -> dict[str, Any]:
    """The worker's result object, from the last line carrying the result marker."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                data = json.loads(line[len(RESULT_PREFIX) :])
            except json.JSONDecodeError as exc:
                raise ValueError(f"malformed worker result line: {exc}") from None
            if not isinstance(data, dict) or "ok" not in data:
                raise ValueError("worker result is not an object with an 'ok' field")
            return data
    raise ValueError("the worker printed no result line")


class HostRunner:
    """Runs artifacts in their host runtimes (onnxruntime, LiteRT, Core ML on macOS, torch eager)."""

    name = "host"

    def __init__(self, python: str | None = None, timeout_s: float | None = None):
        self.python = python or sys.executable
        self.timeout_s = timeout_s

    def command(self, job: BenchJob, remote_artifact: str) -> str:
        shape = f"1,3,{job.img_size},{job.img_size}"
        parts = [
            self.python,
            "-m",
            "edgevit_deploy.device_bench.host_worker",
            "--target",
            job.target,
            "--artifact",
            remote_artifact,
            "--input-shape",
            shape,
            "--threads",
            str(job.threads),
            "--warmup",
            str(job.warmup),
            "--iterations",
            str(job.iterations),
        ]
        if job.profile:
            parts.append("--profile")
        cmd = " ".join(shlex.quote(p) for p in parts)
        if job.cpu_mask:
            cmd = f"taskset {shlex.quote(job.cpu_mask)} {cmd}"
        return cmd

    def run(self, transport: Transport, job: BenchJob, artifact: Path | Artifact) -> Measurement:
        if not isinstance(artifact, Artifact):
            path = Path(artifact)
            artifact = Artifact(path=path, sha256=sha256_of(path), size_bytes=size_of(path), key="")
        base = measurement_base(job, artifact, runtime="host")
        if job.delegate not in ("cpu", "xnnpack", "default"):
            return Measurement(
                status="failed",
                reason=f"the host runner has no {job.delegate!r} delegate; use --delegates cpu for --device local",
                **base,
            )
        remote = push_once(transport, artifact)
        timeout = self.timeout_s or BASE_TIMEOUT_S + PER_ITERATION_TIMEOUT_S * (job.warmup + job.iterations)
        cmd = self.command(job, remote)
        log.debug("%s: %s", transport.device_id, cmd)
        res = transport.shell(cmd, timeout=timeout)
        raw = (res.stdout + ("\n" + res.stderr if res.stderr else ""))[-20000:]
        if res.timed_out:
            return Measurement(status="failed", reason=f"runner timed out after {timeout:g} s", raw_output=raw, **base)
        try:
            data = parse_worker_output(res.stdout)
        except ValueError as exc:
            tail = res.stderr.strip().splitlines()[-1:] or ["no stderr"]
            return Measurement(
                status="failed", reason=f"{exc} (exit {res.exit_code}; {tail[0][:300]})", raw_output=raw, **base
            )
        if not data["ok"]:
            return Measurement(status="failed", reason=str(data.get("error", "worker failed")), raw_output=raw, **base)
        try:
            summary = summarise(data["latencies_ms"])
        except (ValueError, TypeError, KeyError) as exc:
            return Measurement(status="failed", reason=f"unusable latencies: {exc}", raw_output=raw, **base)
        base.update(runtime=str(data.get("executor", "host")), input_shape=list(data.get("input_shape", ())))
        profiled: dict[str, Any] = {
            "op_profile": [r for r in data.get("op_profile") or [] if isinstance(r, dict)],
            "delegate_coverage": data.get("delegate_coverage")
            if isinstance(data.get("delegate_coverage"), dict)
            else {},
            "notes": [str(n) for n in data.get("notes") or []],
        }
        return Measurement(
            status="ok",
            init_ms=data.get("init_ms"),
            first_ms=data.get("first_ms"),
            warmup_count=data.get("warmup"),
            latencies_ms=[float(v) for v in data["latencies_ms"]],
            peak_memory_mb=data.get("peak_rss_mb"),
            raw_output=raw,
            **summary.as_measurement_fields(),
            **profiled,
            **base,
        )
