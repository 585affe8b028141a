"""Shared types of the device-benchmark package: transports reach a device, runners produce timings,
the store keeps measurements, the report shows them. A runner never calls subprocess itself: it asks
its transport to run commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .stats import LatencySummary


@dataclass
class ShellResult:
    exit_code: int
    stdout: str
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class DeviceInfo:
    """What a measurement records about the device it ran on."""

    id: str  # "local", "adb:SERIAL", "adb:HOST:PORT", "ios:UDID"
    kind: str  # "local" | "adb" | "ios"
    model: str = ""
    soc: str = ""
    os_version: str = ""  # Android version, iOS version, or host OS
    abi: str = ""
    cpu_governor: str = ""
    cpu_max_freqs_khz: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Transport(Protocol):
    """How we reach one device. Paths given to ``shell`` must be quoted by the caller with
    :func:`shlex.quote` (helpers in ``device_bench.shell`` do it)."""

    device_id: str
    kind: str
    work_dir: str  # where artifacts and runner binaries go (/data/local/tmp/edgevit on Android)

    def shell(self, command: str, timeout: float | None = None) -> ShellResult: ...
    def push(self, local: Path, remote: str) -> None: ...
    def pull(self, remote: str, local: Path) -> None: ...
    def exists(self, remote: str) -> bool: ...
    def free_space(self, remote_dir: str) -> int: ...
    def device_info(self) -> DeviceInfo: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class BenchJob:
    """One row of a sweep: what to measure."""

    model: str
    target: str  # "onnx" | "tflite" | "coreml"
    precision: str  # "fp32" | "fp16" | "int8" ...
    threads: int = 1
    delegate: str = "cpu"  # "cpu"/"xnnpack", "gpu", "nnapi", "coreml", ...
    device: str = "local"
    img_size: int = 224
    warmup: int = 10
    iterations: int = 50
    cpu_mask: str | None = None  # taskset mask, e.g. "f0" for big cores
    cooldown_s: float = 0.0
    runner: str = "default"  # "default" (the device kind's tool / host runner), "app", "instrument"
    artifact_path: str | None = None  # a user-given artifact file to time as is (None: exported on demand)
    profile: bool = False  # also record a per-op profile (Measurement.op_profile) where the runner can

    @property
    def key(self) -> tuple[str, ...]:
        """Identity of the row in the store (resumable sweeps skip completed keys): see :data:`ROW_KEY`."""
        return row_key({name: getattr(self, name) for name in ROW_KEY})


#: THE configuration of a row (a BenchJob, a store row): the sweep's resume key within a sweep id, the views'
#: "latest run of this configuration", compare's pairing. Warm-up, iterations and cooldown are not part of it.
#: The store keeps every run (its rows are unique by run id).
ROW_KEY: tuple[str, ...] = (
    "model",
    "target",
    "precision",
    "threads",
    "delegate",
    "device",
    "img_size",
    "cpu_mask",
    "runner",
)


def row_key(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The :data:`ROW_KEY` of a job's fields or a store row, as strings (an unset cpu mask is ``""``)."""
    return tuple("" if values.get(name) is None else str(values[name]) for name in ROW_KEY)


#: the values of ``Measurement.status``
STATUSES: tuple[str, ...] = ("ok", "failed")


@dataclass
class Measurement:
    """Everything one run records. Latencies in milliseconds, memory in MB, energy in mJ."""

    job: BenchJob
    status: str  # "ok" | "failed"
    reason: str | None = None
    runtime: str = ""  # runner / runtime name and version
    input_shape: Sequence[int] = ()
    model_size_bytes: int | None = None
    artifact_sha256: str | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_count: int | None = None
    latencies_ms: list[float] = field(default_factory=list)
    mean_ms: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    trimmed_mean_ms: float | None = None
    peak_memory_mb: float | None = None
    energy_mj: float | None = None  # per inference
    power_w: float | None = None
    energy_note: str | None = None  # why there is no usable reading, charging, ...
    thermal_before: dict[str, Any] = field(default_factory=dict)
    thermal_after: dict[str, Any] = field(default_factory=dict)
    throttled: bool | None = None
    battery_level: float | None = None
    device: DeviceInfo | None = None
    toolkit_version: str = ""
    timestamp: str = ""
    raw_output: str = ""
    notes: list[str] = field(default_factory=list)  # caveats: screen on, charging, throttling, delegate...
    parity: dict[str, Any] = field(default_factory=dict)  # on-device outputs vs PyTorch (ParityReport.to_dict())
    op_profile: list[dict[str, Any]] = field(default_factory=list)  # per-op rows (device_bench.profiles), ms desc
    delegate_coverage: dict[str, Any] = field(default_factory=dict)  # nodes delegated / total, partitions
    run_id: str = ""  # this row's unique id (uuid4 hex; the store sets it when empty): every run is kept
    sweep_id: str = ""  # the sweep run that measured it (resume skips what it measured ok); "legacy": pre-schema-3
    tags: list[str] = field(default_factory=list)  # labels given with --tag (release, branch, ...)

    @property
    def latency(self) -> LatencySummary:
        """The latency columns above as the one summary type (``stats.MEASUREMENT_FIELDS`` maps them)."""
        return LatencySummary.of_measurement(self)


@runtime_checkable
class Runner(Protocol):
    """Produces a Measurement for one job on one transport, with an artifact already on the host."""

    name: str

    def run(self, transport: Transport, job: BenchJob, artifact: Path) -> Measurement: ...
