"""Runner registry: which runner measures which target on which kind of device, the runners'
configuration, and the shared machinery of the Android tool runners (push the tool, push the model,
probe the device, sample energy, run with a timeout and an optional taskset mask, parse).

``get_runner(target, device_kind, config)`` is what the sweep calls. The table below is the only
place that maps (target, device kind) to a runner class; runner modules are imported lazily.
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunnerConfigError
from ..types import BenchJob, Measurement, Runner, Transport

log = logging.getLogger(__name__)

#: environment variables that point at the Android tool binaries when no flag / config value does
ENV_BENCHMARK_MODEL = "EDGEVIT_BENCHMARK_MODEL"
ENV_ORT_PERF_TEST = "EDGEVIT_ORT_PERF_TEST"


@dataclass
class RunnerConfig:
    """How runners find and call their tools.

    ``benchmark_model`` / ``onnxruntime_perf_test`` are HOST paths of the arm64 (or x86_64 emulator)
    binaries; the runner pushes them to the device's work dir and ``chmod +x`` them once per transport.
    ``extra_flags`` maps a tool name ("benchmark_model", "onnxruntime_perf_test") to extra
    command-line arguments appended verbatim (each one shell-quoted). ``timeout_s`` bounds one run
    (Android default 600 s; for ``local`` it replaces the host runner's own default).
    ``energy`` turns on power sampling during the run (Android only, see ``device_bench.energy``).
    """

    benchmark_model: Path | None = None
    onnxruntime_perf_test: Path | None = None
    extra_flags: dict[str, list[str]] = field(default_factory=dict)
    timeout_s: float | None = None  # seconds for one run on a device (default 600)
    energy: bool = False
    energy_idle_s: float = 5.0
    energy_idle_max_age_s: float = 600.0  # an idle baseline is reused for this long per device
    current_unit: str = "auto"  # "auto" | "uA" | "mA"  (power_supply current_now)
    voltage_unit: str = "auto"  # "auto" | "uV" | "mV"
    discharge_sign: str = "auto"  # "auto" | "negative" | "positive"
    top1: float | None = None  # known top-1 accuracy (%) for the efficiency metric
    libraries: list[Path] = field(default_factory=list)  # shared libraries the tools need (pushed, LD_LIBRARY_PATH)
    android_app: Path | None = None  # the benchmark app's APK: installed when missing or outdated (runner app)
    heartbeat_timeout_s: float = 60.0  # runner app: no new heartbeat for this long = the app hung or died
    launch_timeout_s: float = 60.0  # runner app: no first heartbeat for this long = the app never started
    checkpoint: str | None = None  # runner app: the weights the artifacts were exported with (parity reference)
    ios_app: Path | None = None  # the iOS app (.ipa or .app): installed on an iPhone when missing or outdated

    def __post_init__(self) -> None:
        if self.benchmark_model is not None:
            self.benchmark_model = Path(self.benchmark_model).expanduser()
        if self.onnxruntime_perf_test is not None:
            self.onnxruntime_perf_test = Path(self.onnxruntime_perf_test).expanduser()
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise RunnerConfigError(f"timeout_s must be positive, got {self.timeout_s}")
        for key, allowed in (
            ("current_unit", ("auto", "uA", "mA")),
            ("voltage_unit", ("auto", "uV", "mV")),
            ("discharge_sign", ("auto", "negative", "positive")),
        ):
            if getattr(self, key) not in allowed:
                raise RunnerConfigError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        self.extra_flags = {k: [str(a) for a in v] for k, v in self.extra_flags.items()}
        self.libraries = [Path(p).expanduser() for p in self.libraries]
        if self.android_app is not None:
            self.android_app = Path(self.android_app).expanduser()
            if not self.android_app.is_file():
                raise RunnerConfigError(
                    f"android_app {self.android_app} does not exist (build it: android_app/README.md)"
                )
        if self.ios_app is not None:
            self.ios_app = Path(self.ios_app).expanduser()
            if not self.ios_app.exists():
                raise RunnerConfigError(f"ios_app {self.ios_app} does not exist (build it: ios_app/README.md)")
        if self.heartbeat_timeout_s <= 0 or self.launch_timeout_s <= 0:
            raise RunnerConfigError("heartbeat_timeout_s and launch_timeout_s must be positive")
        missing = [str(p) for p in self.libraries if not p.is_file()]
        if missing:
            raise RunnerConfigError(f"runner libraries not found: {', '.join(missing)}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RunnerConfig:
        """Build from a sweep file's ``runners:`` table; unknown keys are an error naming the known ones."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunnerConfigError(f"unknown runner config keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    @classmethod
    def from_env(cls, **overrides: Any) -> RunnerConfig:
        """Tool paths from $EDGEVIT_BENCHMARK_MODEL / $EDGEVIT_ORT_PERF_TEST unless given explicitly."""
        values: dict[str, Any] = {
            "benchmark_model": os.environ.get(ENV_BENCHMARK_MODEL) or None,
            "onnxruntime_perf_test": os.environ.get(ENV_ORT_PERF_TEST) or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    def flags_for(self, tool: str) -> Sequence[str]:
        return tuple(self.extra_flags.get(tool, ()))


# (target, device kind) -> "module:Class". The only dispatch on target names in device_bench.
RUNNERS: dict[tuple[str, str], str] = {
    ("tflite", "adb"): "edgevit_deploy.device_bench.runners.litert_benchmark:LiteRtBenchmarkRunner",
    ("onnx", "adb"): "edgevit_deploy.device_bench.runners.ort_perf_test:OrtPerfTestRunner",
    ("tflite", "local"): "edgevit_deploy.device_bench.runners.host:HostRunner",
    ("onnx", "local"): "edgevit_deploy.device_bench.runners.host:HostRunner",
    ("coreml", "local"): "edgevit_deploy.device_bench.runners.host:HostRunner",
    ("torch", "local"): "edgevit_deploy.device_bench.runners.host:HostRunner",
    # the benchmark app (android_app/): `--runner app` starts its Activity, `--runner instrument` its
    # instrumentation test; the sweep asks for kind "adb:<runner>" when a row's runner is not the default
    ("tflite", "adb:app"): "edgevit_deploy.device_bench.runners.app:AppRunner",
    ("onnx", "adb:app"): "edgevit_deploy.device_bench.runners.app:AppRunner",
    ("tflite", "adb:instrument"): "edgevit_deploy.device_bench.runners.app:InstrumentRunner",
    ("onnx", "adb:instrument"): "edgevit_deploy.device_bench.runners.app:InstrumentRunner",
    # iPhones: Core ML in the iOS app (ios_app/), the only way to measure there (`--runner app` is the same)
    ("coreml", "ios"): "edgevit_deploy.device_bench.runners.ios_app:IosAppRunner",
    ("coreml", "ios:app"): "edgevit_deploy.device_bench.runners.ios_app:IosAppRunner",
}


def runner_kind(device_kind: str, runner: str) -> str:
    """The RUNNERS key's device kind for a row: ``adb`` for the default tools, ``adb:app`` for the app."""
    return device_kind if runner in ("", "default") else f"{device_kind}:{runner}"


def supported_pairs() -> list[tuple[str, str]]:
    return sorted(RUNNERS)


def get_runner(target: str, device_kind: str, config: RunnerConfig | None = None) -> Runner:
    """The runner measuring ``target`` artifacts on a ``device_kind`` device ("local", "adb")."""
    key = (str(target), str(device_kind))
    ref = RUNNERS.get(key)
    if ref is None:
        have = ", ".join(f"{t} on {k}" for t, k in supported_pairs())
        raise RunnerConfigError(f"no runner for target {key[0]!r} on a {key[1]!r} device; available: {have}")
    module_name, _, cls_name = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if device_kind == "local":
        return cls(timeout_s=config.timeout_s) if config is not None and config.timeout_s else cls()
    return cls(config or RunnerConfig.from_env())


class AndroidToolRunner(abc.ABC):
    """Base of the runners that drive a benchmark binary on an Android device through a Transport.

    Subclasses set ``name``, ``tool`` (the RunnerConfig attribute holding the host path of the binary),
    ``delegates`` (job delegate -> tool option) and implement ``command`` and ``parse``.
    Device errors (dropped connection, device full) propagate as typed DeviceErrors so the sweep can
    reconnect and retry; everything about the run itself becomes a failed Measurement with its reason.
    """

    name = ""
    tool = ""
    delegates: Mapping[str, str] = {}

    def __init__(self, config: RunnerConfig | None = None):
        self.config = config or RunnerConfig.from_env()

    # subclass API ------------------------------------------------------------------------------
    @abc.abstractmethod
    def command(self, job: BenchJob, tool_path: str, model_path: str, scratch: str) -> list[str]:
        """The tool's argv for ``job``."""

    @abc.abstractmethod
    def parse(self, transport: Transport, result: Any, model_path: str, scratch: str) -> Any:
        """A Measurement from the tool's output."""

    # shared ------------------------------------------------------------------------------------
    def tool_binary(self) -> Path:
        path = getattr(self.config, self.tool, None)
        env = {"benchmark_model": ENV_BENCHMARK_MODEL, "onnxruntime_perf_test": ENV_ORT_PERF_TEST}[self.tool]
        if path is None:
            raise RunnerConfigError(
                f"no {self.tool} binary configured: pass --{self.tool.replace('_', '-')} "
                f"PATH, set ${env}, or `{self.tool}:` in the sweep file's runners table "
                "(see docs/android.md for where to get an arm64 build)"
            )
        path = Path(path)
        if not path.is_file():
            raise RunnerConfigError(f"{self.tool} binary {path} does not exist (check ${env} / the flag)")
        return path

    def install_tool(self, transport: Transport) -> str:
        """Push the tool binary once per content (sha-named folder) and make it executable."""
        from .. import shell
        from ..artifacts import Artifact, push_once, sha256_of, size_of

        binary = self.tool_binary()
        tool = Artifact(path=binary, sha256=sha256_of(binary), size_bytes=size_of(binary), key="tool")
        remote = push_once(transport, tool)
        res = transport.shell(f"chmod 755 {shell.quote(remote)}", timeout=60)
        if not res.ok:
            raise RunnerConfigError(
                f"{transport.device_id}: cannot make {remote} executable: {(res.stdout + res.stderr).strip()[:300]}"
            )
        return remote

    def install_libraries(self, transport: Transport) -> list[str]:
        """Push the configured shared libraries (once per content); their device folders for LD_LIBRARY_PATH."""
        from ..artifacts import Artifact, push_once, sha256_of, size_of

        folders: list[str] = []
        for lib in self.config.libraries:
            remote = push_once(transport, Artifact(path=lib, sha256=sha256_of(lib), size_bytes=size_of(lib), key="lib"))
            folder = remote.rsplit("/", 1)[0]
            if folder not in folders:
                folders.append(folder)
        return folders

    def run(self, transport: Transport, job: BenchJob, artifact: Any) -> Measurement:
        from .. import shell
        from ..artifacts import Artifact, measurement_base, push_once, sha256_of, size_of

        if not isinstance(artifact, Artifact):
            path = Path(artifact)
            artifact = Artifact(path=path, sha256=sha256_of(path), size_bytes=size_of(path), key="")
        base = measurement_base(job, artifact, runtime=self.name)
        timeout = self.config.timeout_s or DEFAULT_DEVICE_TIMEOUT_S

        def failed(reason: str, **extra: Any) -> Measurement:
            return Measurement(status="failed", reason=reason, **{**base, **extra})

        if job.delegate not in self.delegates:
            return failed(
                f"{self.name} has no delegate {job.delegate!r}; choose one of {', '.join(sorted(self.delegates))}"
            )
        try:
            if job.cpu_mask and job.cpu_mask != BIG_CORES:
                shell.validate_mask(job.cpu_mask)
            tool_path = self.install_tool(transport)
        except (ValueError, RunnerConfigError) as exc:
            return failed(str(exc))
        lib_dirs = self.install_libraries(transport)
        model_path = push_once(transport, artifact)
        scratch = f"{transport.work_dir.rstrip('/')}/run-{artifact.sha256[:12]}"
        made = transport.shell(f"mkdir -p {shell.quote(scratch)}", timeout=60)
        if not made.ok:
            return failed(f"cannot create {scratch} on the device: {(made.stdout + made.stderr).strip()[:300]}")

        notes: list[str] = []
        snap_before = self._probe_before(transport, base, notes)
        sampler = _EnergySampler.start(self.config, transport, scratch, notes)
        mask = job.cpu_mask
        if mask == BIG_CORES:
            mask = _big_core_mask(snap_before)
            notes.append(f"taskset mask {mask} (big cores)" if mask else "cpu mask 'big': all cores alike, not pinned")
        args = self.command(job, tool_path, model_path, scratch) + list(self.config.flags_for(self.tool))
        line = shell.pinned(args, mask)
        if lib_dirs:
            line = shell.with_env(line, {"LD_LIBRARY_PATH": ":".join(lib_dirs)})
        command = sampler.wrap(f"cd {shell.quote(scratch)} && {line}")
        log.debug("%s: %s", transport.device_id, command)
        result = transport.shell(command, timeout=timeout)
        base["raw_output"] = (result.stdout + ("\n" + result.stderr if result.stderr else ""))[-20000:]
        self._probe_after(transport, snap_before, base, notes)

        if result.timed_out:
            return failed(
                f"{self.name} timed out after {timeout:g} s (raise the runner timeout, or lower the iterations)",
                notes=notes,
            )
        parsed = self.parse(transport, result, model_path, scratch)
        base["runtime"] = f"{self.name} ({parsed.variant or 'unrecognised output'})"
        notes.extend(parsed.warnings)
        if not parsed.ok:
            return failed(f"{parsed.reason} [exit {result.exit_code}]", notes=notes)
        if result.exit_code != 0:
            return failed(
                f"{self.name} exited with {result.exit_code} although its output parsed; not trusting it", notes=notes
            )
        fields = parsed.measurement_fields()
        charging = bool(snap_before and snap_before.battery.charging)
        energy_fields = sampler.finish(fields.get("median_ms") or fields.get("mean_ms"), charging, notes)
        return Measurement(status="ok", notes=notes, **fields, **energy_fields, **base)

    @staticmethod
    def _probe_before(transport: Transport, base: dict[str, Any], notes: list[str]) -> Any:
        """Device properties, battery, screen and thermal state before the run (into ``base``)."""
        from .. import android

        try:
            props, snap = android.probe(transport)
        except Exception as exc:  # a device without dumpsys/getprop still gets measured
            notes.append(f"device probe failed: {exc}")
            return None
        notes.extend(android.idle_warnings(snap))
        base.update(
            device=android.device_info_from(transport.device_id, props, snap),
            thermal_before=android.snapshot_dict(snap),
            battery_level=snap.battery.level,
        )
        return snap

    @staticmethod
    def _probe_after(transport: Transport, snap_before: Any, base: dict[str, Any], notes: list[str]) -> None:
        """Thermal state after the run, and whether it throttled (into ``base``)."""
        from .. import android

        try:
            snap = android.snapshot(transport)
        except Exception as exc:
            notes.append(f"device probe after the run failed: {exc}")
            return
        base["thermal_after"] = android.snapshot_dict(snap)
        if snap_before is not None:
            reasons = android.throttle_reasons(snap_before, snap)
            base["throttled"] = bool(reasons)
            notes.extend(reasons)


DEFAULT_DEVICE_TIMEOUT_S = 600.0
BIG_CORES = "big"  # cpu_mask value: pin to the cores with the highest max frequency


def _big_core_mask(snap: Any) -> str | None:
    from .. import android

    return android.big_core_mask(snap.cpus) if snap is not None else None


_IDLE_CACHE: dict[str, tuple[float, Any]] = {}  # device id -> (monotonic time, idle PowerReading)


class _EnergySampler:
    """Battery sampling around one run (a no-op when energy is off or the device has no gauge)."""

    def __init__(
        self,
        config: RunnerConfig,
        transport: Transport | None = None,
        supply: Any = None,
        idle: Any = None,
        log_path: str = "",
    ):
        self.config = config
        self.transport = transport
        self.supply = supply
        self.idle = idle
        self.log_path = log_path

    @classmethod
    def start(cls, config: RunnerConfig, transport: Transport, scratch: str, notes: list[str]) -> _EnergySampler:
        from .. import energy

        if not config.energy:
            return cls(config)
        supply = energy.find_battery(transport)
        if supply is None:
            notes.append("energy: this device exposes no battery current_now/voltage_now")
            return cls(config)
        if supply.status.lower() == "charging":
            notes.append("energy: the battery reports Charging")
        cached = _IDLE_CACHE.get(transport.device_id)
        if cached is not None and time.monotonic() - cached[0] < config.energy_idle_max_age_s:
            idle = cached[1]
        else:
            idle = energy.measure_idle(transport, supply, transport.work_dir, cls.energy_config(config))
            _IDLE_CACHE[transport.device_id] = (time.monotonic(), idle)
        return cls(config, transport, supply, idle, f"{scratch}/power.log")

    @staticmethod
    def energy_config(config: RunnerConfig) -> Any:
        from .. import energy

        return energy.EnergyConfig(
            config.current_unit, config.voltage_unit, config.discharge_sign, idle_s=config.energy_idle_s
        )

    def wrap(self, command: str) -> str:
        from .. import energy

        if self.supply is None:
            return command
        return energy.wrap_with_sampler(command, self.supply, self.log_path, self.energy_config(self.config).interval_s)

    def finish(self, latency_ms: float | None, charging: bool, notes: list[str]) -> dict[str, Any]:
        from .. import energy

        if not self.config.energy:
            return {}
        if self.supply is None or self.transport is None:
            return {"energy_note": "; ".join(n for n in notes if n.startswith("energy")) or "no energy reading"}
        charging = charging or self.supply.status.lower() == "charging"
        reading = energy.power_reading(energy.read_log(self.transport, self.log_path), self.energy_config(self.config))
        res = energy.energy_per_inference(reading, self.idle, latency_ms, charging=charging, top1=self.config.top1)
        if res.efficiency_top1_per_mj is not None:
            notes.append(f"efficiency: {res.efficiency_top1_per_mj:.4g} top-1 %/mJ")
        return {"energy_mj": res.energy_mj, "power_w": res.net_power_w, "energy_note": res.note}
