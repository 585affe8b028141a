"""LiteRT's ``benchmark_model`` on an Android device (tflite artifacts).

Delegates: ``cpu`` / ``xnnpack`` (XNNPACK, the LiteRT CPU default), ``cpu-builtin`` (the reference
kernels, ``--use_xnnpack=false``), ``gpu`` (``--use_gpu=true``), ``nnapi`` (``--use_nnapi=true``).
"""

from __future__ import annotations

from typing import ClassVar

from ..parsers import ParsedRun, litert
from ..types import BenchJob, ShellResult, Transport
from .android_tool import AndroidToolRunner

DELEGATE_FLAGS: dict[str, list[str]] = {
    "cpu": ["--use_xnnpack=true"],
    "xnnpack": ["--use_xnnpack=true"],
    "cpu-builtin": ["--use_xnnpack=false"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}


class LiteRtBenchmarkRunner(AndroidToolRunner):
    name = "benchmark_model"
    tool = "benchmark_model"
    delegates: ClassVar[dict[str, str]] = {k: " ".join(v) for k, v in DELEGATE_FLAGS.items()}

    def command(self, job: BenchJob, tool_path: str, model_path: str, scratch: str) -> list[str]:
        return [
            tool_path,
            f"--graph={model_path}",
            f"--num_threads={job.threads}",
            f"--num_runs={job.iterations}",
            f"--warmup_runs={job.warmup}",
            "--enable_op_profiling=false",
            "--report_peak_memory_footprint=true",
            *DELEGATE_FLAGS[job.delegate],
        ]

    def parse(self, transport: Transport, result: ShellResult, model_path: str, scratch: str) -> ParsedRun:
        return litert.parse(result.stdout + ("\n" + result.stderr if result.stderr else ""))
