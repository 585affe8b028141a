"""Time the reference ML Program executor against onnxruntime on the same model (1 thread).

    python benchmarks/coreml_reference.py [--model edgevit_xxs] [--img-size 224] [--repeats 10]

Exports the model once to Core ML (fp16 and fp32) and ONNX with the toolkit's own converters, then
prints the median latency of one image for each, and the ratio to onnxruntime.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def median_ms(fn, x: np.ndarray, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def export_one(model: torch.nn.Module, target: str, out: Path, precision: str | None) -> Path:
    import edgevit_deploy
    from edgevit_deploy.converters.base import ExportOptions, Precision

    options = ExportOptions(precision=Precision(precision) if precision else None)
    art = edgevit_deploy.export(model, target, out, options=options, verify=False).artifacts[0]
    if art.path is None:
        raise SystemExit(f"{target} export failed: {art.error}")
    return Path(art.path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="edgevit_xxs")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=None, help="keep the exported artifacts here")
    args = ap.parse_args(argv)

    from edgevit_deploy.models import create_model
    from edgevit_deploy.verify.metrics import cosine
    from edgevit_deploy.verify.mil import ReferenceExecutor
    from edgevit_deploy.verify.runtimes import OnnxRuntimeHost

    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.img_size)
    x = np.random.default_rng(0).standard_normal((1, 3, args.img_size, args.img_size)).astype(np.float32)
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="coreml_ref_bench_"))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    rows = []
    ort = OnnxRuntimeHost().load(export_one(model, "onnx", out / "onnx", None), threads=args.threads)
    ort_ms = median_ms(ort.run, x, args.warmup, args.repeats)
    rows.append((ort.executor, "fp32", ort_ms, ort.run(x)))
    for precision in ("fp32", "fp16"):
        ex = ReferenceExecutor(export_one(model, "coreml", out / f"coreml_{precision}", precision), threads=args.threads)
        rows.append((ex.executor, precision, median_ms(ex.run_normalised, x, args.warmup, args.repeats),
                     ex.run_normalised(x)))
    print(f"{args.model} @ {args.img_size}px, batch 1, {args.threads} thread(s), median of {args.repeats}")
    print("| runtime | precision | median ms | x onnxruntime | max abs vs PyTorch | cosine |")
    print("|---|---|---|---|---|---|")
    for name, precision, ms, y in rows:
        print(f"| {name} | {precision} | {ms:.1f} | {ms / ort_ms:.2f} | {np.abs(y - ref).max():.2e} | "
              f"{cosine(ref, y):.6f} |")


if __name__ == "__main__":
    main()
