"""PNG plots (matplotlib, Agg): latency per model and format, latency vs parameters, and accuracy vs
latency / energy Pareto fronts with the EdgeViT paper's published rows beside the measured ones.

Point labels never overlap (``labels.place_labels``), and rows of different machines are told apart by
marker and legend entry: this host (circles), measured phones (triangles), the paper's Snapdragon 888
rows (grey squares); the legend sits outside the axes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..._lazy import require
from .labels import PointLabel, place_labels
from .reference import paper_table, param_count, published_top1
from .rows import label

log = logging.getLogger(__name__)


def _plt() -> Any:
    mpl = require("matplotlib", "bench")
    mpl.use("Agg")
    return require("matplotlib.pyplot", "bench")


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and r.get("median_ms") is not None]


#: marker of each kind of machine a row was measured on (the paper's rows: PAPER_MARKER)
DEVICE_MARKERS = {"local": "o", "adb": "^", "ios": "D"}
PAPER_MARKER = "s"


def device_kind(row: dict[str, Any]) -> str:
    """``local`` (this host), ``adb`` or ``ios`` (a phone), from the row's device id."""
    device = str(row.get("device") or "local")
    scheme = device.split(":", 1)[0]
    if device == "local":
        return "local"
    return "adb" if scheme.startswith("adb") else scheme


def _marker(row: dict[str, Any]) -> str:
    return DEVICE_MARKERS.get(device_kind(row), "v")


def _where(row: dict[str, Any]) -> str:
    """The legend's name of the machine: ``this host`` or ``phone adb:SERIAL``."""
    return "this host" if device_kind(row) == "local" else f"phone {row['device']}"


def _outside_legend(ax: Any) -> Any:
    """The legend to the right of the axes (never over a point or a label); None when nothing is labelled."""
    if not ax.get_legend_handles_labels()[0]:
        return None
    return ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both cost (x, lower is better) and accuracy (y, higher is better),
    sorted by cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def latency_per_model(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    ok = _ok(rows)
    multi_device = len({r["device"] for r in ok}) > 1
    models = sorted({r["model"] for r in ok})
    series = sorted({label(r, multi_device) for r in ok})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(models) * max(1, len(series)) ** 0.5 + 3), 4.5))
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for j, model in enumerate(models):
            match = [r for r in ok if r["model"] == model and label(r, multi_device) == name]
            if match:
                r = match[0]
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(r["median_ms"])
                lo.append(max(0.0, r["median_ms"] - (r.get("min_ms") or r["median_ms"])))
                hi.append(max(0.0, (r.get("p90_ms") or r["median_ms"]) - r["median_ms"]))
        ax.bar(xs, ys, width=width, label=name, yerr=[lo, hi], capsize=2)
    ax.set_xticks(range(len(models)), models, rotation=20, ha="right")
    medians = [r["median_ms"] for r in ok if r["median_ms"] > 0]
    if medians and max(medians) / min(medians) > 20:
        ax.set_yscale("log")  # one slow configuration would flatten all the others
    ax.set_ylabel("latency, ms (median; whiskers min..p90)")
    ax.set_title("Latency per model and format")
    ax.legend(fontsize="small")
    return _save(fig, plt, path)


def latency_vs_params(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    ok = _ok(rows)
    fig, ax = plt.subplots(figsize=(9.0, 5.0))
    labels: list[PointLabel] = []
    series = sorted({(_where(r), label(r)) for r in ok}, key=lambda s: (s[0] != "this host", s))
    for where, name in series:
        pick = [r for r in ok if _where(r) == where and label(r) == name]
        counts = [(param_count(r["model"]), float(r["median_ms"]), str(r["model"])) for r in pick]
        pts = [(p / 1e6, ms, m) for p, ms, m in counts if p]
        if pts:
            dots = ax.scatter(
                [p[0] for p in pts], [p[1] for p in pts], marker=_marker(pick[0]), label=f"{where}: {name}"
            )
            color = dots.get_facecolor()[0]
            labels.extend(PointLabel(x, y, m, color=_darker(color)) for x, y, m in pts)
    ax.set_xlabel("parameters, millions")
    ax.set_ylabel("latency, ms (median)")
    ax.set_title("Latency vs parameters")
    return _save_labelled(fig, plt, ax, labels, path)


def _darker(rgba: Any) -> Any:
    """A label's colour: its series' colour, darkened to stay readable on white."""
    return tuple(0.6 * float(c) for c in rgba[:3])


def _save_labelled(fig: Any, plt: Any, ax: Any, labels: Sequence[PointLabel], path: Path) -> Path:
    """Legend outside, final layout, then the labels placed without collisions, then the PNG."""
    ax.margins(0.12)
    legend = _outside_legend(ax)
    fig.tight_layout()
    place_labels(ax, labels, avoid=[legend.get_window_extent()] if legend is not None else [])
    return _save(fig, plt, path, layout=False)


def top1_of(row: dict[str, Any]) -> float | None:
    """The top-1 (%) a Pareto plot uses for a measured row: ``edgevit-eval``'s where the row carries it
    (``measured_top1``), else the architecture's published figure."""
    if row.get("measured_top1") is not None:
        return float(row["measured_top1"])
    return published_top1(row["model"])


def _pareto_plot(
    rows: Sequence[dict[str, Any]], path: Path, metric: str, paper_key: str, xlabel: str, title: str
) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    labels: list[PointLabel] = []
    paper = [r for r in paper_table()["rows"] if r.get(paper_key) is not None]
    px = [(float(r[paper_key]), float(r["top1"]), r["model"]) for r in paper]
    ax.scatter(
        [p[0] for p in px],
        [p[1] for p in px],
        marker=PAPER_MARKER,
        color="0.6",
        label="EdgeViT paper: Snapdragon 888 phone CPU (published)",
    )
    labels.extend(PointLabel(x, y, m, color="0.4", fontsize=6.0) for x, y, m in px)
    front = pareto_front([(x, y) for x, y, _ in px])
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="0.6", linestyle="--")
    measured: list[tuple[float, float, dict[str, Any]]] = []
    for r in rows:
        top1 = top1_of(r) if r.get("status") == "ok" and r.get(metric) is not None else None
        if top1 is not None:
            measured.append((float(r[metric]), top1, r))
    series = sorted({(_where(r), label(r)) for _, _, r in measured}, key=lambda s: (s[0] != "this host", s))
    for where, name in series:
        pts = [(x, y, r) for x, y, r in measured if _where(r) == where and label(r) == name]
        dots = ax.scatter(
            [p[0] for p in pts], [p[1] for p in pts], marker=_marker(pts[0][2]), label=f"measured on {where}: {name}"
        )
        mine = [(x, y) for x, y, r in pts if r.get("measured_top1") is not None]
        if mine:  # top-1 measured by edgevit-eval: a star around the dot
            ax.scatter(
                [p[0] for p in mine],
                [p[1] for p in mine],
                marker="*",
                s=140,
                facecolors="none",
                edgecolors=dots.get_facecolor()[:1],
            )
        color = _darker(dots.get_facecolor()[0])
        for x, y, r in pts:
            note = f" (top-1 measured on {r['measured_top1_on']})" if r.get("measured_top1") is not None else ""
            labels.append(PointLabel(x, y, r["model"] + note, color=color))
    if measured:
        mfront = pareto_front([(x, y) for x, y, _ in measured])
        ax.step([p[0] for p in mfront], [p[1] for p in mfront], where="post", color="C3", linewidth=1)
    else:
        title += (
            "\n(no measured rows with a published top-1"
            + (" and an energy reading" if metric == "energy_mj" else "")
            + ")"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(
        "ImageNet-1K top-1, % (published; starred: measured)"
        if any(r.get("measured_top1") is not None for _, _, r in measured)
        else "published ImageNet-1K top-1, %"
    )
    ax.set_title(title, fontsize=10)
    return _save_labelled(fig, plt, ax, labels, path)


def pareto_accuracy_latency(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    return _pareto_plot(
        rows, path, "median_ms", "cpu_ms", "latency, ms (median)", "Accuracy vs latency (Pareto fronts)"
    )


def pareto_accuracy_energy(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    return _pareto_plot(
        rows, path, "energy_mj", "energy_mj", "energy per inference, mJ", "Accuracy vs energy (Pareto fronts)"
    )


def _save(fig: Any, plt: Any, path: Path, layout: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


#: op types shown by name in the op breakdown (the rest of each row is one "other" segment)
BREAKDOWN_TYPES = 8


def op_breakdown(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per-model op breakdown: one horizontal stacked bar per profiled row, its time per op type (the types that
    weigh most over all rows named, the rest as "other"), in ms per inference."""
    from ..profiles import by_op_type

    plt = _plt()
    profiled = [r for r in _ok(rows) if r.get("op_profile")]
    tables = [by_op_type(r["op_profile"]) for r in profiled]
    weight: dict[str, float] = {}
    for table in tables:
        for t in table:
            weight[t["op"]] = weight.get(t["op"], 0.0) + float(t["pct"])
    named = sorted(weight, key=lambda op: -weight[op])[:BREAKDOWN_TYPES]
    fig, ax = plt.subplots(figsize=(10.0, max(2.5, 0.5 * len(profiled) + 1.8)))
    names = [f"{r['model']} {label(r, len({x['device'] for x in profiled}) > 1)}" for r in profiled]
    left = [0.0] * len(profiled)
    cmap = plt.get_cmap("tab10")
    for k, op in enumerate([*named, "other"]):
        widths = []
        for table in tables:
            if op == "other":
                widths.append(sum(float(t["ms"]) for t in table if t["op"] not in named))
            else:
                widths.append(sum(float(t["ms"]) for t in table if t["op"] == op))
        ax.barh(range(len(profiled)), widths, left=left, label=op, color="lightgrey" if op == "other" else cmap(k))
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(profiled)), names, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("ms per inference, by op type (sum of the row's op profile)")
    ax.set_title("Per-op breakdown of the profiled rows")
    _outside_legend(ax)
    return _save(fig, plt, path)


def write_all(rows: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """Every plot as ``out_dir/<name>.png`` (the op breakdown only when some row has an op profile)."""
    written = {name: make(rows, Path(out_dir) / f"{name}.png") for name, make in PLOTS.items()}
    if any(r.get("op_profile") for r in _ok(rows)):
        written["op_breakdown"] = op_breakdown(rows, Path(out_dir) / "op_breakdown.png")
    return written


PLOTS = {
    "latency_per_model": latency_per_model,
    "latency_vs_params": latency_vs_params,
    "pareto_accuracy_latency": pareto_accuracy_latency,
    "pareto_accuracy_energy": pareto_accuracy_energy,
}
