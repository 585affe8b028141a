"""Sensitivity analysis and float fallback on the PT2E path (TFLite, Core ML, ExecuTorch): ``--analyze``,
``--exclude`` and ``--target-sqnr`` for the targets that quantize through torchao's ``prepare_pt2e``.

Units are PyTorch modules. ``--exclude`` globs match module paths (``named_modules``: ``blocks3.*``,
``head``); the ops of a matched module stay float (:func:`.pt2e.restrict_annotations`). The analysis and the
search work on the reconstruction blocks of the module tree (:func:`.reconstruct.find_blocks`: residual /
transformer blocks, patch embeddings, the head):

- ``--analyze`` / ``--target-sqnr``: the analysis and the greedy search of :mod:`.fallback` (shared with onnx),
  measured here in PyTorch on the converted PT2E graph (which computes what the target's kernels compute up
  to rounding).

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
from .fallback import SEARCH_SAMPLES, analyze, module_macs, search
from .pt2e import calibrate_pt2e
from .reconstruct import QUANT_LAYERS, find_blocks

log = logging.getLogger(__name__)


@dataclass
class FloatPlan:
    """What stays float in a PT2E quantization and why (``details`` goes to the quantizer's result)."""

    float_modules: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


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
    analysis = analyze(
        measure, order, macs, model, "each block quantized alone (PT2E, in PyTorch), output SQNR vs fp32"
    )
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
