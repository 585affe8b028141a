"""Which torch.onnx exporter gives the faster onnxruntime graph? TorchScript (dynamo=False) vs dynamo.

Exports each model with both exporters, then times both graphs in onnxruntime (CPU EP, 1 thread),
interleaved round by round so that machine noise hits both alike. Prints medians and the ratio.

    python benchmarks/onnx_exporters.py --models edgevit_xxs,edgevit_xs --img-size 224 --rounds 5 --iters 20
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="edgevit_xxs,edgevit_xs,edgevit_s")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import onnxruntime as ort

    import edgevit_deploy
    from edgevit_deploy.converters import ExportOptions

    print(f"onnxruntime {ort.__version__}, {args.threads} thread(s), {args.img_size}px, "
          f"{args.rounds} rounds x {args.iters} iterations, median per-inference ms")
    print(f"{'model':<14}{'torchscript':>12}{'dynamo':>10}{'dynamo/ts':>11}{'ts parity':>11}{'dyn parity':>11}")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            sessions, parity = {}, {}
            for exporter in ("torchscript", "dynamo"):
                res = edgevit_deploy.export(name, "onnx", Path(tmp) / exporter, img_size=args.img_size,
                                            options=ExportOptions(onnx_exporter=exporter))
                art = res.artifacts[0]
                parity[exporter] = art.parity.max_abs
                so = ort.SessionOptions()
                so.intra_op_num_threads = args.threads
                sessions[exporter] = ort.InferenceSession(str(art.path), so, providers=["CPUExecutionProvider"])
            x = np.random.default_rng(0).standard_normal((1, 3, args.img_size, args.img_size), dtype=np.float32)
            times: dict[str, list[float]] = {k: [] for k in sessions}
            for s in sessions.values():
                for _ in range(3):
                    s.run(None, {"image": x})
            for _ in range(args.rounds):
                for k, s in sessions.items():
                    for _ in range(args.iters):
                        t0 = time.perf_counter()
                        s.run(None, {"image": x})
                        times[k].append((time.perf_counter() - t0) * 1e3)
            ts, dy = statistics.median(times["torchscript"]), statistics.median(times["dynamo"])
            print(f"{name:<14}{ts:>12.2f}{dy:>10.2f}{dy / ts:>11.3f}{parity['torchscript']:>11.1e}"
                  f"{parity['dynamo']:>11.1e}")


if __name__ == "__main__":
    main()
