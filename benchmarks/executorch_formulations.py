"""ExecuTorch-XNNPACK formulations of a model, measured: ops left outside the delegate, latency in ExecuTorch's
host runtime (1 thread by default; the programs interleaved run by run in one process, so drifts of a shared
machine hit them alike), and the max abs difference to PyTorch.

Variants: ``before`` (only the rewrites every target gets: drop-path off, the zoo's), ``layer_norm`` (+ LayerNorm
as matrix products), ``attention`` (+ EdgeViT's attention as 3-D bmm), ``local_prop`` (+ the depthwise transposed
conv as a broadcasting product), ``ops_only`` (LayerNorm + attention), ``executorch`` (the target's formulation in
the table: all three), and ``xnnpack`` (TFLite's rewrites, for comparison).

    python benchmarks/executorch_formulations.py --model edgevit_xxs --img-size 224 --runs 30
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgevit_deploy.converters.base import EtBackend
from edgevit_deploy.converters.executorch import lower_to_pte
from edgevit_deploy.formulations import apply_formulations, rewrites_for
from edgevit_deploy.models import create_model
from edgevit_deploy.verify.runtimes import ExecuTorchHost

EXTRA = {
    "before": (),
    "layer_norm": ("layer_norm_as_matmul",),
    "attention": ("edgevit_attention_bmm",),
    "local_prop": ("depthwise_convtranspose_to_broadcast",),
    "ops_only": ("layer_norm_as_matmul", "edgevit_attention_bmm"),
}


def variant(model: torch.nn.Module, name: str) -> torch.nn.Module:
    if name in ("executorch", "xnnpack"):
        return apply_formulations(model, name)[0]
    base = apply_formulations(model, "none")[0]  # only the rewrites registered for every target
    chosen = [r for r in rewrites_for("executorch") if r.name in EXTRA[name]]
    base = copy.deepcopy(base)
    for parent in list(base.modules()):
        for child_name, child in list(parent.named_children()):
            for rw in chosen:
                new = rw.fn(child)
                if new is not None:
                    setattr(parent, child_name, new)
                    break
    return base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="edgevit_xxs")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--variants", default="before,ops_only,local_prop,executorch")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.img_size).eval()
    x = torch.randn(1, 3, args.img_size, args.img_size)
    checks = torch.randn(4, 3, args.img_size, args.img_size)
    with torch.no_grad():
        reference = model(checks).numpy()
    names = args.variants.split(",")
    sessions, rows = {}, {}
    with tempfile.TemporaryDirectory(prefix="et-form-") as tmp:
        for name in names:
            m = variant(model, name)
            with torch.no_grad():
                program = torch.export.export(m, (x,))
            path = Path(tmp) / f"{name}.pte"
            t0 = time.perf_counter()
            outside = lower_to_pte(program, path, EtBackend.XNNPACK, {})
            session = ExecuTorchHost().load(path, threads=args.threads)
            got = session.run(checks.numpy())
            rows[name] = {
                "outside": outside,
                "max_abs": float(np.abs(got - reference).max()),
                "lower_s": time.perf_counter() - t0,
                "times": [],
            }
            sessions[name] = session
            print(f"{name}: {sum(outside.values())} ops outside XNNPACK {outside}", file=sys.stderr)
        xn = x.numpy()
        for _ in range(args.warmup):
            for name in names:
                sessions[name].run(xn)
        for _ in range(args.runs):  # interleaved: one run of each program in turn
            for name in names:
                t = time.perf_counter_ns()
                sessions[name].run(xn)
                rows[name]["times"].append((time.perf_counter_ns() - t) / 1e6)
    print("| formulation | ops outside XNNPACK | median ms | min ms | max abs vs PyTorch |")
    print("|---|---|---|---|---|")
    for name in names:
        r = rows[name]
        print(
            f"| {name} | {sum(r['outside'].values())} | {statistics.median(r['times']):.2f} | "
            f"{min(r['times']):.2f} | {r['max_abs']:.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
