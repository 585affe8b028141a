"""Stand-ins for LiteRT's ``benchmark_model`` and ``onnxruntime_perf_test``: the same command-line flags,
a REAL run of the model in the host runtime (ai_edge_litert / onnxruntime), and the real tools' output
formats around the real host timings. ``write_fake_tools(dir)`` writes executable scripts (shebang = this
Python) that the runners push to the stand-in device like the real binaries.

The stand-in ``benchmark_model`` takes ``--input_layer`` / ``--input_layer_shape`` / ``--input_layer_value_files``
(raw float32 input) and ``--output_filepath`` (raw bytes of the outputs after the last run). Faults, written to
:func:`tool_fault_file` in the device's root: ``perturb`` (the dumped outputs are changed, as a delegate that
silently computes something else would), ``old`` (a build without ``--output_filepath``: it warns
"Unconsumed cmdline flags" and goes on without writing outputs, as the real tool's flag parser does),
``reject`` (a build that names the flags and stops), ``ignore`` (takes the flags and writes no output file),
``partial`` (the XNNPACK line says the delegate left the last node to the built-in kernels, 2 partitions).

Like an Android build, the stand-in prints the delegate's "Replacing N out of M node(s) with delegate
(TfLiteXNNPackDelegate) node, yielding K partitions for the whole graph." line (the counts read from the host
interpreter's nodes), and with ``--enable_op_profiling=true`` the op-profiling tables in the real tool's format
(``tsl/util/stats_calculator.cc``): the measured mean latency split over the model's nodes in proportion to
their output sizes (a stand-in cannot time single ops in the Python interpreter).

Unavailable accelerators fail the way the real tools do: ``--use_gpu`` / ``--use_nnapi`` print "Failed to
apply ... delegate." and "Benchmarking failed."; ``-e nnapi`` prints the ORT error line.

The timing knob (:func:`timing_knob_file`, or ``EDGEVIT_STANDIN_SLOWDOWN`` / ``EDGEVIT_STANDIN_PACE_MS``) slows
every timed iteration by a fraction (an injected regression) and / or paces it to a fixed length (no noise):
the regression gate's tests (``tests/device_bench/test_compare.py``).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..stats import percentile
from .standin_fs import GARBAGE_ENV, ROOT_ENV, simulated_load

_OUTPUT_FLAGS = ("--input_layer=", "--input_layer_shape=", "--input_layer_value_files=", "--output_filepath=")


@dataclass(frozen=True)
class FakeTools:
    benchmark_model: Path
    onnxruntime_perf_test: Path


# The script registers the parent packages without running their __init__ (the toolkit's imports torch,
# which takes seconds): the stand-in starts about as fast as the real binary.
_SCRIPT = """#!{python}
import sys, types
for name, path in {packages!r}:
    pkg = types.ModuleType(name)
    pkg.__path__ = [path]
    sys.modules.setdefault(name, pkg)
from edgevit_deploy.device_bench.testing.fake_runners import {entry}
sys.exit({entry}(sys.argv[1:]))
"""


def _packages() -> list[tuple[str, str]]:
    testing = Path(__file__).resolve().parent
    return [
        ("edgevit_deploy", str(testing.parent.parent)),
        ("edgevit_deploy.device_bench", str(testing.parent)),
        ("edgevit_deploy.device_bench.testing", str(testing)),
    ]


def write_fake_tools(dest: Path, python: str | None = None) -> FakeTools:
    """Executable stand-in tools in ``dest`` (their shebang is ``python``, default this interpreter)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, entry in (("benchmark_model", "litert_main"), ("onnxruntime_perf_test", "ort_main")):
        path = dest / name
        path.write_text(_SCRIPT.format(python=python or sys.executable, entry=entry, packages=_packages()))
        path.chmod(0o755)
        paths[name] = path
    return FakeTools(**paths)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


#: the timing knob (both stand-in tools): ``slowdown`` stretches every timed iteration by that fraction (0.2: each
#: takes 20 % longer, an injected regression); ``pace_ms`` makes every iteration last at least that long (the
#: model's own time is then hidden under a fixed pace, so two runs time alike: a run without noise)
SLOWDOWN_ENV = "EDGEVIT_STANDIN_SLOWDOWN"
PACE_ENV = "EDGEVIT_STANDIN_PACE_MS"


def timing_knob_file(root: Path) -> Path:
    """Write ``slowdown=0.2 pace_ms=20`` here (the stand-in device's root) to set the tools' timing knob for the
    next runs on that device (it wins over :data:`SLOWDOWN_ENV` / :data:`PACE_ENV`); delete it to switch off."""
    path = Path(root) / ".standin/knobs/timing"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def timing_knob() -> tuple[float, float]:
    """(slowdown fraction, pace in seconds) from the device root's knob file, else the environment."""
    values = {"slowdown": os.environ.get(SLOWDOWN_ENV, ""), "pace_ms": os.environ.get(PACE_ENV, "")}
    root = os.environ.get(ROOT_ENV)
    knob = Path(root) / ".standin/knobs/timing" if root else None
    if knob is not None and knob.is_file():
        for item in knob.read_text().split():
            name, _, value = item.partition("=")
            values[name.strip()] = value.strip()
    slowdown = float(values.get("slowdown") or 0.0)
    pace_ms = float(values.get("pace_ms") or 0.0)
    if slowdown < 0 or pace_ms < 0:
        raise SystemExit(f"ERROR: the stand-in timing knob must be >= 0, got slowdown={slowdown} pace_ms={pace_ms}")
    return slowdown, pace_ms / 1000.0


def _wait_until(deadline: float) -> None:
    """Sleep to ``deadline`` (perf_counter seconds), then spin the last half millisecond for precision."""
    left = deadline - time.perf_counter()
    if left > 0.0005:
        time.sleep(left - 0.0005)
    while time.perf_counter() < deadline:
        pass


def _time_runs(invoke: Callable[[], object], n: int) -> list[float]:
    slowdown, pace_s = timing_knob()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        invoke()
        if pace_s:
            _wait_until(t0 + pace_s)
        if slowdown:
            _wait_until(t0 + (time.perf_counter() - t0) * (1.0 + slowdown))
        out.append((time.perf_counter() - t0) * 1e6)  # µs
    return out


def _bool_flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value}")


# ------------------------------------------------------------------------------------ benchmark_model
def tool_fault_file(root: Path) -> Path:
    """Write ``perturb`` / ``old`` / ``ignore`` here (the stand-in device's root) to fault benchmark_model."""
    path = Path(root) / ".standin/faults/benchmark_model"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _tool_fault() -> str:
    root = os.environ.get(ROOT_ENV)
    path = Path(root) / ".standin/faults/benchmark_model" if root else None
    return path.read_text().strip() if path is not None and path.is_file() else ""


def _litert_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmark_model", prefix_chars="-")
    p.add_argument("--graph", required=True)
    p.add_argument("--num_threads", type=int, default=-1)
    p.add_argument("--num_runs", type=int, default=50)
    p.add_argument("--warmup_runs", type=int, default=1)
    p.add_argument("--use_xnnpack", type=_bool_flag, default=True)
    p.add_argument("--use_gpu", type=_bool_flag, default=False)
    p.add_argument("--use_nnapi", type=_bool_flag, default=False)
    p.add_argument("--enable_op_profiling", type=_bool_flag, default=False)
    p.add_argument("--report_peak_memory_footprint", type=_bool_flag, default=False)
    p.add_argument("--input_layer", default="")
    p.add_argument("--input_layer_shape", default="")
    p.add_argument("--input_layer_value_files", default="")
    p.add_argument("--output_filepath", default="")
    return p.parse_args(argv)


def _stat_line(us: list[float], with_first: bool = True) -> str:
    s = sorted(us)
    parts = [f"count={len(us)}"]
    if with_first and len(us) > 1:
        parts.append(f"first={us[0]:.0f}")
    parts.append(f"curr={us[-1]:.0f}")
    if len(us) > 1:
        parts += [
            f"min={s[0]:.0f}",
            f"max={s[-1]:.0f}",
            f"avg={statistics.fmean(us):g}",
            f"std={statistics.pstdev(us):.0f}",
        ]
    parts += [f"p5={percentile(s, 5):.0f}", f"median={percentile(s, 50):.0f}", f"p95={percentile(s, 95):.0f}"]
    return " ".join(parts)


def _garbage() -> bool:
    """Fault injected by the stand-in device: print random bytes instead of the report."""
    if not os.environ.get(GARBAGE_ENV):
        return False
    sys.stdout.write(os.urandom(2048).decode("latin-1"))
    return True


def litert_main(argv: list[str]) -> int:
    fault = _tool_fault()
    unknown = [a for a in argv if a.startswith(_OUTPUT_FLAGS)]
    if fault == "reject" and unknown:
        print("INFO: STARTING!")
        print(f"ERROR: Unconsumed cmdline flags: {' '.join(unknown)}")
        print("Benchmarking failed.")
        return 1
    if fault == "old":
        unknown = [a for a in argv if a.startswith("--output_filepath=")]
        if unknown:
            print(f"WARN: Unconsumed cmdline flags: {' '.join(unknown)}")
        argv = [a for a in argv if a not in unknown]
    args = _litert_args(argv)
    if _garbage():
        return 0
    with simulated_load():
        return _litert_run(args)


def _litert_run(args: argparse.Namespace) -> int:
    print("INFO: STARTING!")
    print("INFO: Log parameter values verbosely: [0]")
    print(f"INFO: Num threads: [{args.num_threads}]")
    print(f"INFO: Graph: [{args.graph}]")
    print(f"INFO: Use xnnpack: [{int(args.use_xnnpack)}]")
    print(f"INFO: Loaded model {args.graph}")
    print("INFO: Initialized TensorFlow Lite runtime.")
    for wanted, name in ((args.use_gpu, "GPU"), (args.use_nnapi, "NNAPI")):
        if wanted:
            print(f"INFO: Created TensorFlow Lite delegate for {name}.")
            print(f"ERROR: {name} is not available on this (stand-in) device.")
            print(f"Failed to apply {name} delegate.")
            print("Benchmarking failed.")
            return 1
    if not os.path.isfile(args.graph):
        print(f"ERROR: Could not open '{args.graph}'.")
        print("Benchmarking failed.")
        return 1
    mem0 = _peak_rss_mb()
    t0 = time.perf_counter()
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=args.graph, num_threads=args.num_threads if args.num_threads > 0 else None)
    interp.allocate_tensors()
    if args.use_xnnpack:
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
        print(_replacing_line(interp))
    detail = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    data = (
        rng.standard_normal(detail["shape"]).astype(detail["dtype"])
        if np.issubdtype(detail["dtype"], np.floating)
        else rng.integers(-128, 127, detail["shape"]).astype(detail["dtype"])
    )
    if args.input_layer_value_files:
        data = _input_from_file(args, detail)
    interp.set_tensor(detail["index"], data)
    init_us = (time.perf_counter() - t0) * 1e6
    mem_init = _peak_rss_mb() - mem0
    print(f"INFO: The input model file size (MB): {os.path.getsize(args.graph) / 1e6:g}")
    print(f"INFO: Initialized session in {init_us / 1000:.3f}ms.")
    warm = _time_runs(interp.invoke, max(1, args.warmup_runs))
    print(
        "INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding "
        "150 seconds."
    )
    print("INFO: " + _stat_line(warm))
    print()
    runs = _time_runs(interp.invoke, max(1, args.num_runs))
    print(
        f"INFO: Running benchmark for at least {args.num_runs} iterations and at least 1 seconds but terminate "
        "if exceeding 150 seconds."
    )
    print("INFO: " + _stat_line(runs))
    print()
    print(
        f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]:.0f}, "
        f"Warmup (avg): {statistics.fmean(warm):g}, Inference (avg): {statistics.fmean(runs):g}"
    )
    print(
        "INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
        "to the actual memory footprint of the model at runtime. Take the information at your discretion."
    )
    print(
        f"INFO: Memory footprint delta from the start of the tool (MB): init={mem_init:g} "
        f"overall={_peak_rss_mb() - mem0:g}"
    )
    if args.report_peak_memory_footprint:
        print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {_peak_rss_mb():g}")
    if args.enable_op_profiling:
        print(_op_profiling_block(interp, statistics.fmean(runs), len(runs)))
    if args.output_filepath and _tool_fault() != "ignore":
        with open(args.output_filepath, "wb") as fh:
            for out in interp.get_output_details():
                y = interp.get_tensor(out["index"])
                if _tool_fault() == "perturb":
                    y = y + (0.5 * (np.arange(y.size) % 2)).reshape(y.shape).astype(y.dtype)
                fh.write(np.ascontiguousarray(y).tobytes())
    return 0


def _original_nodes(interp) -> list[dict]:
    return [o for o in interp._get_ops_details() if o["op_name"] != "DELEGATE"]


def _replacing_line(interp) -> str:
    from ..coverage import _delegated_nodes

    ops = interp._get_ops_details()
    taken, parts = _delegated_nodes(ops)
    total = len(_original_nodes(interp))
    n = len(taken)
    if _tool_fault() == "partial" and total > 1:
        n, parts = total - 1, 2
    return (
        f"INFO: Replacing {n} out of {total} node(s) with delegate (TfLiteXNNPackDelegate) node, "
        f"yielding {parts} partitions for the whole graph."
    )


def _op_profiling_block(interp, mean_us: float, runs: int) -> str:
    """The regular runs' op-profiling tables in the tool's format (module docstring)."""
    nodes = _original_nodes(interp)
    weights = []
    for o in nodes:
        size = sum(int(np.prod(interp._get_tensor_details(int(t), 0)["shape"])) for t in o["outputs"])
        weights.append(max(size, 1))
    total_w = float(sum(weights)) or 1.0
    ms = [mean_us / 1000.0 * w / total_w for w in weights]
    head = "\t\t\t{:>36}\t{:>9}\t{:>9}\t{:>8}\t{:>8}\t{:>10}\t{}\t{}".format(
        "[node type]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]", "[times called]", "[Name]"
    )

    def row(i: int, cdf: float) -> str:
        o = nodes[i]
        pct = 100.0 * ms[i] / sum(ms)
        name = f"[{interp._interpreter.TensorName(int(o['outputs'][0]), 0)}]:{o['index']}"
        return (
            f"\t\t\t{o['op_name']:>36}\t{ms[i]:>9.3f}\t{ms[i]:>9.3f}\t{pct:>7.3f}%\t{cdf:>7.3f}%\t{0:>10.3f}"
            f"\t{1:>9}\t{name}"
        )

    lines = ["INFO: Operator-wise Profiling Info for Regular Benchmark Runs:"]
    lines.append("============================== Run Order ==============================")
    lines.append(head)
    cdf = 0.0
    for i in range(len(nodes)):
        cdf += 100.0 * ms[i] / sum(ms)
        lines.append(row(i, cdf))
    lines += ["", "============================== Top by Computation Time ==============================", head]
    cdf = 0.0
    for i in sorted(range(len(nodes)), key=lambda k: -ms[k])[:10]:
        cdf += 100.0 * ms[i] / sum(ms)
        lines.append(row(i, cdf))
    lines += ["", f"Number of nodes executed: {len(nodes)}"]
    lines.append("============================== Summary by node type ==============================")
    lines.append(
        "\t\t\t{:>36}\t{:>9}\t{:>9}\t{:>10}\t{:>10}\t{:>10}\t{}".format(
            "[Node type]", "[count]", "[avg ms]", "[avg %]", "[cdf %]", "[mem KB]", "[times called]"
        )
    )
    per_type: dict[str, list[float]] = {}
    for o, t in zip(nodes, ms):
        slot = per_type.setdefault(o["op_name"], [0, 0.0])
        slot[0] += 1
        slot[1] += t
    cdf = 0.0
    for op, (count, t) in sorted(per_type.items(), key=lambda kv: -kv[1][1]):
        pct = 100.0 * t / sum(ms)
        cdf += pct
        lines.append(
            f"\t\t\t{op:>36}\t{int(count):>9}\t{t:>9.3f}\t{pct:>9.3f}%\t{cdf:>9.3f}%\t{0:>10.3f}\t{int(count):>9}"
        )
    lines += [
        "",
        f"Timings (microseconds): count={runs} first={mean_us:.0f} curr={mean_us:.0f} avg={mean_us:g}",
        "Memory (bytes): count=0",
        f"{len(nodes)} nodes observed",
        "",
    ]
    return "\n".join(lines)


def _input_from_file(args: argparse.Namespace, detail: dict) -> np.ndarray:
    """The input tensor from ``--input_layer_value_files`` (``name:path``, raw bytes), checked like the tool."""
    names = args.input_layer.split(",") if args.input_layer else []
    name, _, path = args.input_layer_value_files.replace("::", "\0").partition(":")
    name, path = name.replace("\0", ":"), path.replace("\0", ":")
    if name not in names:
        raise SystemExit(f"ERROR: Cannot find the corresponding input_layer name({name}) in --input_layer")
    shape = [int(d) for d in args.input_layer_shape.split(",")]
    if shape != [int(d) for d in detail["shape"]]:
        raise SystemExit(f"ERROR: --input_layer_shape {shape} does not match the model's {list(detail['shape'])}")
    raw = Path(path).read_bytes()
    return np.frombuffer(raw, dtype=detail["dtype"]).reshape(shape).copy()


# ------------------------------------------------------------------------------ onnxruntime_perf_test
def _ort_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="onnxruntime_perf_test")
    p.add_argument("-e", default="cpu")
    p.add_argument("-m", default="duration", choices=["duration", "times"])
    p.add_argument("-r", type=int, default=1000)
    p.add_argument("-t", type=int, default=600)
    p.add_argument("-x", type=int, default=0)
    p.add_argument("-y", type=int, default=0)
    p.add_argument("-i", default="")
    p.add_argument("-o", type=int, default=99)
    p.add_argument("-S", type=int, default=0)
    p.add_argument("-I", action="store_true")
    p.add_argument("-s", action="store_true")
    p.add_argument("-p", default="")  # profile file prefix: onnxruntime's session profiling trace
    p.add_argument("model")
    p.add_argument("result_file", nargs="?")
    return p.parse_args(argv)


def ort_main(argv: list[str]) -> int:
    args = _ort_args(argv)
    if _garbage():
        return 0
    with simulated_load():
        return _ort_run(args)


def _ort_run(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    providers = {"cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider"}
    provider = providers.get(args.e)
    if provider is None or provider not in ort.get_available_providers():
        print(f"{args.e} is not supported in this build. ", file=sys.stderr)
        return 255
    if args.x:
        print(f"Setting intra_op_num_threads to {args.x}")
    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.x
    opts.inter_op_num_threads = args.y or 1
    if args.p:
        opts.enable_profiling = True
        opts.profile_file_prefix = args.p
    try:
        sess = ort.InferenceSession(args.model, opts, providers=[provider])
    except Exception as exc:  # the real tool prints the ORT error and exits non-zero
        print(f"[E:onnxruntime:, inference_session.cc] Exception during initialization: {exc}", file=sys.stderr)
        return 255
    session_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.S)
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    first = _time_runs(lambda: sess.run(None, feeds), 1)[0] / 1000.0  # ms
    runs_s = [us / 1e6 for us in _time_runs(lambda: sess.run(None, feeds), max(1, args.r))]
    total = math.fsum(runs_s)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"Session creation time cost: {session_s:g} s")
    print(f"First inference time cost: {first:.0f} ms")
    print(f"Total inference time cost: {total:g} s")
    print(f"Total inference requests: {len(runs_s)}")
    print(f"Average inference time cost total: {1000 * total / len(runs_s):f} ms")
    print(f"Total inference run time: {total:g} s")
    print(f"Number of inferences per second: {len(runs_s) / total:.3f}")
    print("Avg CPU usage: 100 %")
    print(f"Peak working set size: {peak} bytes")
    if args.s:
        s = sorted(runs_s)
        print(f"Min Latency: {s[0]:g} s")
        print(f"Max Latency: {s[-1]:g} s")
        for q in ("50", "90", "95", "99", "999"):
            print(f"P{q} Latency: {percentile(s, float(q) / (10 if q == '999' else 1)):g} s")
    if args.p:
        sess.end_profiling()
    if args.result_file:
        with open(args.result_file, "w") as fh:
            for k, v in enumerate(runs_s):
                fh.write(f"{args.model},{v:.9f},{v:.9f},{peak},100,{k}\n")
    return 0


# ------------------------------------------------------------------------------------ executor_runner
# ExecuTorch's executor_runner (examples/portable/executor_runner): gflags flags, ET_LOG lines on stderr in the
# posix PAL's format, a REAL run of the .pte in ExecuTorch's Python runtime (inputs all 1.0, as the runner's).
# Faults, written to :func:`executor_runner_fault_file`: ``no-threadpool`` (a pre-0.6 build without --cpu_threads),
# ``missing-op`` (a build without the portable kernel of the program's first non-delegated op), ``no-xnnpack``
# (a build without the XNNPACK backend), ``old`` (a 1.0-1.2 build: no per-iteration lines, no load time).
_ET_FLAGS = ("model_path", "num_executions", "cpu_threads")


def executor_runner_fault_file(root: Path) -> Path:
    """Write a fault name here (the stand-in device's root) to fault the stand-in executor_runner."""
    path = Path(root) / ".standin/faults/executor_runner"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_fake_executor_runner(dest: Path, python: str | None = None) -> Path:
    """An executable stand-in ``executor_runner`` in ``dest`` (shebang ``python``, default this interpreter)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "executor_runner"
    path.write_text(_SCRIPT.format(python=python or sys.executable, entry="executor_runner_main", packages=_packages()))
    path.chmod(0o755)
    return path


def _et_log(level: str, line: int, message: str, t0: float) -> None:
    t = time.perf_counter() - t0
    hours, rest = divmod(t, 3600)
    minutes, seconds = divmod(rest, 60)
    us = int((seconds % 1) * 1e6)
    sys.stderr.write(
        f"{level} {int(hours):02d}:{int(minutes):02d}:{int(seconds):02d}.{us:06d} "
        f"executorch:executor_runner.cpp:{line}] {message}\n"
    )


def executor_runner_main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    root = os.environ.get(ROOT_ENV)
    fault_path = Path(root) / ".standin/faults/executor_runner" if root else None
    fault = fault_path.read_text().strip() if fault_path is not None and fault_path.is_file() else ""
    flags: dict[str, str] = {"model_path": "model.pte", "num_executions": "1", "cpu_threads": "-1"}
    for arg in argv:  # gflags: --name=value (or -name=value); an unknown name stops the program
        name, _, value = arg.lstrip("-").partition("=")
        if name not in _ET_FLAGS or (name == "cpu_threads" and fault == "no-threadpool"):
            sys.stderr.write(f"ERROR: unknown command line flag '{name}'\n")
            return 1
        flags[name] = value
    if _garbage():
        return 0
    with simulated_load():
        return _et_run(flags, fault, t0)


def _et_run(flags: dict[str, str], fault: str, t0: float) -> int:
    threads = int(flags["cpu_threads"])
    if fault != "no-threadpool":
        n = threads if threads > 0 else os.cpu_count() or 1
        _et_log("I", 157, f"Resetting threadpool with num threads = {n}", t0)
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    if fault != "no-threadpool":
        portable_lib._unsafe_reset_threadpool(threads if threads > 0 else os.cpu_count() or 1)
    model = flags["model_path"]
    if not Path(model).is_file():
        _et_log("F", 478, "In function main(), assert failed (loader.ok()): FileDataLoader::from() failed: 0x22", t0)
        return 134
    _et_log("I", 565, f"Model file {model} is loaded.", t0)
    _et_log("I", 575, "Using method forward", t0)
    runtime = Runtime.get()
    if fault == "missing-op":
        _et_log("E", 824, "Missing operator: [0] aten::native_layer_norm.out", t0)
        _et_log(
            "F",
            712,
            "In function main(), assert failed (method.ok()): Loading of method forward failed with status 0x14",
            t0,
        )
        return 134
    if fault == "no-xnnpack":
        _et_log("E", 88, "Backend XnnpackBackend is not registered.", t0)
        _et_log(
            "F",
            712,
            "In function main(), assert failed (method.ok()): Loading of method forward failed with status 0x20",
            t0,
        )
        return 134
    t_load = time.perf_counter()
    program = runtime.load_program(Path(model))
    method = program.load_method("forward")
    meta = program.metadata("forward").input_tensor_meta(0)
    load_ms = (time.perf_counter() - t_load) * 1000
    if fault != "old":
        _et_log("I", 718, f"Model loaded in {load_ms:f} ms.", t0)
    import torch

    x = torch.ones(tuple(int(s) for s in meta.sizes()))
    n = max(1, int(flags["num_executions"]))
    total = 0.0
    out = None
    for i in range(n):
        t = time.perf_counter()
        out = method.execute([x])
        ms = (time.perf_counter() - t) * 1000
        total += ms
        if fault != "old":
            _et_log("I", 880, f"Iteration {i + 1} of {n}: {ms:f} ms", t0)
    _et_log("I", 889, f"Model executed successfully {n} time(s) in {total:f} ms.", t0)
    _et_log("I", 893, "1 outputs: ", t0)
    values = out[0].flatten().tolist() if out else []
    print(f"OutputX 0: tensor(sizes={list(out[0].shape) if out else []}, [")
    print("  " + ", ".join(f"{v:g}" for v in values[:10]) + ",")
    print("])")
    return 0
