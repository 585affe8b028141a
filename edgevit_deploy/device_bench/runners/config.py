"""The runners' configuration: where the Android tools are, extra flags, timeouts, energy sampling, the apps."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunnerConfigError

#: environment variables that point at the Android tool binaries when no flag / config value does
ENV_BENCHMARK_MODEL = "EDGEVIT_BENCHMARK_MODEL"
ENV_ORT_PERF_TEST = "EDGEVIT_ORT_PERF_TEST"

DEFAULT_DEVICE_TIMEOUT_S = 600.0  # seconds for one run on a device when RunnerConfig.timeout_s is unset
BIG_CORES = "big"  # cpu_mask value: pin to the cores with the highest max frequency


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
    outputs: bool = True  # runner tool (benchmark_model): feed the fixed parity input, dump outputs, check parity
    executor_runner: Path | None = None  # ExecuTorch's executor_runner binary (.pte rows on Android)

    def __post_init__(self) -> None:
        if self.benchmark_model is not None:
            self.benchmark_model = Path(self.benchmark_model).expanduser()
        if self.onnxruntime_perf_test is not None:
            self.onnxruntime_perf_test = Path(self.onnxruntime_perf_test).expanduser()
        if self.executor_runner is not None:
            self.executor_runner = Path(self.executor_runner).expanduser()
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
