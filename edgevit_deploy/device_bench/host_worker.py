"""One measurement in a clean process: ``python -m edgevit_deploy.device_bench.host_worker ...``.

Loads an artifact in its host runtime (``edgevit_deploy.verify.runtimes`` through the target table;
torch eager for target ``torch``, whose "artifact" is a small JSON spec naming the model), warms up,
times every iteration with ``perf_counter_ns`` and prints ONE JSON line on stdout:

``{"ok": true, "executor": ..., "init_ms": ..., "first_ms": ..., "warmup": N, "latencies_ms": [...],
"peak_rss_mb": ..., "input_shape": [...]}`` or ``{"ok": false, "error": "..."}`` (exit code 2).

``--profile`` adds ``"op_profile"``, ``"delegate_coverage"`` and ``"notes"`` (see :func:`profile_ops`): a
second, profiled pass after the timed one, so the latencies never carry a profiler's overhead.

The host runner (``runners/host.py``) starts it through its transport; nothing else imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the marker in front of the result line, so that runtime chatter on stdout cannot be mistaken for it
RESULT_PREFIX = "EDGEVIT_RESULT "
TORCH_TARGET = "torch"


class _TorchEagerLoader:
    """Torch eager "artifact": a JSON spec ``{"model": NAME, "img_size": N}`` built with create_model."""

    name = TORCH_TARGET

    def __init__(self) -> None:
        import torch

        from ..models import create_model

        self._torch = torch
        self._create = create_model

    def load(self, path: Path, threads: int = 1) -> _TorchEagerSession:
        spec = json.loads(Path(path).read_text())
        self._torch.set_num_threads(threads)
        model = self._create(spec["model"], checkpoint=spec.get("checkpoint"), img_size=spec.get("img_size"))
        return _TorchEagerSession(self._torch, model)


class _TorchEagerSession:
    def __init__(self, torch: Any, model: Any):
        self._torch = torch
        self.model = model
        self.executor = f"torch {torch.__version__} eager"

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(x)).numpy()


def loader_for(target: str) -> tuple[Any, dict[str, str]]:
    """The runtime that loads ``target`` artifacts, imported now (so that load time excludes imports),
    and its load options. Core ML runs natively only: its reference executor is not for timing."""
    if target == TORCH_TARGET:
        return _TorchEagerLoader(), {}
    from ..converters.table import get_spec

    spec = get_spec(target)
    runtime = spec.load_host_runtime()
    reason = runtime.unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    return runtime, spec.bench_options()


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if platform.system() == "Darwin" else rss / 1024.0  # bytes vs KiB


def timed_runs(session: Any, x: np.ndarray, warmup: int, iterations: int) -> tuple[float, list[float]]:
    """First-call latency and the per-iteration latencies (ms) after ``warmup`` more calls."""
    t0 = time.perf_counter_ns()
    session.run(x)
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(warmup):
        session.run(x)
    latencies = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        session.run(x)
        latencies.append((time.perf_counter_ns() - t0) / 1e6)
    return first_ms, latencies


#: the ExecuTorch ETDump profiler (runs the program with ETDump on, returns op_profile rows): imported lazily
EXECUTORCH_PROFILE_HOOK = ("edgevit_deploy.device_bench.profiles_executorch", "profile_program")


def _onnx_profile(artifact: Path, x: np.ndarray, threads: int, warmup: int, iterations: int) -> dict[str, Any]:
    """onnxruntime session profiling: the same options as the timed session (CPU EP, ``threads`` intra-op,
    one inter-op thread), one first run and ``warmup`` runs left out, ``iterations`` runs averaged."""
    import tempfile

    import onnxruntime as ort

    from .parsers.ort_profile import CPU_EP, parse_trace

    with tempfile.TemporaryDirectory(prefix="edgevit-ortprof-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort_profile")
        sess = ort.InferenceSession(str(artifact), so, providers=[CPU_EP])
        feeds = {sess.get_inputs()[0].name: x}
        for _ in range(1 + warmup + iterations):
            sess.run(None, feeds)
        trace = Path(sess.end_profiling()).read_text()
    parsed = parse_trace(trace, skip_runs=1 + warmup, provider=CPU_EP)
    notes = [f"op profile: {parsed.reason}"] if parsed.reason else []
    notes.append(f"op profile from a separate profiled pass of {parsed.runs} runs (onnxruntime session profiling)")
    return {"op_profile": parsed.op_profile, "delegate_coverage": parsed.delegate_coverage, "notes": notes}


def _executorch_profile(artifact: Path, x: np.ndarray, threads: int, warmup: int, iterations: int) -> dict[str, Any]:
    """ExecuTorch's ETDump per-op profile (:func:`~.profiles_executorch.profile_program`, a separate profiled
    pass on the same input); when it cannot run (no devtools, a failure) the notes say so."""
    import importlib

    module, name = EXECUTORCH_PROFILE_HOOK
    try:
        hook = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        return {"notes": [f"op profile not available for ExecuTorch on the host ({type(exc).__name__}: {exc})"]}
    try:
        rows = hook(artifact, inputs=x, threads=threads, warmup=warmup, iterations=max(1, iterations))
    except Exception as exc:
        return {"notes": [f"op profile not available for ExecuTorch: the ETDump hook failed ({exc})"]}
    from .profiles import finish

    return {"op_profile": finish(rows), "notes": ["op profile from ExecuTorch's ETDump (separate profiled pass)"]}


def _litert_coverage(artifact: Path, threads: int) -> dict[str, Any]:
    """Host LiteRT: the XNNPACK delegate's take of the graph as this interpreter applied it (structural reading of
    its nodes); no per-op times (the ai_edge_litert package has no op profiler and ships no benchmark_model)."""
    notes = ["op profile not available for host LiteRT (ai_edge_litert has no op profiler; use benchmark_model)"]
    try:
        from .coverage import xnnpack_coverage

        cov = xnnpack_coverage(artifact, threads=threads, source="measured")
    except Exception as exc:
        notes.append(f"delegate coverage not read: {type(exc).__name__}: {exc}")
        return {"notes": notes}
    return {"delegate_coverage": cov.to_dict(), "notes": notes}


def profile_ops(
    target: str, artifact: Path, x: np.ndarray, threads: int, warmup: int, iterations: int
) -> dict[str, Any]:
    """``op_profile`` / ``delegate_coverage`` / ``notes`` for ``--profile``, by target; never raises."""
    try:
        if target == "onnx":
            return _onnx_profile(artifact, x, threads, warmup, iterations)
        if target == "tflite":
            return _litert_coverage(artifact, threads)
        if target == "executorch":
            return _executorch_profile(artifact, x, threads, warmup, iterations)
    except Exception as exc:
        return {"notes": [f"op profile failed: {type(exc).__name__}: {str(exc)[:300]}"]}
    return {"notes": [f"op profile not available for target {target} on the host"]}


def measure(
    target: str,
    artifact: Path,
    input_shape: tuple[int, ...],
    threads: int,
    warmup: int,
    iterations: int,
    seed: int = 0,
    profile: bool = False,
) -> dict[str, Any]:
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    runtime, options = loader_for(target)
    t0 = time.perf_counter_ns()
    session = runtime.load(artifact, threads=threads, **options)
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    first_ms, latencies = timed_runs(session, x, warmup, iterations)
    extra = profile_ops(target, artifact, x, threads, warmup, iterations) if profile else {}
    return {
        **extra,
        "ok": True,
        "executor": session.executor,
        "init_ms": init_ms,
        "first_ms": first_ms,
        "warmup": warmup,
        "latencies_ms": latencies,
        "peak_rss_mb": peak_rss_mb(),
        "input_shape": list(input_shape),
        "pid": os.getpid(),
    }


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must be comma-separated integers, got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input shape needs positive dimensions, got {text!r}")
    return dims


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edgevit_deploy.device_bench.host_worker",
        description="Time one artifact in its host runtime; print one JSON line.",
    )
    p.add_argument("--target", required=True, help="onnx, tflite, coreml or torch")
    p.add_argument("--artifact", required=True, type=Path)
    p.add_argument("--input-shape", required=True, type=_shape, help="N,C,H,W")
    p.add_argument("--threads", type=_positive, default=1)
    p.add_argument("--warmup", type=_positive, default=10)
    p.add_argument("--iterations", type=_positive, default=50)
    p.add_argument("--profile", action="store_true", help="also record a per-op profile (second, profiled pass)")
    args = p.parse_args(argv)
    if args.iterations < 1:
        p.error("--iterations must be at least 1")
    if not args.artifact.exists():
        result: dict[str, Any] = {"ok": False, "error": f"artifact not found: {args.artifact}"}
    else:
        try:
            result = measure(
                args.target,
                args.artifact,
                args.input_shape,
                max(args.threads, 1),
                args.warmup,
                args.iterations,
                profile=args.profile,
            )
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 2


if __name__ == "__main__":
    sys.exit(main())
