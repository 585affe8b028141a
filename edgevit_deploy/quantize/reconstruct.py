"""Block reconstruction of weight rounding (``--calib-method reconstruct``): AdaRound / BRECQ in PyTorch.

Run ONCE on the calibration set before a target's own quantizer; what it hands over is an ordinary float
module whose convolution / linear weights lie exactly on the per-channel symmetric int8 grid the target's
weight observer will compute, so that every target reproduces the learned integers:

1. BatchNorm layers that directly follow a convolution are folded into it (the quantizers fold them too;
   folding first makes the convolution weight the tensor that gets quantized).
2. Blocks are found from the module tree: the largest modules with at most :data:`MAX_BLOCK_LAYERS`
   convolutions / linears that run once per forward (a residual block, a transformer block, a small stage);
   layers outside every block are blocks of their own. They are reconstructed in execution order.
3. Per block (BRECQ): the block's input is taken from the model quantized so far (earlier blocks already on
   the grid), with its activation quantization simulated (per-tensor uint8 min/max, as the targets calibrate
   it); the reference is the float block output on the float input. Hybrid-aware choice per block: the
   clipping ratio of the per-channel range (``1.0`` keeps the observer's own scale) that gives the lowest
   block-output error with nearest rounding. Then the rounding is learned (AdaRound: soft rounding variable
   ``h(V) = clip(sigmoid(V) * 1.2 - 0.1, 0, 1)``, regulariser ``sum(1 - |2h - 1|^beta)`` with ``beta``
   annealed 20 -> 2 after a 20 % warm-up, Adam), minimising the block-output MSE; the hard 0/1 result is kept
   only when it beats nearest rounding on that block.
4. The weights are written back as ``scale * q``: the element(s) at the (clipped) range hold ``+-qmax``, so a
   min/max observer finds the same per-channel maximum, hence the same scale, and rounds back to ``q``.

The grid is symmetric per-channel ``[-qmax, qmax]`` on output channels (axis 0 of a PyTorch weight):
``qmax = 127`` for the PT2E quantizers (litert-torch, ExecuTorch XNNPACK, Core ML through PT2E) and for
onnxruntime's default U8S8 form (8-bit int8 weights), 64 for its portable S8S8 form (``--activation-dtype
int8``: 7-bit weights, its ``reduce_range``; see :mod:`.onnx`).
Budget (defaults): 64 calibration images, 200 iterations of batch 8 per block.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

log = logging.getLogger(__name__)

QUANT_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
MAX_BLOCK_LAYERS = 12
PT2E_QMAX = 127  # litert-torch / XNNPACK / Core ML (PT2E): symmetric per-channel int8 weights in [-127, 127]
ONNX_QMAX = 127  # onnxruntime static QDQ, default U8S8: 8-bit int8 weights [-127, 127]
ONNX_S8S8_QMAX = 64  # onnxruntime static QDQ, S8S8 (--activation-dtype int8): reduce_range, [-64, 64]
ZETA, GAMMA = 1.1, -0.1  # AdaRound's rectified sigmoid stretch


@dataclass(frozen=True)
class ReconstructBudget:
    """How much work the reconstruction does (the stated calibration budget)."""

    iters: int = 200  # optimisation steps per block
    images: int = 64  # calibration images used (the first ones of the calibration set)
    batch: int = 8
    lr: float = 1e-2
    reg_weight: float = 0.01
    warmup: float = 0.2
    beta: tuple[float, float] = (20.0, 2.0)
    clip_ratios: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8)
    act_bits: int = 8


@dataclass
class BlockRecord:
    """What the reconstruction did to one block."""

    name: str
    layers: list[str]
    clip_ratio: float
    mse_nearest: float  # block output MSE, nearest rounding at the full range
    mse_chosen_clip: float  # nearest rounding at the chosen clip ratio
    mse_learned: float  # learned rounding at the chosen clip ratio
    kept: str  # "learned" | "nearest"
    seconds: float


@dataclass
class ReconstructReport:
    qmax: int
    budget: ReconstructBudget
    folded_batchnorms: int
    blocks: list[BlockRecord] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "block reconstruction of weight rounding (AdaRound/BRECQ), per-block clip-ratio choice",
            "weight_grid": f"symmetric per-channel [-{self.qmax}, {self.qmax}]",
            "iters_per_block": self.budget.iters,
            "images": self.images,
            "seconds": round(self.seconds, 1),
            "folded_batchnorms": self.folded_batchnorms,
            "blocks": [asdict(b) for b in self.blocks],
        }


# --------------------------------------------------------------------------------------- module tree
def _quant_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, QUANT_LAYERS)]


def _call_trace(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, int], list[str], list[tuple[str, str]]]:
    """One forward: (calls per module name, names in first-call order, (conv, bn) pairs where the batch norm
    takes the convolution's output tensor itself)."""
    calls: dict[str, int] = {}
    order: list[str] = []
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor is kept alive: its id stays unique
    pairs: list[tuple[str, str]] = []
    handles = []
    for name, mod in model.named_modules():

        def pre(m: nn.Module, args: tuple, name: str = name) -> None:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == 1:
                order.append(name)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and args and id(args[0]) in produced:
                pairs.append((produced[id(args[0])][0], name))

        def post(m: nn.Module, args: tuple, out: Any, name: str = name) -> None:
            if isinstance(m, (nn.Conv1d, nn.Conv2d)) and isinstance(out, torch.Tensor):
                produced[id(out)] = (name, out)

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return calls, order, pairs


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def fold_batchnorms(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every eval-mode BatchNorm that takes a convolution's output (both called once) into it, in place;
    the batch norm becomes ``nn.Identity``. Returns the number folded."""
    calls, _, pairs = _call_trace(model, example)
    n = 0
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        mean, var = getattr(bn, "running_mean", None), getattr(bn, "running_var", None)
        if not _foldable(bn) or calls.get(conv_name) != 1 or calls.get(bn_name) != 1 or mean is None or var is None:
            continue  # shared modules, or a batch norm without running statistics: left as they are
        assert isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(bn, nn.modules.batchnorm._BatchNorm)
        with torch.no_grad():
            std = torch.sqrt(var + bn.eps)
            gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
            beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
            factor = gamma / std
            shape = (-1,) + (1,) * (conv.weight.dim() - 1)
            conv.weight.mul_(factor.reshape(shape))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
            new_bias = (bias - mean) * factor + beta
            conv.bias = nn.Parameter(new_bias.detach().clone())
        _set_submodule(model, bn_name, _after_norm(bn))
        n += 1
    return n


def _after_norm(bn: nn.Module) -> nn.Module:
    """What is left of a folded batch norm: nothing, or the dropout / activation a norm+act module (timm's
    ``BatchNormAct2d``) applies after normalising."""
    if type(bn) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return nn.Identity()
    rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if isinstance(m, nn.Module)]
    return nn.Sequential(*rest) if rest else nn.Identity()


def _foldable(bn: nn.Module) -> bool:
    """A plain batch norm, or one whose forward is normalise -> drop -> act (timm's norm+act layers)."""
    if type(bn) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return True
    return type(bn).__name__ in ("BatchNormAct2d",) and hasattr(bn, "act")


def find_blocks(model: nn.Module, example: torch.Tensor, max_layers: int = MAX_BLOCK_LAYERS) -> list[str]:
    """Module names of the reconstruction blocks in execution order (see the module docstring)."""
    calls, order, _ = _call_trace(model, example)
    blocks: list[str] = []

    def visit(name: str, mod: nn.Module) -> None:
        n = len(_quant_layers(mod))
        if n == 0:
            return
        once = calls.get(name) == 1
        if isinstance(mod, QUANT_LAYERS):
            if once:
                blocks.append(name)
            return
        container = isinstance(mod, (nn.ModuleList, nn.ModuleDict))
        if name and once and not container and n <= max_layers:
            blocks.append(name)
            return
        for child, sub in mod.named_children():
            visit(f"{name}.{child}" if name else child, sub)

    visit("", model)
    rank = {n: i for i, n in enumerate(order)}
    return sorted((b for b in blocks if b in rank), key=rank.__getitem__)


# ------------------------------------------------------------------------------------ quantization
def channel_scale(weight: torch.Tensor, qmax: int, ratio: float = 1.0) -> torch.Tensor:
    """Per-output-channel scale (broadcastable to ``weight``) of a symmetric ``[-qmax, qmax]`` grid."""
    amax = weight.detach().abs().flatten(1).amax(1) * ratio
    scale = torch.clamp(amax / qmax, min=torch.finfo(torch.float32).eps)
    return scale.reshape((-1,) + (1,) * (weight.dim() - 1))


def nearest_integers(weight: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    return torch.clamp(torch.round(weight / scale), -qmax, qmax)


def _rect_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


class _Rounding:
    """AdaRound state of one layer: ``q = floor(w / s) + h(V)``, elements at the range edge held fixed."""

    def __init__(self, weight: torch.Tensor, qmax: int, ratio: float):
        self.qmax = qmax
        self.scale = channel_scale(weight, qmax, ratio)
        w = weight.detach() / self.scale
        self.floor = torch.floor(w)
        self.nearest = nearest_integers(weight.detach(), self.scale, qmax)
        self.fixed = self.nearest.abs() >= qmax  # the range edge: keeps the observer's maximum (and scale)
        rest = (w - self.floor).clamp(1e-4, 1 - 1e-4)
        self.v = (-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)).requires_grad_(True)

    def soft(self) -> torch.Tensor:
        q = torch.where(self.fixed, self.nearest, self.floor + _rect_sigmoid(self.v))
        return torch.clamp(q, -self.qmax, self.qmax) * self.scale

    def hard_integers(self) -> torch.Tensor:
        q = self.floor + (self.v.detach() >= 0).float()  # h(V) >= 0.5 <=> V >= 0
        return torch.clamp(torch.where(self.fixed, self.nearest, q), -self.qmax, self.qmax)

    def reg(self, beta: float) -> torch.Tensor:
        h = _rect_sigmoid(self.v)[~self.fixed]
        return (1 - (2 * h - 1).abs().pow(beta)).sum()


def _fake_quant_act(x: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    """Per-tensor asymmetric (uint8-style) fake quantization on the range [lo, hi] (which includes 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = 2**bits - 1
    scale = max((hi - lo) / levels, 1e-12)
    zp = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zp, 0, levels) - zp) * scale


class _Stop(Exception):
    pass


def _capture(model: nn.Module, name: str, x: torch.Tensor, batch: int, what: str) -> list[Any]:
    """The block's inputs (args, kwargs) or outputs, one entry per batch of ``x``; the forward stops there."""
    mod = model.get_submodule(name)
    got: list[Any] = []

    def pre(m: nn.Module, args: tuple, kwargs: dict) -> None:
        if what == "in":
            got.append((tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args), dict(kwargs)))
            raise _Stop

    def post(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        got.append(_detach(out))
        raise _Stop

    h = mod.register_forward_pre_hook(pre, with_kwargs=True) if what == "in" else None
    h2 = mod.register_forward_hook(post, with_kwargs=True) if what == "out" else None
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                try:
                    model(x[i : i + batch])
                except _Stop:
                    pass
    finally:
        for handle in (h, h2):
            if handle is not None:
                handle.remove()
    return got


def _detach(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return type(out)(_detach(o) for o in out)
    return out


def _tensors(out: Any) -> Iterator[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for o in out:
            yield from _tensors(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _tensors(o)


def _sq_error(out: Any, ref: Any) -> torch.Tensor:
    """Sum over features of the squared error, mean over the batch (BRECQ's reconstruction loss)."""
    total = torch.zeros(())
    for a, b in zip(_tensors(out), _tensors(ref), strict=True):
        if a.is_floating_point():
            total = total + (a - b).pow(2).flatten(1).sum(1).mean() if a.dim() > 1 else total + (a - b).pow(2).sum()
    return total


class _Block:
    """One block under reconstruction: its quantized inputs, the float outputs, its layers' roundings."""

    def __init__(self, module: nn.Module, inputs: list[Any], targets: list[Any], qmax: int, act_bits: int):
        self.module = module
        self.layers = _quant_layers(module)
        self.qmax = qmax
        self.targets = targets
        lo = min(float(a.min()) for args, _ in inputs for a in args if _is_act(a))
        hi = max(float(a.max()) for args, _ in inputs for a in args if _is_act(a))
        self.inputs = [
            (tuple(_fake_quant_act(a, lo, hi, act_bits) if _is_act(a) else a for a in args), kw) for args, kw in inputs
        ]

    def run(self, i: int, weights: dict[str, torch.Tensor]) -> Any:
        args, kwargs = self.inputs[i]
        return functional_call(self.module, weights, args, kwargs)

    def error(self, make: Callable[[nn.Module, str], torch.Tensor]) -> float:
        with torch.no_grad():
            weights = {_wkey(n): make(m, n) for n, m in self.layers}
            return float(sum(_sq_error(self.run(i, weights), t) for i, t in enumerate(self.targets))) / len(
                self.targets
            )


def _is_act(a: Any) -> bool:
    return isinstance(a, torch.Tensor) and a.is_floating_point()


def _wkey(layer_name: str) -> str:
    return f"{layer_name}.weight" if layer_name else "weight"


def _weight(m: nn.Module) -> torch.Tensor:
    w = m.weight
    assert isinstance(w, torch.Tensor)
    return w


def _reconstruct_block(block: _Block, budget: ReconstructBudget, record: BlockRecord) -> None:
    qmax = block.qmax

    def nearest_at(ratio: float) -> Callable[[nn.Module, str], torch.Tensor]:
        def make(m: nn.Module, n: str) -> torch.Tensor:
            w = _weight(m)
            s = channel_scale(w, qmax, ratio)
            return nearest_integers(w, s, qmax) * s

        return make

    errors = {r: block.error(nearest_at(r)) for r in budget.clip_ratios}
    ratio = min(errors, key=errors.__getitem__)
    record.clip_ratio, record.mse_nearest, record.mse_chosen_clip = ratio, errors[1.0], errors[ratio]
    roundings = {n: _Rounding(_weight(m), qmax, ratio) for n, m in block.layers}
    opt = torch.optim.Adam([r.v for r in roundings.values()], lr=budget.lr)
    n_batches = len(block.targets)
    warm = int(budget.warmup * budget.iters)
    b0, b1 = budget.beta
    for it in range(budget.iters):
        i = it % n_batches
        weights = {_wkey(n): r.soft() for n, r in roundings.items()}
        loss = _sq_error(block.run(i, weights), block.targets[i])
        if it >= warm:
            progress = (it - warm) / max(1, budget.iters - warm)
            beta = b1 + 0.5 * (b0 - b1) * (1 + np.cos(np.pi * progress))
            loss = loss + budget.reg_weight * sum(r.reg(beta) for r in roundings.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = {n: r.hard_integers() * r.scale for n, r in roundings.items()}
    record.mse_learned = block.error(lambda m, n: learned[n])
    if record.mse_learned <= record.mse_chosen_clip:
        record.kept = "learned"
        final = learned
    else:
        record.kept = "nearest"
        final = {n: nearest_at(ratio)(m, n) for n, m in block.layers}
    with torch.no_grad():
        for n, m in block.layers:
            _weight(m).copy_(final[n])


def reconstruct(
    model: nn.Module,
    data: np.ndarray,
    qmax: int = PT2E_QMAX,
    budget: ReconstructBudget | None = None,
) -> tuple[nn.Module, ReconstructReport]:
    """A copy of ``model`` (eval mode) with batch norms folded and reconstructed weights on the
    ``[-qmax, qmax]`` per-channel grid; ``data``: calibration images ``(N, C, H, W)`` float32."""
    budget = budget or ReconstructBudget()
    t0 = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(data[: budget.images], dtype=np.float32))
    quant = copy.deepcopy(model).eval()
    for p in quant.parameters():
        p.requires_grad_(False)
    folded = fold_batchnorms(quant, x[:1])
    with torch.no_grad():  # folding must not change the function: else reconstruct the unfolded model
        want, got = model.eval()(x[:4]), quant(x[:4])
    if folded and not torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()) + 1e-5):
        log.warning("reconstruction: folding the batch norms changed the outputs; reconstructing without folding")
        quant, folded = copy.deepcopy(model).eval(), 0
        for p in quant.parameters():
            p.requires_grad_(False)
    ref = copy.deepcopy(quant)
    report = ReconstructReport(qmax=qmax, budget=budget, folded_batchnorms=folded, images=len(x))
    for name in find_blocks(quant, x[:1]):
        tb = time.perf_counter()
        targets = _capture(ref, name, x, budget.batch, "out")
        inputs = _capture(quant, name, x, budget.batch, "in")
        module = quant.get_submodule(name)
        record = BlockRecord(name, [n for n, _ in _quant_layers(module)], 1.0, 0.0, 0.0, 0.0, "nearest", 0.0)
        if not inputs or not any(_is_act(a) for a in inputs[0][0]):
            log.warning("reconstruction: block %s takes no tensor input; rounded to nearest", name)
            continue
        with torch.enable_grad():
            _reconstruct_block(_Block(module, inputs, targets, qmax, budget.act_bits), budget, record)
        record.seconds = time.perf_counter() - tb
        report.blocks.append(record)
        log.info(
            "reconstruct %s (%d layers): clip %.2f, MSE nearest %.4g -> %.4g (%s), %.1f s",
            name,
            len(record.layers),
            record.clip_ratio,
            record.mse_nearest,
            min(record.mse_learned, record.mse_chosen_clip),
            record.kept,
            record.seconds,
        )
    report.seconds = time.perf_counter() - t0
    log.info("reconstruction: %d blocks on %d images in %.1f s", len(report.blocks), len(x), report.seconds)
    return quant, report


def learned_integers(model: nn.Module, qmax: int = PT2E_QMAX) -> dict[str, np.ndarray]:
    """The per-channel integers of every conv / linear weight of a reconstructed model (layer name -> int
    array shaped like the weight): what the targets must store."""
    out = {}
    for name, m in _quant_layers(model):
        w = _weight(m).detach()
        out[name] = nearest_integers(w, channel_scale(w, qmax), qmax).to(torch.int32).numpy()
    return out


def target_qmax(target: str, activation_dtype: str = "uint8") -> int:
    """The weight grid a target's own quantizer computes: onnxruntime's S8S8 form 7-bit int8, its U8S8 default
    8-bit, PT2E's [-127, 127]."""
    if target == "onnx":
        return ONNX_S8S8_QMAX if activation_dtype == "int8" else ONNX_QMAX
    return PT2E_QMAX


_CACHE: dict[tuple, tuple[nn.Module, ReconstructReport]] = {}  # the last reconstruction: one per export


def _fingerprint(model: nn.Module, data: np.ndarray) -> tuple:
    with torch.no_grad():
        weights = tuple(float(p.double().abs().sum()) for p in model.parameters())
    return id(model), weights, hashlib.sha1(np.ascontiguousarray(data).tobytes()).hexdigest()


def reconstruct_for_target(
    target: str, model: nn.Module, data: np.ndarray, settings: Any
) -> tuple[nn.Module, ReconstructReport]:
    """:func:`reconstruct` on ``target``'s grid with the budget of ``settings`` (a ``QuantSettings``). The
    result is reused for the next target of the same model, data and grid (tflite, coreml and executorch in
    one export share it)."""
    budget = ReconstructBudget(iters=int(getattr(settings, "reconstruct_iters", ReconstructBudget.iters)))
    qmax = target_qmax(target, str(getattr(settings, "activation_dtype", "uint8")))
    key = (*_fingerprint(model, data[: budget.images]), qmax, budget)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = reconstruct(model, data, qmax, budget)
    else:
        log.info("reconstruction: reusing the one of this model and calibration set (grid +-%d)", qmax)
    return _CACHE[key]
