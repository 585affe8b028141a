"""Where a LiteRT artifact's host time goes, per kernel: a ``perf`` sampling profile of a process that only runs it.

LiteRT's Python interpreter has no op profiler (``benchmark_model --enable_op_profiling`` is a C++ tool that is not
on PyPI). Its kernels keep their symbol names in ai-edge-litert's shared library, though: XNNPACK's micro-kernels
(``xnn_qs8_qc8w_gemm_..._avx512amx`` is an int8 GEMM, ``xnn_f32_qs8_vcvt_...`` a QUANTIZE) and LiteRT's built-in
ops (``tflite::reference_ops::BatchMatMul<signed char, ...>`` is an int8 BATCH_MATMUL on the reference kernel,
outside XNNPACK). So a sampling profile of a child process, recorded only while it runs the model (``perf record
--control``: enabled after the warm-up), attributes the time to kernels, and the kernels fall into the groups that
decide whether int8 pays for itself: int8 conv / matmul, float conv / matmul, (de)quantization, XNNPACK's other ops,
LiteRT's built-in kernels.

Linux with ``perf`` (Debian: ``linux-perf``) and ``kernel.perf_event_paranoid <= 2`` (a user may sample its own
processes). ``benchmarks/quant_speed.py --profile`` prints it for every LiteRT artifact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .profiles import finish, op_row


class KernelGroup(str, Enum):
    INT8_MATMUL = "XNNPACK int8 conv / matmul"
    FLOAT_MATMUL = "XNNPACK float conv / matmul"
    CONVERT = "XNNPACK quantize / dequantize"
    XNNPACK_OTHER = "XNNPACK other ops"  # elementwise, reductions, transposes, softmax, lookup tables
    BUILTIN = "LiteRT built-in kernels"  # ops outside the XNNPACK delegate
    OTHER = "other"  # Python, copies in and out, the runtime itself


class KernelProfileError(RuntimeError):
    """The profile could not be taken (no perf, not permitted, the child failed): one line saying why."""


_XNN_MATMUL = re.compile(r"_(gemm|igemm|dwconv|conv_hwc|ppmm|spmm)")
_XNN_INT8 = ("xnn_qs8", "xnn_qu8", "xnn_qd8", "xnn_qc8", "xnn_qp8")
_XNN_FLOAT = ("xnn_f32", "xnn_f16", "xnn_bf16", "xnn_pf32", "xnn_pf16")
_BUILTIN = ("tflite::", "ruy::", "Eigen::", "gemmlowp::")


def classify(symbol: str) -> KernelGroup:
    """The group of one sampled function (a demangled symbol name)."""
    s = symbol.strip()
    if s.startswith("xnn_"):
        if "_vcvt_" in s and s.startswith(_XNN_INT8 + ("xnn_f32_q", "xnn_f16_q")):
            return KernelGroup.CONVERT
        if _XNN_MATMUL.search(s) and "packw" not in s and "pack_" not in s:
            if s.startswith(_XNN_INT8):
                return KernelGroup.INT8_MATMUL
            if s.startswith(_XNN_FLOAT):
                return KernelGroup.FLOAT_MATMUL
        return KernelGroup.XNNPACK_OTHER
    if "xnnpack::" in s or s.startswith("pthreadpool") or "xnn" in s:  # glue, lambdas, mangled helpers
        return KernelGroup.XNNPACK_OTHER
    if s.startswith(_BUILTIN) or re.match(r"^(void |[\w:<>, ]+ )?tflite::", s):
        return KernelGroup.BUILTIN
    return KernelGroup.OTHER


_REPORT_LINE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)%\s+\[[.kgHu]\]\s+(.+?)\s*$")


def parse_report(text: str) -> list[tuple[float, str]]:
    """``perf report --stdio --no-children --sort symbol`` output as (percent, symbol) rows, largest first."""
    rows = []
    for line in text.splitlines():
        m = _REPORT_LINE.match(line)
        if m:  # perf pads the symbol column and may add more ("-   -"): a symbol never holds two spaces in a row
            rows.append((float(m.group(1)), m.group(2).split("  ")[0].strip()))
    return sorted(rows, key=lambda r: -r[0])


@dataclass
class KernelProfile:
    ms_per_run: float  # the child's own mean while it was being sampled
    runs: int
    groups: dict[KernelGroup, float] = field(default_factory=dict)  # ms per run
    rows: list[dict] = field(default_factory=list)  # op_profile rows: node = kernel symbol, op = its group

    @classmethod
    def from_report(cls, report: list[tuple[float, str]], ms_per_run: float, runs: int) -> KernelProfile:
        total = sum(p for p, _ in report) or 1.0
        groups: dict[KernelGroup, float] = defaultdict(float)
        rows = []
        for pct, sym in report:
            ms = ms_per_run * pct / total
            group = classify(sym)
            groups[group] += ms
            rows.append(op_row(sym, group.value, ms))
        return cls(ms_per_run, runs, {g: groups.get(g, 0.0) for g in KernelGroup}, finish(rows))

    def lines(self, top: int = 8) -> list[str]:
        out = [f"kernels (perf sampling, {self.runs} runs at {self.ms_per_run:.2f} ms):"]
        out += [
            f"  {g.value:<34} {ms:6.2f} ms {100 * ms / max(self.ms_per_run, 1e-9):5.1f} %"
            for g, ms in self.groups.items()
            if ms > 0
        ]
        out.append("  top kernels:")
        out += [f"    {r['ms']:6.2f} ms  {_short(r['node'])}  [{r['op']}]" for r in self.rows[:top]]
        return out


def _short(symbol: str, width: int = 96) -> str:
    return symbol if len(symbol) <= width else symbol[: width - 3] + "..."


def profile_litert(path: str | Path, threads: int = 1, runs: int = 200, warmup: int = 10) -> KernelProfile:
    """Sample the kernels of ``runs`` inferences of a .tflite on the host runtime (XNNPACK delegate, as the bench)."""
    perf = shutil.which("perf")
    if perf is None:
        raise KernelProfileError("perf not found: install linux-perf (Debian) to split LiteRT's time by kernel")
    path = Path(path)
    if not path.is_file():
        raise KernelProfileError(f"{path}: no such file")
    with tempfile.TemporaryDirectory(prefix="litert-kernels-") as tmp:
        ctl, ack, data, out = (Path(tmp) / n for n in ("ctl", "ack", "perf.data", "child.txt"))
        os.mkfifo(ctl)
        os.mkfifo(ack)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # no BLAS threads spinning beside it
        child = [sys.executable, "-m", __name__, str(path), str(threads), str(runs), str(warmup)]
        cmd = [
            perf, "record", "-q", "-F", "4000", "-D", "-1", "--control", f"fifo:{ctl},{ack}", "-o", str(data), "--",
            *child, str(ctl), str(ack), str(out),
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        except subprocess.TimeoutExpired as exc:
            raise KernelProfileError(f"perf record did not finish in {exc.timeout:.0f} s") from None
        if proc.returncode != 0 or not out.is_file():
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise KernelProfileError(f"perf record failed (exit {proc.returncode}): {err[:200]}")
        ms_per_run = float(out.read_text().strip())
        rep = subprocess.run(
            [perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "symbol", "-q"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        rows = parse_report(rep.stdout)
        if rep.returncode != 0 or not rows:
            err = (rep.stderr.strip().splitlines() or ["no samples"])[-1]
            raise KernelProfileError(f"perf report gave no samples: {err[:200]}")
    return KernelProfile.from_report(rows, ms_per_run, runs)


def _child(argv: list[str]) -> int:
    """Run by :func:`profile_litert` under ``perf record -D -1``: warm up, enable sampling, run, disable."""
    import numpy as np

    from ..verify.runtimes import LiteRtHost

    path, threads, runs, warmup, ctl, ack, out = argv
    session = LiteRtHost().load(Path(path), threads=int(threads))
    shape = [int(d) for d in session.inp["shape"]]  # type: ignore[attr-defined]
    if session.nhwc:  # type: ignore[attr-defined]
        shape = [shape[0], shape[3], shape[1], shape[2]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(int(warmup)):
        session.run(x)
    with open(ctl, "w") as c, open(ack) as a:

        def command(word: str) -> None:
            c.write(word + "\n")
            c.flush()
            a.readline()

        command("enable")
        t0 = time.perf_counter()
        for _ in range(int(runs)):
            session.run(x)
        elapsed = time.perf_counter() - t0
        command("disable")
    Path(out).write_text(f"{1e3 * elapsed / int(runs)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
