"""Which runner measures which target on which kind of device: THE table, and ``get_runner``.

``get_runner(target, device_kind, config)`` is what the sweep calls, for every device kind (``local`` too).
The table below is the only place that maps (target, device kind) to a runner class; runner modules are
imported lazily.
"""

from __future__ import annotations

import importlib

from ..errors import RunnerConfigError
from ..types import Runner
from .config import RunnerConfig

HOST_RUNNER = "edgevit_deploy.device_bench.runners.host:HostRunner"

# (target, device kind) -> "module:Class". The only dispatch on target names in device_bench; read it
# through ``runner_table``.
RUNNERS: dict[tuple[str, str], str] = {
    ("tflite", "adb"): "edgevit_deploy.device_bench.runners.litert_benchmark:LiteRtBenchmarkRunner",
    ("onnx", "adb"): "edgevit_deploy.device_bench.runners.ort_perf_test:OrtPerfTestRunner",
    ("executorch", "adb"): "edgevit_deploy.device_bench.runners.executor_runner:ExecutorRunnerRunner",
    # ("<target>", "local"): HOST_RUNNER for every target the sweep knows, added by ``runner_table``: the host
    # worker loads each target through the target table (plus torch eager)
    # the benchmark app (android_app/): `--runner app` starts its Activity, `--runner instrument` its
    # instrumentation test; the sweep asks for kind "adb:<runner>" when a row's runner is not the default
    ("tflite", "adb:app"): "edgevit_deploy.device_bench.runners.app:AppRunner",
    ("onnx", "adb:app"): "edgevit_deploy.device_bench.runners.app:AppRunner",
    ("tflite", "adb:instrument"): "edgevit_deploy.device_bench.runners.app:InstrumentRunner",
    ("onnx", "adb:instrument"): "edgevit_deploy.device_bench.runners.app:InstrumentRunner",
    ("executorch", "adb:app"): "edgevit_deploy.device_bench.runners.app:AppRunner",
    ("executorch", "adb:instrument"): "edgevit_deploy.device_bench.runners.app:InstrumentRunner",
    # iPhones: Core ML in the iOS app (ios_app/), the only way to measure there (`--runner app` is the same)
    ("coreml", "ios"): "edgevit_deploy.device_bench.runners.ios_app:IosAppRunner",
    ("coreml", "ios:app"): "edgevit_deploy.device_bench.runners.ios_app:IosAppRunner",
}


def runner_kind(device_kind: str, runner: str) -> str:
    """The RUNNERS key's device kind for a row: ``adb`` for the default tools, ``adb:app`` for the app."""
    return device_kind if runner in ("", "default") else f"{device_kind}:{runner}"


def runner_table() -> dict[tuple[str, str], str]:
    """RUNNERS, plus the host runner on ``local`` for every target the sweep knows (the target table's and torch)."""
    from ..sweep_config import known_targets

    table = {(target, "local"): HOST_RUNNER for target in known_targets()}
    table.update(RUNNERS)
    return table


def supported_pairs() -> list[tuple[str, str]]:
    return sorted(runner_table())


def get_runner(target: str, device_kind: str, config: RunnerConfig | None = None) -> Runner:
    """The runner measuring ``target`` artifacts on a ``device_kind`` device ("local", "adb")."""
    key = (str(target), str(device_kind))
    ref = runner_table().get(key)
    if ref is None:
        have = ", ".join(f"{t} on {k}" for t, k in supported_pairs())
        raise RunnerConfigError(f"no runner for target {key[0]!r} on a {key[1]!r} device; available: {have}")
    module_name, _, cls_name = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if device_kind == "local":
        return cls(timeout_s=config.timeout_s) if config is not None and config.timeout_s else cls()
    return cls(config or RunnerConfig.from_env())
