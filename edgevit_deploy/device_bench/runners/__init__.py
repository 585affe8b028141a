"""Runner registry: which runner measures which target on which kind of device, the runners'
configuration, and the shared machinery of the Android tool runners (push the tool, push the model,
probe the device, sample energy, run with a timeout and an optional taskset mask, parse).

``get_runner(target, device_kind, config)`` is what the sweep calls. The table below is the only
place that maps (target, device kind) to a runner class; runner modules are imported lazily.
"""
from __future__ import annotations

import importlib
import logging
import os
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
    ``extra_flags`` maps a tool name ("benchmark_model", "onnxruntime_perf_test", "host") to extra
    command-line arguments appended verbatim (each one shell-quoted). ``timeout_s`` bounds one run.
    ``energy`` turns on power sampling during the run (Android only, see ``device_bench.energy``).
    """

    benchmark_model: Path | None = None
    onnxruntime_perf_test: Path | None = None
    extra_flags: dict[str, list[str]] = field(default_factory=dict)
    timeout_s: float = 600.0
    energy: bool = False
    energy_idle_s: float = 5.0
    current_unit: str = "auto"          # "auto" | "uA" | "mA"  (power_supply current_now)
    voltage_unit: str = "auto"          # "auto" | "uV" | "mV"
    discharge_sign: str = "auto"        # "auto" | "negative" | "positive"
    top1: float | None = None           # known top-1 accuracy (%) for the efficiency metric

    def __post_init__(self) -> None:
        if self.benchmark_model is not None:
            self.benchmark_model = Path(self.benchmark_model).expanduser()
        if self.onnxruntime_perf_test is not None:
            self.onnxruntime_perf_test = Path(self.onnxruntime_perf_test).expanduser()
        if self.timeout_s <= 0:
            raise RunnerConfigError(f"timeout_s must be positive, got {self.timeout_s}")
        for key, allowed in (("current_unit", ("auto", "uA", "mA")), ("voltage_unit", ("auto", "uV", "mV")),
                             ("discharge_sign", ("auto", "negative", "positive"))):
            if getattr(self, key) not in allowed:
                raise RunnerConfigError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        self.extra_flags = {k: [str(a) for a in v] for k, v in self.extra_flags.items()}

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
        values: dict[str, Any] = {"benchmark_model": os.environ.get(ENV_BENCHMARK_MODEL) or None,
                                  "onnxruntime_perf_test": os.environ.get(ENV_ORT_PERF_TEST) or None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def flags_for(self, tool: str) -> Sequence[str]:
        return tuple(self.extra_flags.get(tool, ()))


# (target, device kind) -> "module:Class". The only dispatch on target names in device_bench.
RUNNERS: dict[tuple[str, str], str] = {
    ("tflite", "adb"): "edgevit_deploy.device_bench.runners.litert_benchmark:LiteRtBenchmarkRunner",
    ("onnx", "adb"): "edgevit_deploy.device_bench.runners.ort_perf_test:OrtPerfTestRunner",
    ("tflite", "local"): "edgevit_deploy.device_bench.runners.host:HostRunner",
    ("onnx", "local"): "edgevit_deploy.device_bench.runners.host:HostRunner",
    ("coreml", "local"): "edgevit_deploy.device_bench.runners.host:HostRunner",
}


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
        return cls()
    return cls(config or RunnerConfig.from_env())


class AndroidToolRunner:
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
    def command(self, job: BenchJob, tool_path: str, model_path: str, scratch: str) -> list[str]:
        raise NotImplementedError

    def parse(self, transport: Transport, result: Any, model_path: str, scratch: str) -> Any:
        raise NotImplementedError

    # shared ------------------------------------------------------------------------------------
    def tool_binary(self) -> Path:
        path = getattr(self.config, self.tool, None)
        env = {"benchmark_model": ENV_BENCHMARK_MODEL, "onnxruntime_perf_test": ENV_ORT_PERF_TEST}[self.tool]
        if path is None:
            raise RunnerConfigError(f"no {self.tool} binary configured: pass --{self.tool.replace('_', '-')} "
                                    f"PATH, set ${env}, or `{self.tool}:` in the sweep file's runners table "
                                    "(see docs/android.md for where to get an arm64 build)")
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
            raise RunnerConfigError(f"{transport.device_id}: cannot make {remote} executable: "
                                    f"{(res.stdout + res.stderr).strip()[:300]}")
        return remote

    def run(self, transport: Transport, job: BenchJob, artifact: Any) -> Measurement:
        from .. import android, energy, shell
        from ..artifacts import Artifact, measurement_base, push_once, sha256_of, size_of

        if not isinstance(artifact, Artifact):
            path = Path(artifact)
            artifact = Artifact(path=path, sha256=sha256_of(path), size_bytes=size_of(path), key="")
        base = measurement_base(job, artifact, runtime=self.name)

        def failed(reason: str, **extra: Any) -> Measurement:
            return Measurement(status="failed", reason=reason, **{**base, **extra})

        if job.delegate not in self.delegates:
            return failed(f"{self.name} has no delegate {job.delegate!r}; choose one of "
                          f"{', '.join(sorted(self.delegates))}")
        if job.cpu_mask:
            try:
                shell.validate_mask(job.cpu_mask)
            except ValueError as exc:
                return failed(str(exc))
        try:
            tool_path = self.install_tool(transport)
        except RunnerConfigError as exc:
            return failed(str(exc))
        model_path = push_once(transport, artifact)
        scratch = f"{transport.work_dir.rstrip('/')}/run-{artifact.sha256[:12]}"

        notes: list[str] = []
        device = None
        before: dict[str, Any] = {}
        snap_before = None
        try:
            props, snap_before = android.probe(transport)
            device = android.device_info_from(transport.device_id, props, snap_before)
            before = android.snapshot_dict(snap_before)
            notes.extend(android.idle_warnings(snap_before))
        except Exception as exc:  # a device without dumpsys/getprop still gets measured
            notes.append(f"device probe failed: {exc}")
        base.update(device=device, thermal_before=before,
                    battery_level=snap_before.battery.level if snap_before else None)

        supply = None
        idle = None
        cfg = energy.EnergyConfig(self.config.current_unit, self.config.voltage_unit, self.config.discharge_sign,
                                  idle_s=self.config.energy_idle_s)
        if self.config.energy:
            supply = energy.find_battery(transport)
            if supply is None:
                notes.append("energy: this device exposes no battery current_now/voltage_now")
            else:
                idle = energy.measure_idle(transport, supply, transport.work_dir, cfg)

        args = self.command(job, tool_path, model_path, scratch) + list(self.config.flags_for(self.tool))
        command = f"mkdir -p {shell.quote(scratch)} && cd {shell.quote(scratch)} && " + shell.pinned(args, job.cpu_mask)
        power_log = f"{scratch}/power.log"
        if supply is not None:
            command = energy.wrap_with_sampler(command, supply, power_log, cfg.interval_s)
        log.debug("%s: %s", transport.device_id, command)
        result = transport.shell(command, timeout=self.config.timeout_s)
        raw = (result.stdout + ("\n" + result.stderr if result.stderr else ""))[-20000:]
        base.update(raw_output=raw)

        after: dict[str, Any] = {}
        throttled = None
        try:
            snap_after = android.snapshot(transport)
            after = android.snapshot_dict(snap_after)
            if snap_before is not None:
                reasons = android.throttle_reasons(snap_before, snap_after)
                throttled = bool(reasons)
                notes.extend(reasons)
        except Exception as exc:
            notes.append(f"device probe after the run failed: {exc}")
        base.update(thermal_after=after, throttled=throttled)

        if result.timed_out:
            return failed(f"{self.name} timed out after {self.config.timeout_s:g} s (raise the runner timeout, "
                          "or lower the iterations)", notes=notes)
        parsed = self.parse(transport, result, model_path, scratch)
        base.update(runtime=f"{self.name} ({parsed.variant or 'unrecognised output'})",
                    model_size_bytes=base.get("model_size_bytes"))
        notes.extend(parsed.warnings)
        if not parsed.ok:
            return failed(f"{parsed.reason} [exit {result.exit_code}]", notes=notes)
        if result.exit_code != 0:
            return failed(f"{self.name} exited with {result.exit_code} although its output parsed; not trusting it",
                          notes=notes)
        fields = parsed.measurement_fields()
        energy_fields: dict[str, Any] = {}
        if supply is not None:
            run_reading = energy.power_reading(energy.read_log(transport, power_log), cfg)
            charging = bool(snap_before and snap_before.battery.charging)
            latency = fields.get("median_ms") or fields.get("mean_ms")
            res = energy.energy_per_inference(run_reading, idle, latency, charging=charging, top1=self.config.top1)
            energy_fields = {"energy_mj": res.energy_mj, "power_w": res.net_power_w, "energy_note": res.note}
            if res.efficiency_top1_per_mj is not None:
                notes.append(f"efficiency: {res.efficiency_top1_per_mj:.4g} top-1 %/mJ")
        elif self.config.energy:
            energy_fields = {"energy_note": "; ".join(n for n in notes if n.startswith("energy")) or None}
        return Measurement(status="ok", notes=notes, **fields, **energy_fields, **base)
