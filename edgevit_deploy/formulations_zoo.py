"""Export-friendly rewrites for the model zoo, registered with :func:`edgevit_deploy.formulations.register_rewrite`.

:mod:`edgevit_deploy.formulations` imports this module the first time a formulation is looked up. Each
rewrite returns a module numerically equal to the one it replaces (proven by tests/test_zoo_formulations.py),
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
"""
from __future__ import annotations

import torch
from torch import nn

from .formulations import ALL, register_rewrite

__all__ = ["BroadcastLinearSelfAttention", "PatchFold", "PatchUnfold"]


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

    Like Unfold, rows / columns beyond the last whole patch are dropped.
    """

    def __init__(self, kernel: tuple[int, int]):
        super().__init__()
        self.kh, self.kw = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        nh, nw = H // self.kh, W // self.kw
        x = x[:, :, : nh * self.kh, : nw * self.kw]
        x = x.reshape(B, C, nh, self.kh, nw, self.kw).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(B, C * self.kh * self.kw, nh * nw)


class PatchFold(nn.Module):
    """``nn.Fold(output_size=(H, W), kernel_size=k, stride=k)``: (B, C*kh*kw, nh*nw) -> (B, C, H, W).

    Pixels of the output not covered by a whole patch are zero, as with Fold.
    """

    def __init__(self, output_size: tuple[int, int], kernel: tuple[int, int]):
        super().__init__()
        self.out_h, self.out_w = output_size
        self.kh, self.kw = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, CK, L = x.shape
        nh, nw = self.out_h // self.kh, self.out_w // self.kw
        C = CK // (self.kh * self.kw)
        x = x.reshape(B, C, self.kh, self.kw, nh, nw).permute(0, 1, 4, 2, 5, 3)
        x = x.reshape(B, C, nh * self.kh, nw * self.kw)
        pad_h, pad_w = self.out_h - nh * self.kh, self.out_w - nw * self.kw
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h))
        return x


@register_rewrite("unfold_patches_to_reshape", ALL)
def _unfold(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.Unfold):
        kernel = _non_overlapping(m)
        if kernel is not None:
            return PatchUnfold(kernel)
    return None


@register_rewrite("fold_patches_to_reshape", ALL)
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
        a = self.inner
        if x_prev is not None:  # cross-attention: not used by MobileViTv2's blocks; timm's own code
            return a(x, x_prev)
        query, key, value = a.qkv_proj(x).split([1, a.embed_dim, a.embed_dim], dim=1)
        context_scores = a.attn_drop(torch.softmax(query, dim=-1))
        context_vector = (key * context_scores).sum(dim=-1, keepdim=True)
        return a.out_drop(a.out_proj(torch.relu(value) * context_vector))


@register_rewrite("linear_attention_broadcast", {"xnnpack"})
def _linear_attention(m: nn.Module) -> nn.Module | None:
    from timm.models.mobilevit import LinearSelfAttention

    if type(m) is LinearSelfAttention:
        return BroadcastLinearSelfAttention(m)
    return None
