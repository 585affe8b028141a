"""Export-friendly rewrites for the model zoo, registered with :func:`edgevit_deploy.formulations.register_rewrite`.

:mod:`edgevit_deploy.formulations.registry` imports this module the first time a formulation is looked up. Each
rewrite returns a module numerically equal to the one it replaces (proven by tests/converters/test_zoo_formulations.py),
or ``None`` when it does not apply.

* ``unfold_patches_to_reshape``: ``nn.Unfold`` whose kernel equals its stride (non-overlapping patches, as
  in TNT's pixel embedding) is ``im2col``. Measured on a 4x4-patch Unfold (torch 2.14, litert-torch 0.10,
  coremltools 9): LiteRT gets BROADCAST_TO / GATHER_ND / CONCATENATION (gathers XNNPACK does not delegate)
  and Core ML a convolution with a one-hot kernel. For non-overlapping patches it is a pure reshape /
  transpose, which every target runs natively.
* ``fold_patches_to_reshape``: the inverse, ``nn.Fold`` with kernel equal to stride (``col2im``). Measured:
  the ONNX exporter refuses it at opset 17 ("aten::col2im ... added in version 18"), the LiteRT interpreter
  fails to prepare the STABLEHLO_SCATTER it becomes, Core ML lowers it to gathers. Written as a reshape /
  transpose it exports everywhere.
* ``linear_attention_broadcast`` (XNNPACK / LiteRT only): timm's MobileViTv2 ``LinearSelfAttention``
  multiplies by ``context_vector.expand_as(value)``; litert-torch 0.10 rejects the graph ("'tfl.mul' op
  operands don't have broadcast-compatible shapes") whenever a patch grid has more than one patch. The same
  product with implicit broadcasting converts (measured on a 32-channel module, 4 patches).
* ``twins_window_attention_rank5`` (Core ML only): timm's Twins ``LocallyGroupedAttn`` partitions windows
  with rank-6 reshapes, and coremltools 9 refuses the program ("Core ML only supports tensors with
  rank <= 5. Layer "view_2", with type "reshape", outputs a rank 6 tensor."). The same attention with the
  batch and window axes merged stays at rank <= 5.
* ``mobilevig_mrconv_without_zeros_like`` (XNNPACK / LiteRT only): MobileViG's max-relative graph conv
  starts its running max from ``torch.zeros_like(x)``; the int8 (PT2E) conversion of litert-torch 0.10
  then fails ("Attempting to convert non-NHWC compatible node to NHWC: dequantize_per_tensor_91"). The
  same max written as ``relu(max of the differences)``, and as a conv on ``x`` alone when the map is too
  small to have neighbours, has no ``zeros_like`` and converts (see :class:`MaxRelativeConvNoZeros`).
* ``vcmamba_separate_delta_bias`` (ExecuTorch only): VCMamba's ``PlainMamba2D`` adds ``dt_proj.bias`` a second
  time before the softplus, so the same constant feeds two XNNPACK-delegated nodes (the linear's bias and the
  add). executorch 1.5.1's XNNPACK runtime crashes (SIGSEGV) loading such a ``.pte`` from a file (every VCMamba,
  fp32; minimal repro: ``linear(x) + linear.bias``). The same sum with the second bias from a copy of it runs
  (see :class:`SeparateDeltaBiasMamba2D`).
* ``mobilevit_fusion_split`` (ExecuTorch only): timm's ``MobileVitBlock`` ends with
  ``conv_fusion(cat(shortcut, x))``. ExecuTorch's ``XNNPACKQuantizer`` gives a concatenation's inputs and output
  one shared observer, which reaches the inputs' producers: the block input (range +-0.14 in MobileViT-XS's
  ``stages.2.1``), which also feeds the block's own convs, went int8 on the grid of the projection it is
  concatenated with (0..7.6, step 0.027): MobileViT-XS int8 15.9 dB against fp32 (PT2E in PyTorch, 224 px).
  Keeping the cat float does not lower (XNNPACK 1.5.1 takes the dequantize -> cat -> quantize as an int8 cat
  with unequal scales: "Failed to create cat2 node ... xnn_status_invalid_parameter"). Split along its input
  channels, with its BatchNorm folded, the fusion conv is ``conv_a(shortcut) + conv_b(x)``: no concatenation,
  each input on its own grid (26.2 dB; litert-torch's quantizer, whose cat annotation does not match here,
  26.5 dB with or without the split). See :class:`SplitFusionMobileVitBlock`.

Patch (un)folding is written with rank <= 4 intermediates and no full-range slice for the same reason: a
rank-6 reshape fails in Core ML, and a slice that keeps everything is exported as ``aten.alias``, which
coremltools 9 does not convert ("Unsupported fx node alias", TNT's pixel embedding).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import EVERY_TARGET, register_rewrite
from .rewrites import SigmoidMulSiLU

if TYPE_CHECKING:
    from ..models.vcmamba import PlainMamba2D

__all__ = [
    "BroadcastLinearSelfAttention",
    "MaxRelativeConvNoZeros",
    "PatchFold",
    "PatchUnfold",
    "Rank5LocallyGroupedAttn",
    "SeparateDeltaBiasMamba2D",
    "SplitFusionMobileVitBlock",
]


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _non_overlapping(m: nn.Unfold | nn.Fold) -> tuple[int, int] | None:
    """The (kh, kw) kernel of an Unfold / Fold that tiles without overlap, gaps or padding, else None."""
    k, s = _pair(m.kernel_size), _pair(m.stride)
    if k == s and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1):
        return k
    return None


class PatchUnfold(nn.Module):
    """``nn.Unfold(kernel_size=k, stride=k)``: (B, C, H, W) -> (B, C*kh*kw, nh*nw) by reshape / permute.

    Like Unfold, rows / columns beyond the last whole patch are dropped. Every intermediate has rank <= 4
    (Core ML refuses rank-6 tensors: "Core ML only supports tensors with rank <= 5"), and the crop is only
    emitted when it drops something: a full-range slice is exported as ``aten.alias``, which coremltools 9
    has no converter for ("Unsupported fx node alias").
    """

    def __init__(self, kernel: tuple[int, int]):
        super().__init__()
        self.kh, self.kw = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        kh, kw = self.kh, self.kw
        nh, nw = H // kh, W // kw
        if nh * kh != H or nw * kw != W:
            x = x[:, :, : nh * kh, : nw * kw]
        # x[b, c, i*kh + a, j*kw + d] -> out[b, (c*kh + a)*kw + d, i*nw + j]
        x = x.reshape(B * C * nh, kh, nw, kw).permute(0, 1, 3, 2)  # (BCnh, kh, kw, nw)
        x = x.reshape(B * C, nh, kh * kw, nw).permute(0, 2, 1, 3)  # (BC, kh*kw, nh, nw)
        return x.reshape(B, C * kh * kw, nh * nw)


class PatchFold(nn.Module):
    """``nn.Fold(output_size=(H, W), kernel_size=k, stride=k)``: (B, C*kh*kw, nh*nw) -> (B, C, H, W).

    Pixels of the output not covered by a whole patch are zero, as with Fold. Every intermediate has
    rank <= 4, for Core ML (see :class:`PatchUnfold`).
    """

    def __init__(self, output_size: tuple[int, int], kernel: tuple[int, int]):
        super().__init__()
        self.out_h, self.out_w = output_size
        self.kh, self.kw = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, CK, _ = x.shape
        kh, kw = self.kh, self.kw
        nh, nw = self.out_h // kh, self.out_w // kw
        C = CK // (kh * kw)
        x = x.reshape(B * C, kh * kw, nh, nw).permute(0, 2, 1, 3)  # (BC, nh, kh*kw, nw)
        x = x.reshape(B * C * nh, kh, kw, nw).permute(0, 1, 3, 2)  # (BCnh, kh, nw, kw)
        x = x.reshape(B, C, nh * kh, nw * kw)
        pad_h, pad_w = self.out_h - nh * kh, self.out_w - nw * kw
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h))
        return x


@register_rewrite("unfold_patches_to_reshape", EVERY_TARGET)
def _unfold(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.Unfold):
        kernel = _non_overlapping(m)
        if kernel is not None:
            return PatchUnfold(kernel)
    return None


@register_rewrite("fold_patches_to_reshape", EVERY_TARGET)
def _fold(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.Fold):
        kernel = _non_overlapping(m)
        if kernel is not None:
            return PatchFold(_pair(m.output_size), kernel)
    return None


class BroadcastLinearSelfAttention(nn.Module):
    """timm's MobileViTv2 ``LinearSelfAttention`` (separable self-attention) with an implicit broadcast in
    place of ``expand_as``; same parameters (shared with the original module), same numbers."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.inner = attn

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor | None = None) -> torch.Tensor:
        a: Any = self.inner  # timm's module: its attributes are typed by timm, not nn.Module
        if x_prev is not None:  # cross-attention: not used by MobileViTv2's blocks; timm's own code
            return a(x, x_prev)
        query, key, value = a.qkv_proj(x).split([1, a.embed_dim, a.embed_dim], dim=1)
        context_scores = a.attn_drop(torch.softmax(query, dim=-1))
        context_vector = (key * context_scores).sum(dim=-1, keepdim=True)
        return a.out_drop(a.out_proj(torch.relu(value) * context_vector))


def _wrap_exact(module: str, cls_name: str, wrapper: Callable[[nn.Module], nn.Module]):
    """A rewrite wrapping modules of exactly ``module.cls_name`` (imported on use: timm stays optional)."""

    def rewrite(m: nn.Module) -> nn.Module | None:
        return wrapper(m) if type(m) is getattr(importlib.import_module(module), cls_name) else None

    return rewrite


_linear_attention = register_rewrite("linear_attention_broadcast", {"xnnpack"})(
    _wrap_exact("timm.models.mobilevit", "LinearSelfAttention", BroadcastLinearSelfAttention)
)


class Rank5LocallyGroupedAttn(nn.Module):
    """timm's Twins ``LocallyGroupedAttn`` (self-attention inside ws x ws windows) with every tensor of
    rank <= 5; same parameters (shared with the original module), same numbers.

    timm splits the (B, H, W, C) map into (B, H/ws, ws, W/ws, ws, C) windows and its qkv into a rank-6
    (B, nW, ws*ws, 3, heads, head_dim) tensor, which Core ML refuses ("Core ML only supports tensors with
    rank <= 5. Layer "view_2", with type "reshape", outputs a rank 6 tensor."). Here the batch and the
    window rows share one axis: windows are (B*nW, ws*ws, C), qkv (3, B*nW, heads, ws*ws, head_dim).
    """

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.inner = attn

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        a: Any = self.inner  # timm's module: its attributes are typed by timm, not nn.Module
        ws, heads = a.ws, a.num_heads
        B, N, C = x.shape
        H, W = size
        x = x.view(B, H, W, C)
        pad_r = (ws - W % ws) % ws
        pad_b = (ws - H % ws) % ws
        x = nn.functional.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, Hp, Wp, _ = x.shape
        _h, _w = Hp // ws, Wp // ws
        # x[b, i*ws + p, j*ws + q, c] -> windows[(b*_h + i)*_w + j, p*ws + q, c]
        x = x.reshape(B * _h, ws, _w, ws * C).transpose(1, 2).reshape(B * _h * _w, ws * ws, C)
        qkv = a.qkv(x).reshape(B * _h * _w, ws * ws, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B*nW, heads, ws*ws, head_dim)
        if a.fused_attn:  # inference: no attention dropout (attn_drop may already be formulations.Inert)
            x = nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * a.scale) @ k.transpose(-2, -1)
            x = a.attn_drop(attn.softmax(dim=-1)) @ v
        # back: (B*nW, heads, ws*ws, hd) -> (B*_h, _w, ws, ws*C) -> (B*_h, ws, _w, ws*C) -> (B, Hp, Wp, C)
        x = x.transpose(1, 2).reshape(B * _h, _w, ws, ws * C).transpose(1, 2).reshape(B, Hp, Wp, C)
        if pad_r > 0 or pad_b > 0:
            x = x[:, :H, :W, :].contiguous()
        x = x.reshape(B, N, C)
        return a.proj_drop(a.proj(x))


_twins_window_attention = register_rewrite("twins_window_attention_rank5", {"coreml"})(
    _wrap_exact("timm.models.twins", "LocallyGroupedAttn", Rank5LocallyGroupedAttn)
)


class MaxRelativeConvNoZeros(nn.Module):
    """MobileViG's ``MRConv4d`` (max-relative graph conv over the SVGA graph) without ``torch.zeros_like``;
    same numbers.

    The original computes ``x_j = max(0, x - shift_1(x), x - shift_2(x), ...)`` from ``zeros_like(x)`` and
    then ``nn(cat(x, x_j))``. In the quantized graph one dequantize node of ``x`` feeds both ``zeros_like``
    and the ``cat``. litert-torch 0.10's layout pass keeps ``zeros_like`` in NCHW, puts a transpose
    before it and, doing so, replaces that dequantize node's metadata (its shape is lost); when it then
    moves the NHWC ``cat`` it no longer sees a 4-D input and gives up: "Attempting to convert non-NHWC
    compatible node to NHWC: dequantize_per_tensor_91" (every MobileViG, TFLite int8).

    Here ``x_j = relu(max(x - shift_1(x), ...))``, the same value, and when the map has no neighbour
    (H and W <= K, e.g. MobileViG's 2x2 SVGA stage at 64 px) ``x_j`` is 0 and ``conv(cat(x, 0))`` is the
    conv with its weights on ``x`` only (``x_conv``, a copy of the first ``C`` input channels' weights).
    The BatchNorm / GELU after the conv are the original module's.
    """

    def __init__(self, mr: Any):
        super().__init__()
        self.inner = mr
        conv: nn.Conv2d = mr.nn[0]
        c = conv.in_channels // 2
        self.x_conv = nn.Conv2d(c, conv.out_channels, 1, bias=conv.bias is not None)
        with torch.no_grad():
            self.x_conv.weight.copy_(conv.weight[:, :c])
            if conv.bias is not None and self.x_conv.bias is not None:
                self.x_conv.bias.copy_(conv.bias)
        self.x_conv.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mr: Any = self.inner  # MobileViG's MRConv4d
        _, _, H, W = x.shape
        K = mr.K
        diffs = [x - torch.cat([x[:, :, -i:, :], x[:, :, :-i, :]], dim=2) for i in range(K, H, K)]
        diffs += [x - torch.cat([x[:, :, :, -i:], x[:, :, :, :-i]], dim=3) for i in range(K, W, K)]
        if not diffs:  # no neighbour: x_j == 0
            return mr.nn[1:](self.x_conv(x))
        x_j = diffs[0]
        for d in diffs[1:]:
            x_j = torch.maximum(x_j, d)
        return mr.nn(torch.cat([x, torch.relu(x_j)], dim=1))


@register_rewrite("mobilevig_mrconv_without_zeros_like", {"xnnpack"})
def _mobilevig_mrconv(m: nn.Module) -> nn.Module | None:
    from ..models.mobilevig import MRConv4d

    if type(m) is not MRConv4d:
        return None
    conv = m.nn[0]
    if (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.groups == 1
        and conv.in_channels % 2 == 0
    ):
        return MaxRelativeConvNoZeros(m)
    return None


class SeparateDeltaBiasMamba2D(nn.Module):
    """VCMamba's ``PlainMamba2D`` (shared ``delta_bias``, the authors') with the bias added before the softplus
    taken from a copy of ``dt_proj.bias`` (the buffer ``delta_bias``, not in the state dict); the mixer's own
    layers run (shared with the original module), same numbers.

    The authors compute ``softplus(dt_proj(dt) + dt_proj.bias)``: exported, one constant is both the linear's
    bias and an operand of the add, two nodes of one XNNPACK delegate, and executorch 1.5.1's runtime crashes
    (SIGSEGV) when it loads that ``.pte`` from a file. With two constants of equal value it runs. The model's
    own ``delta_bias="separate"`` option does the same at construction (:data:`~..models.vcmamba.DeltaBias`).
    """

    delta_bias: torch.Tensor

    def __init__(self, mixer: PlainMamba2D):
        super().__init__()
        self.inner = mixer
        self.register_buffer("delta_bias", mixer.dt_proj.bias.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.mix(x, self.delta_bias)


@register_rewrite("vcmamba_separate_delta_bias", {"executorch"})
def _vcmamba_delta_bias(m: nn.Module) -> nn.Module | None:
    from ..models.vcmamba import PlainMamba2D

    if type(m) is PlainMamba2D and m.delta_bias is None:  # shared (the authors'); "separate" needs nothing
        return SeparateDeltaBiasMamba2D(m)
    return None


class SplitFusionMobileVitBlock(nn.Module):
    """timm's ``MobileVitBlock`` with ``conv_fusion(cat(shortcut, x))`` computed as ``act(conv_a(shortcut) +
    conv_b(x))``: the fusion conv's weight split along its input channels, its BatchNorm folded into both halves
    (the shift into ``conv_a``'s bias), its activation kept (a SiLU as :class:`.rewrites.SigmoidMulSiLU`, as the
    ExecuTorch formulation spells every SiLU: this module's own children are not offered to the rewrites).
    The rest is timm's forward, on the block's own modules."""

    def __init__(self, block: nn.Module):
        super().__init__()
        b: Any = block  # timm's module: its attributes are typed by timm, not nn.Module
        self.conv_kxk, self.conv_1x1, self.transformer, self.norm = b.conv_kxk, b.conv_1x1, b.transformer, b.norm
        self.conv_proj = b.conv_proj
        self.patch_size, self.patch_area = b.patch_size, b.patch_area
        conv, bn = b.conv_fusion.conv, b.conv_fusion.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale[:, None, None, None]
        shift = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        ca = b.conv_kxk.conv.in_channels if hasattr(b.conv_kxk, "conv") else b.conv_kxk.in_channels
        kw = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
        self.conv_a = nn.Conv2d(ca, weight.shape[0], bias=True, **kw)
        self.conv_b = nn.Conv2d(weight.shape[1] - ca, weight.shape[0], bias=False, **kw)
        with torch.no_grad():
            self.conv_a.weight.copy_(weight[:, :ca])
            self.conv_b.weight.copy_(weight[:, ca:])
            bias = self.conv_a.bias
            assert bias is not None  # made with bias=True above
            bias.copy_(shift)
        act = bn.act
        self.act = SigmoidMulSiLU() if type(act) is nn.SiLU else act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_1x1(self.conv_kxk(x))
        patch_h, patch_w = self.patch_size
        B, C, H, W = x.shape
        num_patch_h, num_patch_w = math.ceil(H / patch_h), math.ceil(W / patch_w)
        new_h, new_w = num_patch_h * patch_h, num_patch_w * patch_w
        interpolate = (new_h, new_w) != (H, W)
        if interpolate:
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
        num_patches = num_patch_h * num_patch_w
        x = x.reshape(B * C * num_patch_h, patch_h, num_patch_w, patch_w).transpose(1, 2)
        x = x.reshape(B, C, num_patches, self.patch_area).transpose(1, 3).reshape(B * self.patch_area, num_patches, -1)
        x = self.norm(self.transformer(x))
        x = x.contiguous().view(B, self.patch_area, num_patches, -1)
        x = x.transpose(1, 3).reshape(B * C * num_patch_h, num_patch_w, patch_h, patch_w)
        x = x.transpose(1, 2).reshape(B, C, num_patch_h * patch_h, num_patch_w * patch_w)
        if interpolate:
            x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
        x = self.conv_proj(x)
        return self.act(self.conv_a(shortcut) + self.conv_b(x))


def _fusion_splittable(m: nn.Module) -> bool:
    b: Any = m
    fusion = getattr(b, "conv_fusion", None)
    conv, bn = getattr(fusion, "conv", None), getattr(fusion, "bn", None)
    return (
        isinstance(conv, nn.Conv2d)
        and conv.groups == 1
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.affine
        and isinstance(getattr(bn, "drop", nn.Identity()), nn.Identity)
    )


@register_rewrite("mobilevit_fusion_split", {"executorch"})
def _mobilevit_fusion(m: nn.Module) -> nn.Module | None:
    mobilevit = importlib.import_module("timm.models.mobilevit")
    if type(m) is mobilevit.MobileVitBlock and _fusion_splittable(m):
        return SplitFusionMobileVitBlock(m)
    return None
