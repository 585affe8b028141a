"""Host latency of EdgeViT XXS / XS / S and MobileNetV2 in every host runtime (onnxruntime, LiteRT,
ExecuTorch), against PyTorch eager.

Every (model, target, precision, threads) configuration is measured by the toolkit's harness (the host
runner: one clean worker process per measurement, exactly what ``edgevit-bench sweep --device local``
does) in ``--rounds`` rounds, configurations interleaved in a shuffled order per round so that drifts of a
shared machine spread over all of them. Beside each harness measurement the same runtime is timed in a
bare loop in this process (load, warm up, ``perf_counter_ns`` around each call); the table reports both
medians and the harness overhead.

    python benchmarks/host_latency.py                       # 224x224, fp32 + int8, 1 and 2 threads
    python benchmarks/host_latency.py --img-size 96 --precisions fp32 --rounds 2 --iterations 20

Rows whose artifact cannot be produced (e.g. int8 while the quantization pipeline is missing) are
printed with the reason, never silently dropped.
"""
from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevit_deploy.device_bench.artifacts import Artifact, ArtifactCache, ArtifactRequest
from edgevit_deploy.device_bench.host_worker import loader_for, timed_runs
from edgevit_deploy.device_bench.runners.host import HostRunner
from edgevit_deploy.device_bench.stats import summarise
from edgevit_deploy.device_bench.transports.local import LocalTransport
from edgevit_deploy.device_bench.types import BenchJob

DEFAULT_MODELS = "edgevit_xxs,edgevit_xs,edgevit_s,mobilenetv2_100"


@dataclass
class Config:
    job: BenchJob
    artifact: Artifact | None = None
    error: str | None = None
    harness: list[float] = field(default_factory=list)       # latencies from the harness, all rounds
    bare: list[float] = field(default_factory=list)          # latencies from the bare loop, all rounds
    init_ms: list[float] = field(default_factory=list)
    peak_mb: float | None = None


def model_name(name: str) -> str:
    """``mobilenetv2_100`` when the zoo registers it, else timm's architecture through ``timm:``."""
    from edgevit_deploy.models import list_models

    return name if name in list_models() or ":" in name else f"timm:{name}"


def bare_loop(job: BenchJob, artifact: Artifact, iterations: int, warmup: int) -> list[float]:
    """The same runtime and timing loop in this process, without the harness's worker process: the floor
    the harness is compared against (torch's "artifact" is the model spec the worker builds it from)."""
    runtime, options = loader_for(job.target)
    session = runtime.load(artifact.path, threads=job.threads, **options)
    x = np.random.default_rng(0).standard_normal((1, 3, job.img_size, job.img_size)).astype(np.float32)
    return timed_runs(session, x, warmup, iterations)[1]


def run(args: argparse.Namespace) -> list[Config]:
    models = [model_name(m) for m in args.models.split(",") if m]
    targets = [t for t in args.targets.split(",") if t]
    configs = []
    for m in models:
        for t in targets:
            for p in args.precisions.split(","):
                if t == "torch" and p != "fp32":
                    continue                       # the eager baseline is fp32
                for n in (int(v) for v in args.threads.split(",")):
                    configs.append(Config(BenchJob(m, t, p, threads=n, img_size=args.img_size, warmup=args.warmup,
                                                   iterations=args.iterations)))
    cache = ArtifactCache(args.cache_dir)
    for c in configs:
        try:
            if args.cached_only:
                c.artifact = cache.lookup(ArtifactRequest.from_job(c.job))
                c.error = None if c.artifact else "not in the artifact cache (--cached-only)"
                continue
            c.artifact = cache.ensure(c.job)
        except Exception as exc:  # noqa: BLE001 - printed as the row's reason
            c.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        if c.job.threads == 1:
            print(f"artifact {c.job.model} {c.job.target} {c.job.precision}: {c.error or 'ready'}", file=sys.stderr)
    live = [c for c in configs if c.artifact is not None]
    transport = LocalTransport(args.work_dir)
    runner = HostRunner()
    rng = random.Random(0)
    for r in range(args.rounds):
        order = live[:]
        rng.shuffle(order)
        for i, c in enumerate(order):
            print(f"round {r + 1}/{args.rounds} [{i + 1}/{len(order)}] {c.job.model} {c.job.target} "
                  f"{c.job.precision} {c.job.threads}t", file=sys.stderr)
            m = runner.run(transport, c.job, c.artifact)
            if m.status != "ok":
                c.error = m.reason
                continue
            c.harness += m.latencies_ms
            c.init_ms.append(m.init_ms or 0.0)
            c.peak_mb = max(c.peak_mb or 0.0, m.peak_memory_mb or 0.0)
            c.bare += bare_loop(c.job, c.artifact, args.iterations, args.warmup)
    return configs


def table(configs: list[Config]) -> str:
    eager = {(c.job.model, c.job.threads): statistics.median(c.harness) for c in configs
             if c.job.target == "torch" and c.harness}
    head = (f"{'model':<22} {'target':<10} {'prec':<5} {'thr':>3} {'harness ms':>10} {'p90 ms':>8} {'bare ms':>8} "
            f"{'overhead':>9} {'vs eager':>9} {'init ms':>8} {'peak MB':>8}  note")
    lines = [head, "-" * len(head)]
    for c in configs:
        j = c.job
        if not c.harness:
            lines.append(f"{j.model:<22} {j.target:<10} {j.precision:<5} {j.threads:>3} {'':>10} {'':>8} {'':>8} "
                         f"{'':>9} {'':>9} {'':>8} {'':>8}  failed: {c.error}")
            continue
        s = summarise(c.harness)
        bare = statistics.median(c.bare) if c.bare else float("nan")
        base = eager.get((j.model, j.threads))
        speed = f"{base / s.median:.2f}x" if base else ""
        lines.append(f"{j.model:<22} {j.target:<10} {j.precision:<5} {j.threads:>3} {s.median:>10.2f} {s.p90:>8.2f} "
                     f"{bare:>8.2f} {(s.median / bare - 1) * 100:>8.1f}% {speed:>9} "
                     f"{statistics.median(c.init_ms):>8.0f} {c.peak_mb or 0:>8.0f}  {c.error or ''}")
    return "\n".join(lines)


def ratio_lines(configs: list[Config], target: str = "executorch") -> list[str]:
    """``target``'s median latency over each other runtime's, per (model, precision, threads)."""
    med = {(c.job.model, c.job.target, c.job.precision, c.job.threads): statistics.median(c.harness)
           for c in configs if c.harness}
    lines = []
    for (m, t, p, n), ms in med.items():
        if t != target:
            continue
        others = [(o, med[(m, o, p if o != "torch" else "fp32", n)]) for o in ("onnx", "tflite", "torch")
                  if (m, o, p if o != "torch" else "fp32", n) in med]
        if others:
            lines.append(f"{m} {p} {n}t: {target} {ms:.2f} ms = "
                         + ", ".join(f"{ms / o_ms:.2f}x {o}" for o, o_ms in others))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--targets", default="onnx,tflite,executorch,torch",
                   help="host runtimes: onnx, tflite, executorch, torch (coreml on macOS)")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; every config runs once per round")
    p.add_argument("--iterations", type=int, default=30, help="timed iterations per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--cache-dir", type=Path, default=None, help="artifact cache (default: the toolkit's)")
    p.add_argument("--work-dir", type=Path, default=None, help="the local device's work dir (default: a temp dir)")
    p.add_argument("--cached-only", action="store_true",
                   help="measure only artifacts already in the cache (no export); the rest are listed as missing")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.cache_dir is None:
        from edgevit_deploy.device_bench.api import default_cache_dir

        args.cache_dir = default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="host-latency-") as tmp:
        args.work_dir = args.work_dir or Path(tmp)
        t0 = time.perf_counter()
        configs = run(args)
        print(f"\nhost latency, img {args.img_size}, {args.rounds} rounds x {args.iterations} iterations "
              f"(harness = clean worker process per measurement; bare = same runtime in a loop in-process)")
        print(table(configs))
        ratios = ratio_lines(configs)
        if ratios:
            print("\n" + "\n".join(ratios))
        print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
