"""Sensitivity analysis and float fallback on the PT2E path (TFLite, Core ML, ExecuTorch): ``--analyze``,
``--exclude`` and ``--target-sqnr`` for the targets that quantize through torchao's ``prepare_pt2e``.

Units are PyTorch modules. ``--exclude`` globs match module paths (``named_modules``: ``blocks3.*``,
``head``); the ops of a matched module stay float (:func:`.pt2e.restrict_annotations`). The analysis and the
search work on the reconstruction blocks of the module tree (:func:`.reconstruct.find_blocks`: residual /
transformer blocks, patch embeddings, the head):

- ``--analyze``: each block quantized ALONE (weights and activations, everything else float), the output
  SQNR against fp32 on :data:`SEARCH_SAMPLES` calibration images, in PyTorch (the converted PT2E graph, which
  computes what the target's kernels compute up to rounding). Rows are sorted worst first, like the ONNX
  analysis (``layer``, ``kind``, ``sqnr_db``), with the block's share of the MACs and its float-island cost.
- ``--target-sqnr``: greedy float fallback. Quantization noise powers of independent blocks add up, so the
  benefit of keeping a block in float is its noise share ``10^(-sqnr/10)``; the cost of the float island is
  ``macs_share + QDQ_COST * new_boundaries`` (the MACs that leave the int8 kernels, plus one quantize or
  dequantize pass per boundary the island adds: 2 for a lone block, 1 next to a float neighbour, 0 between
  two). The block with the best benefit / cost goes to float next, the whole model is re-measured, until the
  target is met or ``max_float_layers`` blocks are float.

On a bias-corrected model (static int8's default) every measurement puts the uncorrected biases back in the
layers it keeps in float (:func:`.bias_correction.with_uncorrected_biases`): a float layer has no rounding to
correct. Measured with the corrected biases, floating EfficientNet-Lite0's stem and first block looked
harmful and the search floated whole stages instead (28.1 dB at 0.70x fp32 latency for ``--target-sqnr 25``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..converters.base import QuantSettings
from ..verify.metrics import sqnr_db
from .base import match_names
from .bias_correction import uncorrected_biases, with_uncorrected_biases
from .calibration import CalibrationSet
from .pt2e import calibrate_pt2e
from .reconstruct import QUANT_LAYERS, find_blocks

log = logging.getLogger(__name__)

SEARCH_SAMPLES = 16
QDQ_COST = 0.01  # one quantize / dequantize pass over a tensor, as a fraction of the model's int8 run time


@dataclass
class FloatPlan:
    """What stays float in a PT2E quantization and why (``details`` goes to the quantizer's result)."""

    float_modules: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


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


def _run(model: nn.Module | torch.fx.GraphModule, x: np.ndarray) -> np.ndarray:
    """One image at a time (an exported graph is specialised to the example's batch of 1)."""
    outs = []
    with torch.no_grad():
        for i in range(len(x)):
            out = model(torch.from_numpy(np.ascontiguousarray(x[i : i + 1])))
            outs.append((out[0] if isinstance(out, (tuple, list)) else out).numpy())
    return np.concatenate(outs)


class _Measure:
    """Output SQNR of the model quantized with some modules float / only some modules quantized."""

    def __init__(self, model: nn.Module, example: torch.Tensor, make_quantizer: Callable[[], Any], x: np.ndarray):
        self.model, self.example, self.make, self.x = model, example, make_quantizer, x
        # the reference is the float model: a corrected model's biases are made for int8 weights
        self.ref = _run(with_uncorrected_biases(model, list(uncorrected_biases(model))), x)

    def sqnr(self, float_modules: list[str] = (), only: list[str] | None = None) -> float:  # type: ignore[assignment]
        q = self.make()
        q.float_modules, q.only_modules = tuple(float_modules), None if only is None else tuple(only)
        model = with_uncorrected_biases(self.model, self._floating(float_modules, only))
        graph = calibrate_pt2e(model, self.example, q, self.x, fold_quantize=False)
        return sqnr_db(self.ref, _run(graph, self.x))

    def _floating(self, float_modules: list[str], only: list[str] | None) -> list[str]:
        """The modules a measurement keeps in float: ``float_modules``, or every layer outside ``only``."""
        if only is None:
            return list(float_modules)
        inside = lambda n: any(n == o or n.startswith(o + ".") for o in only)
        return [n for n, m in self.model.named_modules() if isinstance(m, QUANT_LAYERS) and not inside(n)]


def _boundaries(unit: str, order: list[str], floating: set[str]) -> int:
    i = order.index(unit)
    neighbours = [order[j] for j in (i - 1, i + 1) if 0 <= j < len(order)]
    return 2 - sum(n in floating for n in neighbours)


def _score(row: dict[str, Any], boundaries: int) -> float:
    """Benefit / cost of keeping a block in float: its noise share over its float-island cost."""
    return row["noise_share"] / max(row["macs_share"] + QDQ_COST * boundaries, 1e-6)


def analyze(measure: _Measure, units: list[str], macs: dict[str, int], model: nn.Module) -> dict[str, Any]:
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
        log.info("PT2E analysis: %s alone quantized -> %.2f dB", u, db)
    rows.sort(key=lambda r: r["sqnr_db"])
    return {
        "method": "each block quantized alone (PT2E, in PyTorch), output SQNR vs fp32",
        "layers": rows,
        "weights": [],
        "samples": len(measure.x),
        "summary": {"worst_layers": [r["layer"] for r in rows[:10]]},
    }


def search(
    measure: _Measure,
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
        log.info("PT2E target-SQNR search: + %s in float -> %.2f dB", pick, db)
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


def float_plan(
    model: nn.Module,
    example: torch.Tensor,
    make_quantizer: Callable[[], Any],
    calib: CalibrationSet,
    settings: QuantSettings,
) -> FloatPlan:
    """The modules a PT2E quantization keeps in float (``--exclude``, ``--target-sqnr``) and the analysis
    (``--analyze``). Nothing to do (no per-layer setting): an empty plan, no work."""
    if not (settings.exclude or settings.analyze or settings.target_sqnr is not None):
        return FloatPlan()
    names = [n for n, _ in model.named_modules() if n]
    excluded, unmatched = match_names(names, settings.exclude)
    excluded = [n for n in excluded if not any(n.startswith(e + ".") for e in excluded if e != n)]
    details: dict[str, Any] = {
        "excluded_modules": excluded,
        "exclude_unmatched": unmatched,
        "kept_in_float_layers": list(excluded),
    }
    plan = FloatPlan(list(excluded), details)
    if not (settings.analyze or settings.target_sqnr is not None):
        return plan
    x = calib.data[:SEARCH_SAMPLES]
    measure = _Measure(model, example, make_quantizer, x)
    order = find_blocks(model, example)
    macs = module_macs(model, example)
    analysis = analyze(measure, order, macs, model)
    details["analysis"] = analysis
    if settings.target_sqnr is not None:
        found = search(measure, analysis, order, list(excluded), settings.target_sqnr, settings.max_float_layers)
        plan.float_modules = list(excluded) + found["kept_in_float_layers"]
        details.update(kept_in_float_layers=plan.float_modules, target_sqnr=found)
        if not found["met"]:
            log.warning(
                "--target-sqnr %.1f dB not met with %d blocks in float (best %.2f dB)",
                settings.target_sqnr,
                len(found["kept_in_float_layers"]),
                found["search_sqnr_db"],
            )
    return plan


def planned_quantizer(
    model: nn.Module,
    example: torch.Tensor,
    make_quantizer: Callable[[], Any],
    calib: CalibrationSet,
    settings: QuantSettings,
) -> tuple[Any, dict[str, Any]]:
    """``make_quantizer()`` with the float plan of ``settings`` applied, and the plan's details."""
    plan = float_plan(model, example, make_quantizer, calib, settings)
    quantizer = make_quantizer()
    quantizer.float_modules = tuple(plan.float_modules)
    return quantizer, plan.details
