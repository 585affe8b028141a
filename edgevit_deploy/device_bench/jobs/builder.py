"""Host side of the device job protocol: one benchmark row (:class:`~..types.BenchJob`) plus its artifact
and the fixed parity inputs -> a job folder ready to push (``jobs/<job_id>/``)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ...converters.table import TARGETS, get_spec
from ...errors import UnsupportedOptionError
from ..types import BenchJob
from . import protocol as P

#: sweep delegate names -> protocol delegate names ("cpu" means the runtime's default CPU path)
DELEGATES = {"cpu": "cpu", "xnnpack": "xnnpack", "gpu": "gpu", "nnapi": "nnapi"}
#: sweep delegate names -> Core ML compute units (MLComputeUnits) for the iOS app's runtime "coreml"
COMPUTE_UNITS = {"cpu": "cpu_only", "gpu": "cpu_and_gpu", "ane": "cpu_and_neural_engine", "all": "all"}
#: target -> the protocol's ``model.format`` where they differ (job.schema.json: tflite, onnx, pte, coreml)
MODEL_FORMATS = {"executorch": "pte"}


def model_format(target: str) -> str:
    """The ``model.format`` of a job for ``target``: the target's name, ExecuTorch's ``.pte`` program as ``pte``."""
    return MODEL_FORMATS.get(str(target), str(target))


def app_runtime(target: str) -> str:
    """The app runtime of ``target`` from the target table; UnsupportedOptionError when it has none."""
    spec = get_spec(target)
    if not spec.app_runtime:
        have = ", ".join(str(s.target) for s in TARGETS.values() if s.app_runtime)
        raise UnsupportedOptionError(f"the benchmark app has no runtime for target {target!r} (it runs: {have})")
    return spec.app_runtime


def job_id_for(job: BenchJob, artifact_sha256: str) -> str:
    """Stable id of a row's job: the same row with the same artifact is the same job (resume reuses it)."""
    blob = json.dumps([*job.key, job.warmup, job.iterations, artifact_sha256], sort_keys=True)
    name = f"{job.target}-{job.precision}-{job.delegate}-t{job.threads}"
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def build_job(job: BenchJob, artifact_path: Path, artifact_sha256: str, inputs: np.ndarray, timeout_s: float) -> P.Job:
    """The protocol job of ``job``; ``inputs`` is the parity batch ``(N, C, H, W)`` (one npy per sample)."""
    runtime = app_runtime(job.target)
    table = COMPUTE_UNITS if runtime == "coreml" else DELEGATES
    if job.delegate not in table:
        what = "Core ML compute units" if runtime == "coreml" else "delegate"
        raise UnsupportedOptionError(
            f"the benchmark app has no {what} {job.delegate!r}; choose one of {', '.join(table)}"
        )
    sample_shape = [1, *inputs.shape[1:]]
    model_file = f"model{get_spec(job.target).suffix}"
    return P.Job(
        job_id=job_id_for(job, artifact_sha256),
        model=P.ModelRef(
            name=job.model,
            file=model_file,
            sha256=artifact_sha256,
            format=model_format(job.target),
            precision=job.precision,
            input_shape=sample_shape,
        ),
        runtime=P.RuntimeRef(name=runtime, delegate=table[job.delegate], threads=job.threads),
        inputs=[P.Tensor(name="input", file=f"inputs/x{i}.npy", shape=sample_shape) for i in range(inputs.shape[0])],
        warmup=job.warmup,
        iterations=job.iterations,
        timeout_s=float(timeout_s),
        save_outputs=True,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def stage_job(staging: Path, job: P.Job, artifact_path: Path, inputs: np.ndarray) -> Path:
    """Write the job folder under ``staging`` (a host copy of the app's files dir)."""
    return P.write_job(staging, job, Path(artifact_path), [inputs[i : i + 1] for i in range(inputs.shape[0])])
