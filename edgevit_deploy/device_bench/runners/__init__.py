"""Runners produce timings (they never call subprocess themselves: they ask their transport).

- ``config``: :class:`RunnerConfig`, how runners find and call their tools;
- ``registry``: THE (target, device kind) -> runner table, ``get_runner``, ``supported_pairs``, ``runner_kind``;
- ``android_tool``: :class:`AndroidToolRunner`, the base of the Android benchmark-binary runners;
- ``energy_sampler``: battery sampling around one Android run.

This module only re-exports.
"""

from __future__ import annotations

from .android_tool import AndroidToolRunner
from .config import BIG_CORES, DEFAULT_DEVICE_TIMEOUT_S, ENV_BENCHMARK_MODEL, ENV_ORT_PERF_TEST, RunnerConfig
from .energy_sampler import EnergySampler
from .registry import RUNNERS, get_runner, runner_kind, supported_pairs

__all__ = [
    "BIG_CORES",
    "DEFAULT_DEVICE_TIMEOUT_S",
    "ENV_BENCHMARK_MODEL",
    "ENV_ORT_PERF_TEST",
    "RUNNERS",
    "AndroidToolRunner",
    "EnergySampler",
    "RunnerConfig",
    "get_runner",
    "runner_kind",
    "supported_pairs",
]
