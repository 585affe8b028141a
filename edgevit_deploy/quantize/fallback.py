"""THE float-fallback search of every int8 target (``--analyze``'s block rows, ``--target-sqnr``): the units are
PyTorch modules (:func:`.reconstruct.find_blocks`: residual / transformer blocks, patch embeddings, the head),
a target supplies how to measure the output SQNR with some units in float (:class:`Measure`: the PT2E graph in
PyTorch for tflite / coreml / executorch, :mod:`.pt2e_analysis`; onnxruntime on the re-quantized QDQ graph for
onnx, :mod:`.onnx_modules`).

- analysis: each unit quantized ALONE (everything else float), the output SQNR against fp32 on
  :data:`SEARCH_SAMPLES` calibration images; rows worst first (``layer``, ``kind``, ``sqnr_db``,
  ``noise_share``, ``macs_share``, ``island_cost``).
- search: greedy. Quantization noise powers of independent units add up, so the benefit of keeping a unit in
  float is its noise share ``10^(-sqnr/10)``; the cost of the float island is ``macs_share + QDQ_COST x
  new_boundaries`` (the MACs that leave the int8 kernels, plus one quantize or dequantize pass per boundary the
  island adds: 2 for a lone unit, 1 next to a float neighbour, 0 between two). The unit with the best
  benefit / cost goes to float next, the whole model is re-measured, until the target is met or
  ``max_float`` units are float.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .reconstruct import QUANT_LAYERS

log = logging.getLogger(__name__)

SEARCH_SAMPLES = 16
QDQ_COST = 0.01  # one quantize / dequantize pass over a tensor, as a fraction of the model's int8 run time


class Measure(Protocol):
    """Output SQNR (dB, against fp32) of the model quantized with ``float_modules`` kept in float, or with only
    the modules ``only`` quantized; ``x``: the images it is measured on."""

    x: np.ndarray

    def sqnr(self, float_modules: list[str] = ..., only: list[str] | None = None) -> float: ...


def module_macs(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates per conv / linear layer for one input (by module path)."""
    macs: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, QUANT_LAYERS):

            def hook(mod: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
                w = mod.weight
                assert isinstance(w, torch.Tensor)
                per_out = w[0].numel()  # in / groups x kernel (conv) or in_features (linear)
                macs[name] = macs.get(name, 0) + int(out.numel() // out.shape[0] * per_out)

            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return macs


def _share(unit: str, macs: dict[str, int]) -> float:
    total = sum(macs.values()) or 1
    return sum(v for k, v in macs.items() if k == unit or k.startswith(unit + ".")) / total


def _boundaries(unit: str, order: list[str], floating: set[str]) -> int:
    i = order.index(unit)
    neighbours = [order[j] for j in (i - 1, i + 1) if 0 <= j < len(order)]
    return 2 - sum(n in floating for n in neighbours)


def _score(row: dict[str, Any], boundaries: int) -> float:
    """Benefit / cost of keeping a block in float: its noise share over its float-island cost."""
    return row["noise_share"] / max(row["macs_share"] + QDQ_COST * boundaries, 1e-6)


def analyze(
    measure: Measure,
    units: list[str],
    macs: dict[str, int],
    model: nn.Module,
    method: str = "each block quantized alone, output SQNR vs fp32",
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for u in units:
        db = measure.sqnr(only=[u])
        share = _share(u, macs)
        rows.append(
            {
                "layer": u,
                "kind": type(model.get_submodule(u)).__name__,
                "sqnr_db": db,
                "noise_share": 10 ** (-db / 10) if np.isfinite(db) else 0.0,
                "macs_share": share,
                "island_cost": share + 2 * QDQ_COST,
            }
        )
        log.info("analysis: %s alone quantized -> %.2f dB", u, db)
    rows.sort(key=lambda r: r["sqnr_db"])
    return {
        "method": method,
        "layers": rows,
        "weights": [],
        "samples": len(measure.x),
        "summary": {"worst_layers": [r["layer"] for r in rows[:10]]},
    }


def search(
    measure: Measure,
    analysis: dict[str, Any],
    order: list[str],
    base: list[str],
    target_db: float,
    max_float: int,
) -> dict[str, Any]:
    rows = {r["layer"]: r for r in analysis["layers"]}
    floating: list[str] = []
    start = measure.sqnr(base)
    steps: list[dict[str, Any]] = [{"float_layers": 0, "excluded_modules": list(base), "sqnr_db": start}]
    best = steps[0]
    candidates = [u for u in order if u in rows and u not in base]
    while best["sqnr_db"] < target_db and len(floating) < max_float and candidates:
        fl = set(floating) | set(base)
        scores = {u: _score(rows[u], _boundaries(u, order, fl)) for u in candidates}
        pick = max(candidates, key=scores.__getitem__)
        candidates.remove(pick)
        floating.append(pick)
        db = measure.sqnr(base + floating)
        step: dict[str, Any] = {
            "float_layers": len(floating),
            "layers": list(floating),
            "picked": pick,
            "picked_cost": rows[pick]["macs_share"] + QDQ_COST * _boundaries(pick, order, fl),
            "excluded_modules": base + floating,
            "sqnr_db": db,
        }
        steps.append(step)
        log.info("target-SQNR search: + %s in float -> %.2f dB", pick, db)
        if db > best["sqnr_db"]:
            best = step
    return {
        "target_sqnr_db": target_db,
        "met": best["sqnr_db"] >= target_db,
        "steps": steps,
        "kept_in_float_layers": best.get("layers", []),
        "search_sqnr_db": best["sqnr_db"],
        "search_samples": len(measure.x),
        "cost_model": f"macs_share + {QDQ_COST} x new Q/DQ boundaries; benefit: noise share 10^(-SQNR/10)",
    }
