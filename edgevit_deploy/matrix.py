"""The support matrix from real runs: every registered model x every target of the table x {fp32, int8}.

Each cell is one real export through :func:`edgevit_deploy.export_api.export` (formulations of the target's
row applied, parity checked by the one validator against PyTorch), at a small input size (the smallest
multiple of the model's size divisor that is at least ``--min-size``, default 64) so that the whole matrix
fits this machine; the size used is written in every row. The columns are the target table's rows
(``converters/table.py``): a registered target is a column too.

Results are written after every cell to ``docs/support_matrix.json`` and ``docs/support_matrix.md``; a
second run resumes (cells already done at the same size are kept; ``--redo`` reruns them). A cell that
crashed the interpreter is found marked ``running`` on resume and recorded as failed. ``--deadline`` stops
starting new cells at a wall-clock time (the rest stay ``not run``), ``--cell-timeout`` bounds one cell.

A model whose seeded random initialisation gives degenerate outputs (the validator's definition: std of
PyTorch's logits on the parity batch below ``DEGENERATE_STD``) is exported with well-conditioned random
weights instead (``random_init="conditioned"``); its cells record it and its row is marked in the markdown.
Every other model keeps its own random init.

The markdown is also copied into README.md between the ``<!-- support-matrix:start -->`` and
``<!-- support-matrix:end -->`` marker lines (only the text between them is replaced).
``scripts/support_matrix.py`` is the command (:func:`main`).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from .converters.base import ExportOptions, Variant
from .converters.table import target_names
from .errors import first_line

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = (Variant.FP32.value, Variant.INT8.value)  # the matrix's variants
STATUSES = ("passed", "parity-failed", "export-failed", "not-executed", "not-run", "running")
_CONDITIONED_MARK = "†"
_MARK = {
    "passed": "✅",
    "parity-failed": "⚠️",
    "export-failed": "❌",
    "not-executed": "➖",
    "not-run": "·",
    "running": "💥",
}


class NoModelMatches(ValueError):
    """``--models`` matched no registered model."""


@dataclass
class Cell:
    model: str
    target: str
    precision: str
    img_size: int
    status: str = "not-run"
    reason: str | None = None
    executor: str | None = None
    max_abs: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None
    top1_agreement: float | None = None
    export_s: float | None = None
    size_bytes: int | None = None
    formulations: dict[str, int] = field(default_factory=dict)
    finished_at: str | None = None
    random_init: str = "default"  # "conditioned": the model's own random init is degenerate
    non_delegated_ops: dict[str, int] = field(default_factory=dict)  # ExecuTorch: ops left to portable kernels
    coverage_xnnpack: str | None = None  # tflite: LiteRT XNNPACK's predicted take, "full (M/M)" / "partial (..)"
    cause: str | None = None  # a failure's measured cause (:func:`failure_cause`), when one is known

    @property
    def key(self) -> str:
        return f"{self.model}|{self.target}|{self.precision}"


class CellTimeout(Exception):
    pass


# ----------------------------------------------------------------------------------------- running
def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc, '')}"[:300]


def _options(precision: str) -> ExportOptions:
    return ExportOptions.for_variant(Variant.parse(precision))


_RANDOM_INIT: dict[tuple[str, int], str] = {}  # (model, size) -> the random init its cells use


def random_init_for(model: str, img_size: int) -> str:
    """``"conditioned"`` when the model's seeded random init gives degenerate outputs on the parity batch
    (the validator's own definition and threshold), else ``"default"``. Cached per process."""
    key = (model, img_size)
    if key not in _RANDOM_INIT:
        import numpy as np

        from .models import ModelConfig, create_model
        from .verify.inputs import parity_inputs
        from .verify.parity import reference_outputs
        from .verify.validator import DEGENERATE_STD

        m = create_model(model, img_size=img_size)
        if m.checkpoint_sha256 != "random-init":  # packaged trained weights: never replaced
            _RANDOM_INIT[key] = "default"
        else:
            cfg = cast(ModelConfig, m.deploy_cfg)  # create_model sets it
            spread = float(np.std(reference_outputs(m, parity_inputs(cfg)).astype(np.float64)))
            _RANDOM_INIT[key] = "conditioned" if spread < DEGENERATE_STD else "default"
            if _RANDOM_INIT[key] != "default":
                log.info(
                    "%s: random-init logits are degenerate (std %.1e < %.0e): well-conditioned random weights",
                    model,
                    spread,
                    DEGENERATE_STD,
                )
    return _RANDOM_INIT[key]


def run_cell(cell: Cell, work: Path, calib_size: int = 16) -> Cell:
    """Export one model to one target at one precision and record what happened."""
    from .export_api import export

    out_dir = work / f"{cell.model}-{cell.target}-{cell.precision}"
    t0 = time.perf_counter()
    try:
        cell.random_init = random_init_for(cell.model, cell.img_size)
        result = export(
            cell.model,
            cell.target,
            out_dir,
            options=_options(cell.precision),
            img_size=cell.img_size,
            verify=True,
            calib_size=calib_size,
            random_init=cell.random_init,
        )
    except Exception as exc:  # every failure is a row of the matrix, never the end of the run
        log.debug("%s failed:\n%s", cell.key, traceback.format_exc())
        cell.status, cell.reason = "export-failed", _one_line(exc)
        cell.export_s = round(time.perf_counter() - t0, 1)
        return cell
    art = result.artifacts[0]
    cell.export_s = art.export_s
    cell.size_bytes = art.size_bytes
    cell.formulations = dict(art.formulation)
    notes = dict(getattr(art, "notes", None) or {})
    if art.quantization:  # an int8 program's notes travel in its quantization details
        notes = {**notes, **(art.quantization.get("quantization") or {})}
    cell.non_delegated_ops = dict(notes.get("non_delegated_ops") or {})
    if art.error is not None:
        cell.status, cell.reason = "export-failed", first_line(art.error, "")[:300]
        return cell
    if cell.target == "tflite" and art.path is not None:
        from .device_bench.coverage import matrix_xnnpack_cell

        cell.coverage_xnnpack = matrix_xnnpack_cell(art.path)
    report = art.parity
    _fill_parity(cell, report)
    if not report.executed:
        cell.status, cell.reason = "not-executed", report.reason
    elif report.passed:
        cell.status, cell.reason = "passed", None
    else:
        cell.status, cell.reason = "parity-failed", (report.reason or "; ".join(report.failures))[:300]
        cell.cause = failure_cause(cell)
    return cell


_FLOAT_LOGITS: dict[tuple[str, int, str], Any] = {}


def float_logits(model: str, img_size: int, random_init: str = "default") -> Any:
    """The float model's logits (the cell's weights: its random init) on the held-out views the int8
    parity check runs (built-in calibration, as the matrix's int8 cells)."""
    key = (model, img_size, random_init)
    if key not in _FLOAT_LOGITS:
        from .export_common import apply_random_init
        from .models import ModelConfig, create_model
        from .quantize.calibration import builtin_held_out
        from .verify.parity import reference_outputs

        m = create_model(model, img_size=img_size)
        cfg = cast(ModelConfig, m.deploy_cfg)
        apply_random_init(m, cfg, str(m.checkpoint_sha256), random_init)
        _FLOAT_LOGITS[key] = reference_outputs(m, builtin_held_out(cfg).data).astype("float64")
    return _FLOAT_LOGITS[key]


def output_quantization_ceiling(logits: Any, floor: float) -> float:
    """The SQNR (dB) of the logits after int8 output quantization ALONE, on their own min/max range with the
    scale floored at ``floor``: what is left when the final tensor is quantized by such a quantizer, however
    exact everything before it (a model whose output is a float combination of quantized tensors, such as
    LeViT's mean of two heads, can land a little above it)."""
    import numpy as np

    lo, hi = min(float(logits.min()), 0.0), max(float(logits.max()), 0.0)
    scale = max((hi - lo) / 255.0, floor)
    zero = np.round(-lo / scale) - 128
    q = np.clip(np.round(logits / scale) + zero, -128, 127)
    noise = float(np.sum((logits - (q - zero) * scale) ** 2))
    signal = float(np.sum(logits**2))
    return float("inf") if noise == 0 else 10.0 * float(np.log10(signal / noise)) if signal > 0 else 0.0


def failure_cause(cell: Cell) -> str | None:
    """A measured cause of an int8 parity failure, or ``None`` when none of the known ones applies.

    Known: the target's quantizer floors every activation scale (``activation_floor``: the PT2E quantizers'
    observers use ``eps`` = 2**-12) and the float logits are so small that quantizing the output alone, on
    its best range, already falls below the policy's int8 SQNR bar: seeded random weights whose activations
    shrink stage after stage (EfficientNet-B0's fall ~5x per stage), not a conversion fault."""
    if cell.precision != Variant.INT8.value or cell.status != "parity-failed":
        return None
    import numpy as np

    from .converters.table import get_spec
    from .verify.policy import BARS

    floor_of = getattr(get_spec(cell.target).load_quantizer(), "activation_floor", None)  # a row may lack it
    floor = floor_of() if floor_of is not None else None
    bar = BARS[Variant.INT8].sqnr_db
    if floor is None or bar is None:
        return None
    logits = float_logits(cell.model, cell.img_size, cell.random_init)
    ceiling = output_quantization_ceiling(logits, floor)
    if ceiling >= bar:
        return None
    peak = float(np.abs(logits).max())
    return (
        f"the float logits never exceed {peak:.1e} (held-out views), {peak / floor:.2f} steps of the smallest "
        f"activation scale {cell.target}'s int8 quantizer allows ({floor:.1e}): int8 output quantization "
        f"at that scale alone leaves {max(ceiling, 0.0):.1f} dB SQNR (bar {bar:g} dB). The seeded random "
        "weights' activations shrink through the network; not a conversion fault (ONNX's calibrator has no floor)"
    )


def _fill_parity(cell: Cell, report: Any) -> None:
    for name in ("executor", "max_abs", "cosine", "sqnr_db", "top1_agreement"):
        value = getattr(report, name, None)
        if isinstance(value, float) and value != value:  # NaN
            value = None
        setattr(cell, name, value)


def _alarm(_signum, _frame):
    raise CellTimeout("the cell exceeded --cell-timeout")


def run_cell_bounded(cell: Cell, work: Path, timeout_s: int, calib_size: int) -> Cell:
    cell.status, cell.reason = "not-run", None
    if timeout_s > 0 and hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(timeout_s)
    try:
        return run_cell(cell, work, calib_size)
    finally:
        if timeout_s > 0 and hasattr(signal, "SIGALRM"):
            signal.alarm(0)


# ------------------------------------------------------------------------------------------ planning
def model_sizes(patterns: list[str], min_size: int) -> dict[str, int]:
    from .analysis import small_img_size
    from .models import get_model_config, list_models

    names = [n for n in list_models() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if not names:
        raise NoModelMatches(f"no registered model matches {patterns}; see `edgevit-export --list-models`")
    return {n: small_img_size(get_model_config(n), min_size) for n in names}


def plan(
    sizes: dict[str, int], targets: list[str], precisions: list[str], interleave: bool = False
) -> Iterator[tuple[str, str, str]]:
    """Cheap cells first: fp32 before int8, light models first; ONNX before TFLite before Core ML (or, with
    ``interleave``, every target of one model before the next model)."""
    from .models import get_model_config

    by_cost = sorted(sizes, key=lambda n: ((get_model_config(n).gmacs or 1e9) * (sizes[n] / 224) ** 2, n))
    for precision in precisions:
        if interleave:
            yield from ((name, target, precision) for name in by_cost for target in targets)
        else:
            yield from ((name, target, precision) for target in targets for name in by_cost)


# -------------------------------------------------------------------------------------------- output
def load_cells(path: Path) -> dict[str, Cell]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    cells = {}
    for row in data.get("cells", []):
        cell = Cell(**{k: v for k, v in row.items() if k in Cell.__dataclass_fields__})
        cells[cell.key] = cell
    return cells


def environment() -> dict[str, str]:
    import platform
    from importlib import metadata

    env = {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system()}
    for pkg in ("torch", "timm", "onnxruntime", "litert-torch", "ai-edge-litert", "coremltools", "executorch"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env


def write_outputs(
    cells: dict[str, Cell],
    json_path: Path,
    md_path: Path,
    command: str,
    mine: set[str] | None = None,
    readme: Path | None = None,
) -> None:
    """Write JSON and markdown (and the README's copy when ``readme`` is given). Cells this process did
    not run (not in ``mine``) are re-read from disk under a lock first, so that several runs (say fp32 and
    int8) can fill one matrix side by side."""
    import fcntl

    from .models import get_model_config

    digest = hashlib.sha1(str(json_path.resolve()).encode()).hexdigest()[:12]  # one lock per matrix file
    lock_path = Path(tempfile.gettempdir()) / f"support_matrix-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        commands = {command}
        if json_path.is_file():
            previous = json.loads(json_path.read_text())
            commands.update(previous.get("commands", []))
            commands.update([previous["command"]] if previous.get("command") else [])
        if mine is not None:
            for key, cell in load_cells(json_path).items():
                ours = cells.get(key)
                newer = (
                    ours is not None and cell.finished_at and ours.finished_at and cell.finished_at > ours.finished_at
                )
                if key not in mine or newer:  # another run's cell, or a later rerun of ours
                    cells[key] = cell
        payload = {
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commands": sorted(commands),
            "environment": environment(),
            "statuses": list(STATUSES),
            "cells": [asdict(c) for c in sorted(cells.values(), key=lambda c: c.key)],
        }
        tmp = json_path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
        os.replace(tmp, json_path)
        write_markdown(payload, md_path, get_model_config, readme)


README_START = "<!-- support-matrix:start -->"
README_END = "<!-- support-matrix:end -->"


class MarkersMissing(RuntimeError):
    pass


def matrix_body(markdown: str) -> str:
    """The part of the generated markdown that goes into the README: from the legend line on (the title,
    the generation details and the commands stay in docs/support_matrix.md), reason links included."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("✅ passed")), 0)
    body = ["#" + line if line.startswith("## ") else line for line in lines[start:]]  # under the README's "##"
    return "\n".join(body).strip() + "\n"


def replace_between_markers(text: str, body: str, start: str = README_START, end: str = README_END) -> str:
    """``text`` with everything between the ``start`` and ``end`` marker lines replaced by ``body``."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i or text.count(start) != 1 or text.count(end) != 1:
        raise MarkersMissing(
            f"README.md needs exactly one {start!r} line followed by one {end!r} line around "
            "the support matrix; add them where the matrix goes"
        )
    head = text[: i + len(start)]
    return head + "\n\n" + body.strip() + "\n\n" + text[j:]


def update_readme(markdown: str, readme: Path) -> bool:
    """Copy the matrix into ``readme`` between the markers; True when the file changed."""
    text = readme.read_text()
    new = replace_between_markers(text, matrix_body(markdown))
    if new != text:
        readme.write_text(new)
    return new != text


def write_markdown(payload: dict[str, Any], md_path: Path, get_config, readme: Path | None) -> str:
    """Write the markdown matrix and its README copy (``readme=None``: no README)."""
    markdown = render_markdown(payload, get_config)
    md_path.write_text(markdown)
    if readme is not None:
        update_readme(markdown, readme)
    return markdown


def _figure(cell: dict[str, Any]) -> str:
    if cell["precision"] == "fp32" and cell.get("max_abs") is not None:
        return f"{cell['max_abs']:.1e}"
    if cell.get("sqnr_db") is not None:
        return f"{cell['sqnr_db']:.0f} dB"
    return ""


def _coverage_section(cells: list[dict[str, Any]], models: list[str]) -> list[str]:
    """The ``coverage_xnnpack`` column (tflite cells that have it): LiteRT XNNPACK's predicted take of the graph,
    per model and precision (``edgevit-bench coverage``); nothing when no cell has it."""
    have = [c for c in cells if c.get("coverage_xnnpack")]
    if not have:
        return []
    precisions = [p for p in PRECISIONS if any(c["precision"] == p for c in have)]
    index = {(c["model"], c["precision"]): c["coverage_xnnpack"] for c in have}
    lines = [
        "## LiteRT XNNPACK coverage (predicted)",
        "",
        "Nodes of each tflite cell the XNNPACK delegate takes on this host (`edgevit-bench coverage`; the "
        "phone's LiteRT build decides: a prediction).",
        "",
        "| model | " + " | ".join(f"coverage_xnnpack {p}" for p in precisions) + " |",
        "|---|" + "---|" * len(precisions),
    ]
    for name in models:
        if any((name, p) in index for p in precisions):
            lines.append(f"| {name} | " + " | ".join(index.get((name, p), "") for p in precisions) + " |")
    return [*lines, ""]


def render_markdown(payload: dict[str, Any], get_config) -> str:
    cells = payload["cells"]
    models = sorted({c["model"] for c in cells}, key=lambda n: (get_config(n).family, n))
    columns = [(t, p) for t in target_names() for p in PRECISIONS]
    index = {(c["model"], c["target"], c["precision"]): c for c in cells}
    reasons: dict[str, int] = {}
    lines = [
        "# Support matrix",
        "",
        "Generated by `scripts/support_matrix.py` from real runs (do not edit by hand): each cell is an "
        "export through `edgevit_deploy.export` with the target's formulations, checked for parity against "
        "PyTorch by the one validator (fp32: max abs error shown; int8: SQNR vs PyTorch fp32), random "
        "weights, at the input size in the `size` column (the smallest multiple of the model's size divisor "
        "that is at least 64, to fit this machine). int8 is static int8 calibrated on views of the built-in "
        "sample photos (`--calib-size`, see the command).",
        "",
        f"Generated {payload['generated_at']} on "
        + ", ".join(f"{k} {v}" for k, v in payload["environment"].items())
        + ", by: "
        + "; ".join(f"`{c}`" for c in payload.get("commands") or [payload.get("command", "")])
        + ".",
        "",
        "✅ passed · ⚠️ exported, parity failed · ❌ export failed · ➖ exported, not executable on this host · "
        "· not run yet · 💥 crashed the process. Numbers in brackets point to the reasons below.",
        "",
        "| model | family | size | " + " | ".join(f"{t} {p}" for t, p in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    counts = {s: 0 for s in STATUSES}
    conditioned = {c["model"] for c in cells if c.get("random_init", "default") == "conditioned"}
    for name in models:
        row = [f"{name} {_CONDITIONED_MARK}" if name in conditioned else name, get_config(name).family]
        size = next((index[k]["img_size"] for k in index if k[0] == name), "")
        row.append(str(size))
        for t, p in columns:
            c = index.get((name, t, p))
            if c is None:
                row.append(_MARK["not-run"])
                counts["not-run"] += 1
                continue
            counts[c["status"]] = counts.get(c["status"], 0) + 1
            text = f"{_MARK.get(c['status'], '?')} {_figure(c)}".strip()
            if c["status"] not in ("passed", "not-run") and c.get("reason"):
                why = c["reason"] + (f". Cause: {c['cause']}" if c.get("cause") else "")
                n = reasons.setdefault(why, len(reasons) + 1)
                text += f" [{n}]"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v), ""]
    lines += _coverage_section(cells, models)
    if conditioned:
        from .verify.validator import DEGENERATE_STD

        lines += [
            f"{_CONDITIONED_MARK} well-conditioned random weights: the model's own seeded random init gives "
            f"degenerate logits (std below the validator's {DEGENERATE_STD:g} on the parity batch), which no "
            'comparison can judge, so these cells use `random_init="conditioned"` '
            "(`edgevit-export --random-init conditioned`: random norm statistics and layer scales, logits "
            "of unit spread). Same architecture, other random weights.",
            "",
        ]
    if reasons:
        lines += ["## Reasons", ""]
        lines += [f"{n}. {r.replace('|', '/')}" for r, n in reasons.items()]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None, default_out: Path = Path("support_matrix.json")) -> argparse.Namespace:
    targets = target_names()
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--models", default="*", help="comma-separated glob patterns of registered names")
    ap.add_argument("--targets", default=",".join(targets))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--min-size", type=int, default=64, help="smallest input side to export at")
    ap.add_argument("--out", type=Path, default=default_out)
    ap.add_argument("--work-dir", type=Path, default=None, help="where artifacts go (default: a temp dir)")
    ap.add_argument("--redo", action="store_true", help="rerun cells already in the JSON")
    ap.add_argument("--deadline", default=None, help="HH:MM (UTC): start no new cell after it")
    ap.add_argument("--cell-timeout", type=int, default=900, help="seconds one cell may take (0: none)")
    ap.add_argument(
        "--calib-size",
        type=int,
        default=16,
        help="int8 calibration images (built-in sample-photo views); small to fit this machine",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="run every target of a model before the next model (default: one target at a time)",
    )
    ap.add_argument("--render-only", action="store_true", help="rewrite the markdown from the JSON, run nothing")
    ap.add_argument(
        "--no-readme",
        dest="readme",
        action="store_false",
        help="do not copy the matrix into README.md (between its support-matrix markers)",
    )
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="add the known causes of the failed cells already in the JSON (runs float models only), then render",
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    for name, allowed in (("targets", tuple(targets)), ("precisions", PRECISIONS)):
        values = [v.strip() for v in getattr(args, name).split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            ap.error(f"--{name}: {', '.join(bad) or 'nothing given'}; choose from {', '.join(allowed)}")
        setattr(args, name, values)
    args.models = [p.strip() for p in args.models.split(",") if p.strip()]
    return args


def _deadline_ts(text: str | None) -> float | None:
    if not text:
        return None
    now = datetime.now(timezone.utc)
    hh, mm = (int(v) for v in text.split(":"))
    return now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()


def main(
    argv: list[str] | None = None, default_out: Path = Path("support_matrix.json"), readme: Path | None = None
) -> int:
    """The ``scripts/support_matrix.py`` command: ``default_out`` is the repository's matrix, ``readme`` the
    README that carries a copy of it (only when ``--out`` is ``default_out``)."""
    args = parse_args(argv, default_out)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for noisy in ("coremltools", "absl", "jax", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    json_path, md_path = args.out, args.out.with_suffix(".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    command = "python scripts/support_matrix.py " + " ".join(argv if argv is not None else sys.argv[1:])
    # the README shows the repository's own matrix only
    if not (args.readme and json_path.resolve() == default_out.resolve()):
        readme = None
    cells = load_cells(json_path)
    if args.diagnose:  # known causes of failed cells already in the JSON (float models only), then render
        found = set()
        for key, cell in cells.items():
            if cell.cause is None and (cause := failure_cause(cell)) is not None:
                cell.cause = cause
                found.add(key)
                log.info("%s: %s", key, cause)
        write_outputs(cells, json_path, md_path, command, found, readme)
        return 0
    if args.render_only:
        from .models import get_model_config

        payload = json.loads(json_path.read_text())
        write_markdown(payload, md_path, get_model_config, readme)
        return 0
    for cell in cells.values():
        if cell.status == "running":
            cell.status, cell.reason = "export-failed", "the process died during this cell (crash or kill)"
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sizes = model_sizes(args.models, args.min_size)
    except NoModelMatches as exc:
        raise SystemExit(str(exc)) from None
    deadline = _deadline_ts(args.deadline)
    work_ctx = tempfile.TemporaryDirectory(prefix="support-matrix-") if args.work_dir is None else None
    work = Path(work_ctx.name) if work_ctx else args.work_dir
    mine: set[str] = set()
    try:
        for name, target, precision in plan(sizes, args.targets, args.precisions, args.interleave):
            key = f"{name}|{target}|{precision}"
            old = load_cells(json_path).get(key, cells.get(key))
            if old and old.img_size == sizes[name] and old.status != "not-run" and not args.redo:
                continue
            cell = Cell(name, target, precision, sizes[name])
            cells[key] = cell
            mine.add(key)
            if deadline is not None and time.time() > deadline:
                cell.reason = "deadline reached before this cell"
                continue
            cell.status = "running"
            write_outputs(cells, json_path, md_path, command, mine, readme)
            log.info("%s at %d ...", key, cell.img_size)
            try:
                run_cell_bounded(cell, work, args.cell_timeout, args.calib_size)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: this cell is not run, the finished ones stay
                cell.status, cell.reason = "not-run", "interrupted during this cell; rerun to fill it"
                raise
            cell.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            log.info("%s: %s %s (%.0f s)", key, cell.status, cell.reason or "", cell.export_s or 0)
            write_outputs(cells, json_path, md_path, command, mine, readme)
            _clean(work)
    finally:
        write_outputs(cells, json_path, md_path, command, mine, readme)
        if work_ctx:
            work_ctx.cleanup()
    return 0


def _terminate(_signum, _frame):
    raise KeyboardInterrupt("SIGTERM")


def _clean(work: Path) -> None:
    import shutil

    for child in work.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
