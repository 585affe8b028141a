"""Well-conditioned random weights: random-init models whose logits mean something for parity checks.

Some architectures give degenerate outputs at their own random initialisation: tiny constant layer scales
(FcaFormer's 1e-6: logits ~1e-20), or BatchNorms with identity statistics after std-0.02 convolutions, so
that the signal shrinks with depth (Next-ViT B / L: logits ~1e-7). Comparing an artifact with such a
reference proves nothing (the validator refuses it). :func:`well_conditioned` keeps the architecture and
the random weights of the convolutions and linear layers, and changes only what makes the output vanish:

* layer scales (constant-initialised parameters held outside conv / linear / norm layers, named like a
  scale or tiny and non-zero) become U(0.1, 0.5);
* the affine terms of every normalisation layer become random (weight U(0.5, 1.5), bias N(0, 0.1)): this
  also undoes zero-initialised norms of residual branches;
* BatchNorm running statistics are measured on a batch (each BN then normalises, as after training):
  ``inputs`` when given (the export API passes the parity batch's kind of input: photographs and noise),
  else 16 seeded N(0, 1) images;
* the classifier(s) (the trailing linear / 1x1 conv layers producing the logits, e.g. ``head`` and
  ``dist_head``) are rescaled so that the logits on that batch have unit standard deviation.

Nothing depends on a model's name. The result is deterministic for a given model, input size and seed.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

log = logging.getLogger(__name__)

RANDOM_INIT_CHOICES = ("default", "conditioned")

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Embedding)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_SCALE_NAME = re.compile(r"gamma|scale|gain|alpha|^ls\d*$", re.IGNORECASE)
_TINY = 1e-2  # a constant parameter of magnitude at most this (and not zero) is treated as a layer scale


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's, or a custom one named ``*Norm*`` with a 1-D ``weight``."""
    if isinstance(module, _NORMS):
        return True
    w = getattr(module, "weight", None)
    return "Norm" in type(module).__name__ and isinstance(w, nn.Parameter) and w.dim() == 1


def _is_layer_scale(name: str, p: torch.Tensor) -> bool:
    if not p.is_floating_point() or p.numel() == 0:
        return False
    p = p.detach()
    first = p.reshape(-1)[0]
    if not bool((p == first).all()):  # layer scales are initialised to one constant
        return False
    value = abs(float(first))
    return bool(_SCALE_NAME.search(name)) or 0.0 < value <= _TINY


def layer_scales(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs :func:`well_conditioned` treats as layer scales."""
    found = []
    for mod_name, module in model.named_modules():
        if isinstance(module, _WEIGHT_LAYERS) or _is_norm(module):
            continue
        for p_name, p in module._parameters.items():
            if p is not None and _is_layer_scale(p_name, p):
                found.append((f"{mod_name}.{p_name}" if mod_name else p_name, p))
    return found


def _classifiers(model: nn.Module, x: torch.Tensor, num_classes: int) -> list[nn.Linear | nn.Conv2d]:
    """The linear / 1x1 conv layers that produce the logits: the trailing run, in execution order, of such
    layers with ``num_classes`` outputs (``head`` then ``dist_head`` for distilled models)."""
    order: list[nn.Linear | nn.Conv2d] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    heads: list[nn.Linear | nn.Conv2d] = []
    for m in reversed(order):
        out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        if out != num_classes:
            break
        if m not in heads:
            heads.append(m)
    return heads[::-1]


@torch.no_grad()
def well_conditioned(
    model: nn.Module,
    img_size: int | tuple[int, int],
    seed: int = 0,
    in_chans: int = 3,
    inputs: torch.Tensor | None = None,
) -> nn.Module:
    """Give ``model`` (in place, returned in eval mode) well-conditioned random weights: see the module
    docstring. ``img_size``: the input side (or (H, W)) of the seeded random batch the statistics and the
    logit scale are measured on, unless ``inputs`` (N, C, H, W; N >= 2) gives that batch."""
    g = torch.Generator().manual_seed(seed)
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_((torch.rand(t.shape, generator=g) * (hi - lo) + lo).to(t.dtype))

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_((torch.randn(t.shape, generator=g) * std).to(t.dtype))

    scales = layer_scales(model)
    for _name, p in scales:
        uniform(p, 0.1, 0.5)
    bns = []
    for m in model.modules():
        if not _is_norm(m):
            continue
        weight, bias = getattr(m, "weight", None), getattr(m, "bias", None)
        if isinstance(weight, nn.Parameter):
            uniform(weight, 0.5, 1.5)
        if isinstance(bias, nn.Parameter):
            normal(bias, 0.1)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            bns.append(m)
    # a batch large enough that the statistics of the last, smallest feature maps generalise to new inputs
    x = torch.randn(16, in_chans, h, w, generator=g) if inputs is None else inputs
    model.eval()
    if bns:  # one forward with the BNs (only) in training mode and a cumulative average: batch statistics
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        try:
            model(x)
        finally:
            for bn, momentum in zip(bns, momenta):
                bn.momentum = momentum
                bn.eval()
    logits = model(x)
    heads = _classifiers(model, x, logits.shape[-1])
    if not heads:
        raise ValueError(
            f"{type(model).__name__}: no linear / 1x1 conv classifier with {logits.shape[-1]} "
            "outputs ends the forward pass; cannot scale the logits"
        )
    std = float(logits.float().std())
    if not (std > 0 and std == std and std != float("inf")):  # zero-initialised head (or worse): redraw it
        for head in heads:
            normal(head.weight, 0.02)
            if head.bias is not None:
                head.bias.zero_()
        std = float(model(x).float().std())
        if not std > 0:
            raise ValueError(
                f"{type(model).__name__}: the logits do not depend on the input even with well-conditioned weights"
            )
    for head in heads:
        head.weight.div_(std)
        if head.bias is not None:
            head.bias.div_(std)
    log.debug(
        "well-conditioned %s: %d layer scales, %d BatchNorms, heads scaled by 1/%.3g",
        type(model).__name__,
        len(scales),
        len(bns),
        std,
    )
    return model
