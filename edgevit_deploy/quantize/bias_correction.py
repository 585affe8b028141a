"""Empirical bias correction of int8 weight rounding (Nagel et al. 2019, "Data-Free Quantization Through
Weight Equalization and Bias Correction", empirical form as in AIMET), done in PyTorch before a target's
quantizer runs, so that every target that quantizes from the PyTorch weights stores the corrected biases.

Rounding a layer's weights ``W`` to the per-channel int8 grid ``W_q`` shifts the mean of its outputs:
``E[W_q x] - E[W x] = E[(W_q - W) x]`` per output channel is not zero (a depthwise 3x3 conv has nine weights
per channel; their rounding errors do not average out). Subtracting that expected shift from the layer's bias
removes it. Here it is measured on the calibration images, sequentially: one forward of the images through
a simulation of the model in which each conv / linear, when it is reached, gets its correction measured on the
input it actually receives (every upstream layer already on the int8 grid, with its corrected bias), then
its weights put on the grid. The returned model keeps float weights (the target's quantizer rounds them the
same way) and differs from the input only by the folded batch norms and the biases.

1. BatchNorms that take a convolution's output are folded into it first (the quantizers fold them too, so the
   folded weight is the one that gets rounded; :func:`.reconstruct.fold_batchnorms`).
2. The grid is the target's (:func:`.reconstruct.target_qmax`): symmetric per output channel, ``[-127, 127]``
   for the PT2E quantizers (litert-torch for tflite and Core ML W8A8, ExecuTorch's XNNPACK) and onnxruntime's
   U8S8 default; ``[-64, 64]`` for onnxruntime's S8S8 form (7-bit weights). Scale ``max|w| / qmax`` per
   output channel, as the targets' min/max weight observers compute it.
3. A layer without a bias gets one (zeros, then the correction). Layers run more than once per forward
   (shared weights) and layers the target keeps in float (``--exclude`` on the PT2E targets) are left alone.

Activation quantization is not simulated: the correction is of weight rounding only.

A layer kept in float after the correction (``--target-sqnr``'s candidates) must not keep its corrected bias:
it corrects a rounding that no longer happens (floating EfficientNet-Lite0's first block with its corrected
bias took the int8 model from 22.6 to 19.7 dB instead of up to 23.2 dB). The returned model carries the biases
it had before the correction (:func:`uncorrected_biases`), and :func:`with_uncorrected_biases` puts them back
in the layers of the modules kept in float.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .reconstruct import QUANT_LAYERS, _call_trace, channel_scale, fold_batchnorms, nearest_integers

log = logging.getLogger(__name__)

#: the attribute of a corrected model holding each corrected layer's bias before the correction (None: it had none)
UNCORRECTED = "_edgevit_uncorrected_biases"
DEFAULT_IMAGES = 64  # calibration images the expectations are taken over (the first of the calibration set)
METHOD = "empirical bias correction of weight rounding (Nagel et al. 2019), sequential"


@dataclass
class BiasCorrectionReport:
    """What the correction did (the export report's ``quantization.bias_correction``)."""

    applied: bool
    reason: str = ""
    qmax: int = 0
    images: int = 0
    folded_batchnorms: int = 0
    corrected_layers: int = 0
    created_biases: int = 0
    skipped_layers: list[str] = field(default_factory=list)
    max_abs_shift: float = 0.0  # the largest per-channel correction subtracted from a bias
    largest: list[dict[str, Any]] = field(default_factory=list)  # the layers with the largest mean |shift|
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        if not self.applied:
            return {"applied": False, "reason": self.reason}
        return {
            "applied": True,
            "method": METHOD,
            "weight_grid": f"symmetric per-channel [-{self.qmax}, {self.qmax}]",
            "images": self.images,
            "folded_batchnorms": self.folded_batchnorms,
            "corrected_layers": self.corrected_layers,
            "created_biases": self.created_biases,
            "skipped_layers": self.skipped_layers,
            "max_abs_shift": self.max_abs_shift,
            "largest": self.largest,
            "seconds": round(self.seconds, 2),
        }


def quantized_weight(weight: torch.Tensor, qmax: int) -> torch.Tensor:
    """``weight`` rounded to the symmetric per-output-channel ``[-qmax, qmax]`` grid, back in float."""
    scale = channel_scale(weight, qmax)
    return nearest_integers(weight, scale, qmax) * scale


def output_shift(layer: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``E[delta x]`` per output channel of ``layer`` on its input ``x``: the mean, over the batch and every
    position, of the layer's function with weight ``delta`` and a zero bias. The layer's own ``forward`` runs,
    so a subclass's padding is kept: timm's ``Conv2dSame`` (EfficientNet-Lite's "same"
    convs) pads in ``forward``, and ``_conv_forward`` alone skipped it (the wrong positions at 224 px, an error
    at 64 px where the padded input was smaller than the kernel)."""
    if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"no bias correction for {type(layer).__name__}")
    # a shallow copy holding delta and a zero bias; its forward is called directly, without the layer's hooks
    # (bias_correct calls this from the layer's own forward pre-hook)
    probe = copy.copy(layer)
    probe._parameters = {**layer._parameters, "weight": nn.Parameter(delta, requires_grad=False)}
    if getattr(layer, "bias", None) is not None:
        probe._parameters["bias"] = nn.Parameter(torch.zeros_like(_tensor(layer.bias)), requires_grad=False)
    y = probe.forward(x)
    if isinstance(layer, nn.Linear):
        return y.reshape(-1, y.shape[-1]).mean(0)
    return y.transpose(0, 1).reshape(y.shape[1], -1).mean(1)


def uncorrected_biases(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """The biases :func:`bias_correct` replaced in ``model``, by layer path (empty: not a corrected model)."""
    found = getattr(model, UNCORRECTED, None)
    return dict(found) if isinstance(found, dict) else {}


def with_uncorrected_biases(model: nn.Module, float_modules: Iterable[str]) -> nn.Module:
    """``model`` itself when no corrected layer is inside ``float_modules`` (module paths, a layer is inside
    a module when its path is the module's or starts with it and a dot); else a copy in which those layers have
    their bias from before the correction back (a bias the correction created becomes zeros)."""
    floats = tuple(float_modules)
    inside = [name for name in uncorrected_biases(model) if any(name == f or name.startswith(f + ".") for f in floats)]
    if not inside:
        return model
    restored = copy.deepcopy(model)
    originals = uncorrected_biases(model)
    with torch.no_grad():
        for name in inside:
            layer = restored.get_submodule(name)
            bias = _tensor(layer.bias)
            original = originals[name]
            bias.copy_(torch.zeros_like(bias) if original is None else original)
    return restored


def _tensor(t: object) -> torch.Tensor:
    assert isinstance(t, torch.Tensor)
    return t


def _excluded(name: str, patterns: Iterable[str]) -> bool:
    """A layer inside a module matched by one of the ``--exclude`` globs (PyTorch module paths)."""
    parts = name.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pat) for p in prefixes for pat in patterns)


def _fold(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` with its batch norms folded, unless folding changes the outputs."""
    folded_model = copy.deepcopy(model).eval()
    folded = fold_batchnorms(folded_model, x[:1])
    if folded:
        with torch.no_grad():
            want, got = model.eval()(x[:4]), folded_model(x[:4])
        if not torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()) + 1e-5):
            log.warning("bias correction: folding the batch norms changed the outputs; correcting without folding")
            return copy.deepcopy(model).eval(), 0
    return folded_model, folded


def bias_correct(
    model: nn.Module,
    data: np.ndarray,
    qmax: int,
    images: int = DEFAULT_IMAGES,
    exclude: Iterable[str] = (),
) -> tuple[nn.Module, BiasCorrectionReport]:
    """A copy of ``model`` (eval mode) with batch norms folded and every conv / linear bias corrected for the
    rounding of its weights to the ``[-qmax, qmax]`` per-channel grid. ``data``: calibration images
    ``(N, C, H, W)`` float32, the first ``images`` are used (in one batch). ``exclude``: module-path globs of
    layers the target keeps in float (not corrected)."""
    t0 = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(data[:images], dtype=np.float32))
    if len(x) == 0:
        raise ValueError("bias correction needs at least one calibration image")
    patterns = tuple(exclude)
    out, folded = _fold(model, x)
    sim = copy.deepcopy(out)  # weights rounded as the forward reaches them
    calls, _, _ = _call_trace(sim, x[:1])
    report = BiasCorrectionReport(applied=True, qmax=qmax, images=len(x), folded_batchnorms=folded)
    shifts: list[tuple[float, str]] = []
    originals: dict[str, torch.Tensor | None] = {}
    handles = []
    for name, layer in sim.named_modules():
        if not isinstance(layer, QUANT_LAYERS):
            continue
        if calls.get(name, 0) != 1 or _excluded(name, patterns):
            report.skipped_layers.append(name)
            continue
        target = out.get_submodule(name)

        def pre(m: nn.Module, args: tuple, name: str = name, target: nn.Module = target) -> None:
            w = _tensor(m.weight).detach()
            wq = quantized_weight(w, qmax)
            shift = output_shift(m, args[0], wq - w)
            old = target.bias
            originals[name] = old.detach().clone() if isinstance(old, torch.Tensor) else None
            if isinstance(old, torch.Tensor):
                bias = old.detach() - shift
            else:
                report.created_biases += 1
                bias = -shift
            target.bias = nn.Parameter(bias.clone(), requires_grad=False)
            m.weight = nn.Parameter(wq, requires_grad=False)
            m.bias = nn.Parameter(bias.clone(), requires_grad=False)
            report.corrected_layers += 1
            report.max_abs_shift = max(report.max_abs_shift, float(shift.abs().max()))
            shifts.append((float(shift.abs().mean()), name))

        handles.append(layer.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            sim(x)
    finally:
        for h in handles:
            h.remove()
    setattr(out, UNCORRECTED, originals)
    report.largest = [{"layer": n, "mean_abs_shift": s} for s, n in sorted(shifts, reverse=True)[:5]]
    report.seconds = time.perf_counter() - t0
    log.info(
        "bias correction: %d layers (%d new biases, %d left alone) on %d images, grid +-%d, max |shift| %.3g, %.1f s",
        report.corrected_layers,
        report.created_biases,
        len(report.skipped_layers),
        len(x),
        qmax,
        report.max_abs_shift,
        report.seconds,
    )
    return out, report
