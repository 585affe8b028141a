"""Int8 latency against fp32, every int8 mode of every host target, interleaved in one run (issue #15, "Speed").

For each model, each target's fp32 artifact and each of its int8 modes are made by the toolkit's own
pipeline (the export's target rewrites, ``quantize_and_report`` with the fp32 artifact as its twin), loaded
once in the host runtime the bench uses (``device_bench.host_worker.loader_for``), then timed round-robin:
every round runs every artifact ``--iterations`` times (``host_worker.timed_runs``), ``--rounds`` rounds, so
that drifts of a shared machine spread over all of them; the table gives medians over all runs, the ratio
int8 / fp32 of the same runtime, and the SQNR of each int8 artifact against its fp32 twin on the same inputs
(the built-in held-out views). ``--profile`` adds, per artifact, where the time goes:

- onnxruntime: session profiling (``SessionOptions.enable_profiling``), kernel time per op type, and the op
  types of the graph onnxruntime actually runs (``optimized_model_filepath``: QLinearConv / QGemm /
  QLinearMatMul are int8 kernels; Q/DQ left over are the unfused pairs);
- LiteRT: its Python interpreter has no op profiler, so the table counts the ops by type, output dtype and
  where they run (XNNPACK delegate or LiteRT's built-in kernels; delegate node fusion off, one delegate node
  per op, matched by its output tensors), and ``device_bench.kernel_profile`` samples a child process running
  the artifact with ``perf`` (when installed): time per kernel group (XNNPACK int8 / float conv and matmul,
  (de)quantization, XNNPACK's other ops, LiteRT's built-in kernels) and the top kernels;
- ExecuTorch: the ops left outside the XNNPACK delegate (the quantizer's report).

Core ML is not runnable here (its native runtime is macOS only; the reference executor is not for timing).

    python benchmarks/quant_speed.py --quick --profile           # EdgeViT-XXS and Lite0, 1 thread
    python benchmarks/quant_speed.py                              # all seven models
    python benchmarks/quant_speed.py --models edgevit_xxs --targets onnx --rounds 40
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevit_deploy.converters.base import ExportOptions, QuantMode
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.device_bench.host_worker import loader_for, timed_runs
from edgevit_deploy.export_api import build_metadata
from edgevit_deploy.formulations.registry import apply_formulations
from edgevit_deploy.models import create_model
from edgevit_deploy.quantize.calibration import load_calibration
from edgevit_deploy.quantize.pipeline import export_float_twin, quantize_and_report
from edgevit_deploy.verify.metrics import sqnr_db

ALL_MODELS = "edgevit_xxs,edgevit_xs,edgevit_s,mobilenetv2_100,efficientnet_lite0,efficientformer_l1,mobilevit_xs"
QUICK_MODELS = "edgevit_xxs,efficientnet_lite0"
TARGETS = "onnx,tflite,executorch"


@dataclass
class Entry:
    model: str
    target: str
    mode: str  # "fp32" or a quantization mode
    path: Path | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    session: Any = None
    ms: list[float] = field(default_factory=list)
    sqnr: float | None = None
    profile: list[str] = field(default_factory=list)
    split: dict[str, float] = field(default_factory=dict)  # kernel ms per run: compute / qdq / other / total


def build(name: str, targets: list[str], out: Path, calib_size: int, img_size: int | None) -> list[Entry]:
    """fp32 and every int8 mode of each target for ``name``, by the toolkit's export / quantize pipeline."""
    torch.manual_seed(0)
    model = create_model(name, img_size=img_size).eval()
    cfg = model.deploy_cfg
    sha = str(model.checkpoint_sha256)
    entries = []
    for target in targets:
        spec = get_spec(target)
        rewritten, _ = apply_formulations(model, spec.formulation)
        fopts = ExportOptions(precision=spec.default_precision)
        example = torch.zeros(1, *cfg.input_size)
        fp = Entry(name, target, "fp32")
        t0 = time.perf_counter()
        try:
            meta = build_metadata(name, cfg, sha, fopts, str(spec.default_precision))
            fp.path = export_float_twin(spec, rewritten, example, fopts, meta, out / target, name)
        except Exception as exc:
            fp.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        entries.append(fp)
        log(f"{name} {target} fp32: {fp.error or f'{time.perf_counter() - t0:.0f} s'}")
        for mode in spec.quant_modes:
            e = Entry(name, target, str(mode))
            t0 = time.perf_counter()
            if fp.path is None:
                e.error = "no fp32 twin"
            else:
                try:
                    opts = replace(fopts, quantize=QuantMode(mode))
                    meta = build_metadata(name, cfg, sha, opts, str(mode))
                    e.path, report = quantize_and_report(
                        rewritten,
                        cfg,
                        spec,
                        opts,
                        out / target,
                        meta,
                        reference=model,
                        calib_size=calib_size,
                        float_artifact=fp.path,
                        latency_runs=1,
                    )
                    e.details = report.to_dict().get("quantization", {})
                except Exception as exc:
                    e.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            entries.append(e)
            log(f"{name} {target} {mode}: {e.error or f'{time.perf_counter() - t0:.0f} s'}")
    return entries


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_all(entries: list[Entry], threads: int, x: np.ndarray) -> None:
    for e in entries:
        if e.path is None:
            continue
        try:
            runtime, options = loader_for(e.target)
            e.session = runtime.load(e.path, threads=threads, **options)
            e.session.run(x)
        except Exception as exc:
            e.error, e.session = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}", None


def interleave(entries: list[Entry], x: np.ndarray, rounds: int, iterations: int, warmup: int) -> None:
    live = [e for e in entries if e.session is not None]
    for r in range(rounds):
        for e in live:
            e.ms += timed_runs(e.session, x, warmup, iterations)[1]
        if (r + 1) % max(1, rounds // 5) == 0:
            log(f"round {r + 1}/{rounds}")


def fidelity(entries: list[Entry], held: np.ndarray) -> None:
    """SQNR of every int8 artifact against its fp32 twin, same inputs, same runtime."""
    twins = {(e.model, e.target): e for e in entries if e.mode == "fp32" and e.session is not None}
    for e in entries:
        fp = twins.get((e.model, e.target))
        if e.mode == "fp32" or e.session is None or fp is None:
            continue
        e.sqnr = sqnr_db(fp.session.run(held), e.session.run(held))


# ------------------------------------------------------------------------------------------ profiles
#: onnxruntime's int8 compute kernels (QDQ fused, dynamic) and its quantize / dequantize ops
ORT_INT8_KERNELS = (
    "QLinearConv",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
)
ORT_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
#: their float counterparts in the fp32 twin (and onnxruntime's NCHWc reorders around its float convs)
ORT_FLOAT_KERNELS = ("Conv", "Gemm", "MatMul", "FusedMatMul", "FusedConv", "FusedGemm", "ReorderInput", "ReorderOutput")


def onnx_profile(path: Path, x: np.ndarray, threads: int, runs: int, top: int) -> tuple[list[str], dict[str, float]]:
    """Kernel time per op type (ms per run) and its split into conv / matmul kernels (int8 or float), Q/DQ and every
    other op (float in both graphs: LayerNorm, GELU, Add, Transpose, ...)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="quant-speed-prof-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(3 + runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
        graph_ops = Counter(n.op_type for n in onnx.load(str(Path(tmp) / "optimized.onnx")).graph.node)
    per_type: dict[str, float] = defaultdict(float)
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            per_type[ev["args"]["op_name"]] += ev["dur"] / 1000.0
    n_runs = 3 + runs
    total = sum(per_type.values()) / n_runs
    lines = [f"kernel time {total:.2f} ms/run (onnxruntime profiling, {n_runs} runs)"]
    for op, us in sorted(per_type.items(), key=lambda kv: -kv[1])[:top]:
        ms = us / n_runs
        lines.append(f"  {op:<26} {ms:7.2f} ms {100 * ms / total:5.1f} %  x{graph_ops.get(op, 0)}")
    int8 = sum(v for k, v in graph_ops.items() if k in ORT_INT8_KERNELS)
    floats = sum(graph_ops.get(k, 0) for k in ("Conv", "Gemm", "MatMul", "FusedMatMul"))
    lines.append(
        f"  graph as run: {int8} int8 matmul/conv kernels, QuantizeLinear x{graph_ops.get('QuantizeLinear', 0)}, "
        f"DequantizeLinear x{graph_ops.get('DequantizeLinear', 0)}, float Conv/Gemm/MatMul x{floats}"
    )
    split = {
        "compute": sum(v for k, v in per_type.items() if k in ORT_INT8_KERNELS or k in ORT_FLOAT_KERNELS) / n_runs,
        "qdq": sum(v for k, v in per_type.items() if k in ORT_QDQ) / n_runs,
        "total": total,
    }
    split["other"] = total - split["compute"] - split["qdq"]
    lines.append(
        f"  split: conv / matmul kernels {split['compute']:.2f} ms, Q/DQ {split['qdq']:.2f} ms, every other op "
        f"(float) {split['other']:.2f} ms"
    )
    return lines, split


def amdahl_bound(int8: dict[str, float], fp32: dict[str, float]) -> str:
    """How fast the int8 graph could get against its fp32 twin (kernel times of the same profiling run): its int8
    kernels' speed-up over the float ones, and the ratio it would reach if its Q/DQ cost nothing, and if its
    conv / matmul kernels cost nothing as well (the other ops alone bound the ratio)."""
    return (
        f"  bound vs fp32 ({fp32['total']:.2f} ms; its conv / matmul kernels {fp32['compute']:.2f} ms, "
        f"{fp32['compute'] / max(int8['compute'], 1e-9):.1f}x the int8 ones): with Q/DQ free >= "
        f"{(int8['compute'] + int8['other']) / fp32['total']:.2f}x; with the conv / matmul kernels free too >= "
        f"{int8['other'] / fp32['total']:.2f}x"
    )


def litert_delegation(path: Path, top: int) -> list[str]:
    """Op counts by (type, output dtype, XNNPACK or built-in kernel): delegate node fusion off, so every
    delegated op is its own DELEGATE node, matched with the op by its output tensors."""
    from ai_edge_litert.interpreter import Interpreter

    from edgevit_deploy.converters._quiet import native_output_to_log

    with native_output_to_log():
        it = Interpreter(model_path=str(path), num_threads=1, experimental_disable_delegate_node_fusion=True)
        it.allocate_tensors()
    ops = it._get_ops_details()
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    delegated = {tuple(sorted(o["outputs"])) for o in ops if o["op_name"] == "DELEGATE"}
    rows: Counter = Counter()
    for o in ops:
        if o["op_name"] == "DELEGATE":
            continue
        where = "xnnpack" if tuple(sorted(o["outputs"])) in delegated else "builtin"
        rows[(o["op_name"], dtypes.get(int(o["outputs"][0]), "?") if len(o["outputs"]) else "", where)] += 1
    outside = [f"{k[0]}/{k[1]} x{v}" for k, v in rows.most_common() if k[2] == "builtin"]
    lines = [
        f"ops: {sum(rows.values())}, on LiteRT's built-in kernels (outside XNNPACK): " + (", ".join(outside) or "none")
    ]
    by_dtype: Counter = Counter()
    for (_, dt, _), v in rows.items():
        by_dtype[dt] += v
    lines.append("  ops by output dtype: " + ", ".join(f"{k} {v}" for k, v in by_dtype.most_common()))
    lines.append("  most frequent: " + ", ".join(f"{k[0]}/{k[1]} x{v}" for k, v in rows.most_common(top)))
    return lines


def litert_kernels(path: Path, threads: int, top: int) -> tuple[list[str], dict[str, float]]:
    """LiteRT's time by kernel (``device_bench.kernel_profile``: perf sampling of a child process running the
    artifact) and the same split as onnxruntime's: conv / matmul kernels, (de)quantization, everything else."""
    from edgevit_deploy.device_bench.kernel_profile import KernelGroup, KernelProfileError, profile_litert

    try:
        prof = profile_litert(path, threads=threads, runs=150)
    except KernelProfileError as exc:
        return [f"kernels: not profiled ({exc})"], {}
    g = prof.groups
    split = {
        "compute": g[KernelGroup.INT8_MATMUL] + g[KernelGroup.FLOAT_MATMUL],
        "qdq": g[KernelGroup.CONVERT],
        "total": prof.ms_per_run,
    }
    split["other"] = split["total"] - split["compute"] - split["qdq"]
    return prof.lines(top), split


def profiles(entries: list[Entry], x: np.ndarray, threads: int, top: int) -> None:
    for e in entries:
        if e.path is None or e.session is None:
            continue
        try:
            if e.target == "onnx":
                e.profile, e.split = onnx_profile(e.path, x, threads, 20, top)
            elif e.target == "tflite":
                e.profile = litert_delegation(e.path, top)
                kernels, e.split = litert_kernels(e.path, threads, top)
                e.profile += kernels
            elif e.target == "executorch":
                outside = e.details.get("non_delegated_ops") if e.details else None
                e.profile = [f"ops outside the XNNPACK delegate: {outside if outside is not None else 'n/a (fp32)'}"]
        except Exception as exc:
            e.profile = [f"profile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"]
    twins = {(e.model, e.target): e.split for e in entries if e.mode == "fp32" and e.split}
    for e in entries:
        fp32 = twins.get((e.model, e.target))
        if e.mode != "fp32" and e.split and fp32:
            e.profile.append(amdahl_bound(e.split, fp32))


# ------------------------------------------------------------------------------------------ output
def table(entries: list[Entry]) -> str:
    med = {(e.model, e.target, e.mode): statistics.median(e.ms) for e in entries if e.ms}
    head = "| model | target | mode | median ms | p90 ms | int8 / fp32 | SQNR vs fp32 twin dB | note |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if not e.ms:
            lines.append(f"| {e.model} | {e.target} | {e.mode} | | | | | {e.error or 'not timed'} |")
            continue
        m = med[(e.model, e.target, e.mode)]
        p90 = float(np.percentile(e.ms, 90))
        base = med.get((e.model, e.target, "fp32"))
        ratio = f"{m / base:.2f}" if base and e.mode != "fp32" else ("1.00" if e.mode == "fp32" else "")
        sq = f"{e.sqnr:.1f}" if e.sqnr is not None else ""
        lines.append(f"| {e.model} | {e.target} | {e.mode} | {m:.2f} | {p90:.2f} | {ratio} | {sq} | {e.error or ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=ALL_MODELS)
    p.add_argument("--quick", action="store_true", help=f"only {QUICK_MODELS}")
    p.add_argument("--targets", default=TARGETS, help="onnx, tflite, executorch (coreml: not runnable off macOS)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds; every artifact runs once per round")
    p.add_argument("--iterations", type=int, default=10, help="timed runs per artifact per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per artifact per round")
    p.add_argument("--calib-size", type=int, default=64)
    p.add_argument("--held-out", type=int, default=16, help="images of the SQNR against the fp32 twin")
    p.add_argument("--profile", action="store_true", help="where the time goes, per artifact")
    p.add_argument("--top", type=int, default=10, help="op types per profile")
    p.add_argument("--out", type=Path, default=None, help="keep the artifacts here (default: a temp dir)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.iterations < 1:
        p.error("--threads, --rounds and --iterations must be at least 1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    models = [m for m in (QUICK_MODELS if args.quick else args.models).split(",") if m]
    targets = [t for t in args.targets.split(",") if t]
    for t in targets:
        if t == "coreml":
            p.error(
                "coreml is not runnable here: its native runtime is macOS only (the reference executor is "
                "not for timing)"
            )
        get_spec(t)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quant-speed-") as tmp:
        out = args.out or Path(tmp)
        entries: list[Entry] = []
        held_by_model: dict[str, np.ndarray] = {}
        for name in models:
            with contextlib.redirect_stdout(sys.stderr):  # the converters' progress lines: not the table's stream
                built = build(name, targets, out / name, args.calib_size, args.img_size)
            entries += built
            cfg = create_model(name, img_size=args.img_size).deploy_cfg
            held_by_model[name] = load_calibration(cfg, None, 16, 0)[1].data[: args.held_out]
        x = np.random.default_rng(0).standard_normal((1, 3, args.img_size, args.img_size)).astype(np.float32)
        load_all(entries, args.threads, x)
        for name in models:
            fidelity([e for e in entries if e.model == name], held_by_model[name])
        log(
            f"timing {sum(e.session is not None for e in entries)} artifacts: {args.rounds} rounds x "
            f"{args.iterations} runs, interleaved"
        )
        interleave(entries, x, args.rounds, args.iterations, args.warmup)
        if args.profile:
            profiles(entries, x, args.threads, args.top)
        try:
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        except OSError:
            load = "n/a"
        print(
            f"\nint8 vs fp32, {args.img_size}x{args.img_size}, {args.threads} thread(s), {args.rounds} interleaved "
            f"rounds x {args.iterations} runs, medians; calibration {args.calib_size} built-in views; SQNR on "
            f"{args.held_out} held-out views; load average at the end {load}"
        )
        print(table(entries))
        if args.profile:
            for e in entries:
                if e.profile:
                    print(f"\n{e.model} {e.target} {e.mode}:")
                    print("\n".join(e.profile))
        print("\ncoreml: not measured (Core ML's native runtime is macOS only)")
        print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
