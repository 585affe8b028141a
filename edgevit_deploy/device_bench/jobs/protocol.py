"""The device job protocol, version 1: how the host and an on-device benchmark app (Android today, iOS
next) exchange work through files in the app's own storage, and nothing else.

Layout of the app's files dir (Android: ``/sdcard/Android/data/PKG/files``, reachable by ``adb push`` /
``adb pull`` without root)::

    jobs/<job_id>/job.json            host -> app   (schema/job.schema.json)
    jobs/<job_id>/<model file>        host -> app   the artifact named in model.file
    jobs/<job_id>/inputs/x<i>.npy     host -> app   the fixed inputs (npy format 1.0, little-endian float32)
    results/<job_id>.json             app -> host   written atomically, once per job (schema/result.schema.json)
    results/<job_id>/out<i>.npy       app -> host   output of input i
    status.json                       app -> host   heartbeat, rewritten atomically about every second

Rules (both sides implement them; the Java side is ``android_app/bench-core``, the Python reference
implementation is :mod:`.reference_app`):

- Every file a reader may see is written to ``.<name>.tmp`` first and renamed (``atomic_write_*``).
- A job with a result file is never run again: resume after a crash or a relaunch = run the jobs
  without a result (:func:`pending_jobs`). The outputs of a job are written before its result.
- The heartbeat's ``seq`` grows with every write; a host that sees no new ``seq`` for its heartbeat
  timeout treats the app as hung (or killed). ``state: done`` means the app ran out of pending jobs.
- The schema files are the contract, versioned by ``protocol``; a reader rejects any other version.
  Validation here checks the schema AND what a schema cannot (job id matches the file, the output
  files exist with the shapes the result claims, an ok result has as many latencies as the job asked).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..._lazy import require
from ...errors import EdgeVitDeployError

PROTOCOL_VERSION = 1
JOBS_DIR = "jobs"
RESULTS_DIR = "results"
STATUS_FILE = "status.json"
JOB_FILE = "job.json"

#: the Android app this protocol version talks to (android_app/app/build.gradle: applicationId, versionName)
APP_PACKAGE = "org.edgevit.bench"
APP_VERSION = "0.1.0"
APP_ACTIVITY = f"{APP_PACKAGE}/.BenchActivity"
APP_TEST_PACKAGE = f"{APP_PACKAGE}.test"
APP_INSTRUMENTATION = f"{APP_TEST_PACKAGE}/androidx.test.runner.AndroidJUnitRunner"
#: the iOS app (ios_app/project.yml: PRODUCT_BUNDLE_IDENTIFIER, the executable name, MARKETING_VERSION = APP_VERSION);
#: its files dir is ``Documents/`` of its data container
IOS_BUNDLE_ID = "org.edgevit.bench"
IOS_EXECUTABLE = "EdgeVitBench"
IOS_FILES_DIR = "Documents"

SCHEMAS = ("job", "result", "status")


class ProtocolError(EdgeVitDeployError, ValueError):
    """A job, result or status file that breaks the protocol; the message names the file and the field."""


# ------------------------------------------------------------------------------------------ schema
@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` ("job", "result", "status") shipped in the package."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; one of {', '.join(SCHEMAS)}")
    text = resources.files(__package__).joinpath("schema", f"{name}.schema.json").read_text()
    return json.loads(text)


def validate(doc: Any, name: str, where: str = "") -> None:
    """Raise one :class:`ProtocolError` listing every schema violation of ``doc`` (at most five)."""
    jsonschema = require("jsonschema", "bench")
    validator_cls = jsonschema.validators.validator_for(schema(name))
    errors = sorted(validator_cls(schema(name)).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        parts = [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message[:160]}" for e in errors[:5]]
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ProtocolError(
            f"{where or name}: not a protocol-{PROTOCOL_VERSION} {name} file: " + "; ".join(parts) + more
        )


# ------------------------------------------------------------------------------------------ files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, doc: Any) -> None:
    atomic_write_bytes(path, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())


def read_json(path: Path, name: str) -> Any:
    """``path`` parsed and validated against schema ``name``; ProtocolError when it is not."""
    path = Path(path)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{path}: not valid JSON ({exc})") from None
    validate(doc, name, where=str(path))
    return doc


def save_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as npy format 1.0, little-endian float32, C order, atomically."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array, dtype="<f4"), version=(1, 0), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def load_npy(path: Path, shape: list[int] | tuple[int, ...] | None = None) -> np.ndarray:
    """A float32 npy written by either side; ProtocolError when the file or its shape is not what was claimed."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ProtocolError(f"{path}: missing (a result names an output file that is not there)") from None
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"{path}: not a readable .npy file ({exc})") from None
    if array.dtype != np.dtype("<f4"):
        raise ProtocolError(f"{path}: dtype {array.dtype}, the protocol carries little-endian float32")
    if shape is not None and list(array.shape) != list(shape):
        raise ProtocolError(f"{path}: shape {list(array.shape)} differs from the {list(shape)} its result claims")
    return array


# ------------------------------------------------------------------------------------------ documents
@dataclass
class Tensor:
    name: str
    file: str
    shape: list[int]
    dtype: str = "float32"


@dataclass
class ModelRef:
    name: str
    file: str
    sha256: str
    format: str  # "tflite" | "onnx" | "pte" | "coreml"
    precision: str
    input_shape: list[int]


@dataclass
class RuntimeRef:
    name: str  # "litert" | "onnxruntime" | "executorch" | "coreml"
    delegate: str  # "cpu" | "xnnpack" | "gpu" | "nnapi"; Core ML: "cpu_only" | "cpu_and_gpu" | ... | "all"
    threads: int = 1


@dataclass
class Job:
    job_id: str
    model: ModelRef
    runtime: RuntimeRef
    inputs: list[Tensor]
    warmup: int = 10
    iterations: int = 50
    timeout_s: float = 600.0
    save_outputs: bool = True
    created_at: str = ""
    protocol: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        validate(doc, "job", where=f"job {self.job_id}")
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "") -> Job:
        validate(doc, "job", where=where)
        return cls(
            job_id=doc["job_id"],
            model=ModelRef(**doc["model"]),
            runtime=RuntimeRef(**doc["runtime"]),
            inputs=[Tensor(**t) for t in doc["inputs"]],
            warmup=doc["warmup"],
            iterations=doc["iterations"],
            timeout_s=float(doc["timeout_s"]),
            save_outputs=doc["save_outputs"],
            created_at=doc["created_at"],
            protocol=doc["protocol"],
        )


@dataclass
class Thermal:
    status: int | None = None  # PowerManager.THERMAL_STATUS_* (0 none .. 6 shutdown)
    headroom: float | None = None  # PowerManager.getThermalHeadroom(10) (1.0 = throttling starts)


@dataclass
class Result:
    job_id: str
    status: str  # "ok" | "failed"
    error: str | None
    device: dict[str, str]
    runtime: dict[str, Any]
    load_ms: float | None = None
    first_ms: float | None = None
    warmup: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None
    thermal_before: Thermal = field(default_factory=Thermal)
    thermal_after: Thermal = field(default_factory=Thermal)
    power_samples: list[list[float]] = field(default_factory=list)  # [t_ms, current_uA, voltage_uV]
    outputs: list[Tensor] = field(default_factory=list)
    output_inputs: list[int] = field(default_factory=list)  # outputs[k] is the output of inputs[output_inputs[k]]
    started_at: str = ""
    finished_at: str = ""
    compile_ms: float | None = None  # Core ML's on-device compilation (iOS); absent on Android
    protocol: int = PROTOCOL_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("output_inputs")
        doc["outputs"] = [{"input": i, **asdict(t)} for i, t in zip(self.output_inputs, self.outputs)]
        validate(doc, "result", where=f"result {self.job_id}")
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "") -> Result:
        validate(doc, "result", where=where)
        outs = doc["outputs"]
        return cls(
            job_id=doc["job_id"],
            status=doc["status"],
            error=doc["error"],
            device=dict(doc["device"]),
            runtime=dict(doc["runtime"]),
            load_ms=doc["load_ms"],
            first_ms=doc["first_ms"],
            warmup=doc["warmup"],
            latencies_ms=[float(v) for v in doc["latencies_ms"]],
            peak_memory_mb=doc["peak_memory_mb"],
            thermal_before=Thermal(**doc["thermal_before"]),
            thermal_after=Thermal(**doc["thermal_after"]),
            power_samples=[[float(v) for v in s] for s in doc["power_samples"]],
            outputs=[Tensor(name=o["name"], file=o["file"], shape=list(o["shape"]), dtype=o["dtype"]) for o in outs],
            output_inputs=[int(o["input"]) for o in outs],
            started_at=doc["started_at"],
            finished_at=doc["finished_at"],
            compile_ms=doc.get("compile_ms"),
            protocol=doc["protocol"],
        )


@dataclass
class Status:
    state: str  # "running" | "done"
    seq: int
    job_id: str | None
    phase: str  # "start" | "load" | "warmup" | "timing" | "outputs" | "idle"
    iteration: int
    updated_at: str
    app_version: str
    done_jobs: list[str] = field(default_factory=list)
    protocol: int = PROTOCOL_VERSION

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "") -> Status:
        validate(doc, "status", where=where)
        return cls(
            **{
                k: doc[k]
                for k in ("state", "seq", "job_id", "phase", "iteration", "updated_at", "app_version", "protocol")
            },
            done_jobs=list(doc.get("done_jobs", [])),
        )


# ------------------------------------------------------------------------------------------ layout
def job_dir(files_dir: Path, job_id: str) -> Path:
    return Path(files_dir) / JOBS_DIR / job_id


def result_path(files_dir: Path, job_id: str) -> Path:
    return Path(files_dir) / RESULTS_DIR / f"{job_id}.json"


def output_rel(job_id: str, index: int) -> str:
    return f"{RESULTS_DIR}/{job_id}/out{index}.npy"


def pending_jobs(files_dir: Path) -> list[str]:
    """The resume rule: job folders (with a job.json) that have no result file, in name order."""
    root = Path(files_dir) / JOBS_DIR
    if not root.is_dir():
        return []
    return [
        p.name
        for p in sorted(root.iterdir())
        if (p / JOB_FILE).is_file() and not result_path(files_dir, p.name).exists()
    ]


def write_job(folder: Path, job: Job, model_path: Path, inputs: list[np.ndarray]) -> Path:
    """Lay out ``jobs/<job_id>/`` under ``folder`` (the host's staging copy of the app's files dir):
    the model file, the fixed inputs (one npy per ``job.inputs`` entry) and job.json, written last."""
    import shutil

    if len(inputs) != len(job.inputs):
        raise ValueError(f"{len(inputs)} input arrays for {len(job.inputs)} declared inputs")
    doc = job.to_dict()
    out = job_dir(folder, job.job_id)
    out.mkdir(parents=True, exist_ok=True)
    if Path(model_path).is_dir():  # a Core ML .mlpackage is a folder
        shutil.rmtree(out / job.model.file, ignore_errors=True)
        shutil.copytree(model_path, out / job.model.file)
    else:
        shutil.copyfile(model_path, out / job.model.file)
    for ref, array in zip(job.inputs, inputs):
        if list(array.shape) != list(ref.shape):
            raise ValueError(f"input {ref.name}: array shape {list(array.shape)} != declared {ref.shape}")
        save_npy(out / ref.file, array)
    atomic_write_json(out / JOB_FILE, doc)
    return out


def read_job(folder: Path) -> Job:
    """``jobs/<job_id>/job.json``, validated; the folder name must be the job id."""
    folder = Path(folder)
    path = folder / JOB_FILE
    job = Job.from_dict(read_json(path, "job"), where=str(path))
    if job.job_id != folder.name:
        raise ProtocolError(f"{path}: job_id {job.job_id!r} differs from its folder {folder.name!r}")
    return job


def read_result(files_dir: Path, job: Job) -> Result:
    """``results/<job_id>.json`` of ``job``, validated against the schema and against the job itself.

    A result that contradicts its job (other id, fewer latencies than iterations, outputs missing or
    of another shape) is a :class:`ProtocolError`: nothing half-written is reported as good.
    """
    path = result_path(files_dir, job.job_id)
    result = Result.from_dict(read_json(path, "result"), where=str(path))
    if result.job_id != job.job_id:
        raise ProtocolError(f"{path}: job_id {result.job_id!r} differs from the job's {job.job_id!r}")
    if result.ok:
        if len(result.latencies_ms) != job.iterations:
            raise ProtocolError(
                f"{path}: {len(result.latencies_ms)} latencies for a job of {job.iterations} iterations"
            )
        if job.save_outputs and sorted(result.output_inputs) != list(range(len(job.inputs))):
            raise ProtocolError(
                f"{path}: outputs for inputs {sorted(result.output_inputs)}, the job has {len(job.inputs)} inputs"
            )
        for out in result.outputs:
            expected_prefix = f"{RESULTS_DIR}/{job.job_id}/"
            if not out.file.startswith(expected_prefix):
                raise ProtocolError(f"{path}: output file {out.file!r} is outside {expected_prefix}")
            load_npy(Path(files_dir) / out.file, out.shape)
    return result


def read_outputs(files_dir: Path, result: Result) -> np.ndarray:
    """The outputs of an ok result stacked in input order: ``(N, ...)`` float32."""
    order = sorted(range(len(result.outputs)), key=lambda k: result.output_inputs[k])
    arrays = [load_npy(Path(files_dir) / result.outputs[k].file, result.outputs[k].shape) for k in order]
    return np.concatenate(arrays, axis=0)


def read_status(files_dir: Path) -> Status | None:
    """The heartbeat, or None when the app has not written one yet."""
    path = Path(files_dir) / STATUS_FILE
    try:
        return Status.from_dict(read_json(path, "status"), where=str(path))
    except FileNotFoundError:
        return None
