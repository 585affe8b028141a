"""Generic export-friendly rewrites, each numerically equal to the module it replaces (proven by
tests/converters/test_formulations.py): XNNPACK-friendly spellings of strided average pooling and depthwise transposed
convolutions, and drop-path / dropout removed for every target.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import EVERY_TARGET, register_rewrite


# ------------------------------------------------------------------------------------------- modules
class StridedSample(nn.Module):
    """``AvgPool2d(kernel_size=1, stride=r)`` written as a strided slice: keep every r-th pixel."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]


class DepthwiseUpsampleConv(nn.Module):
    """Depthwise ``ConvTranspose2d(kernel=stride=r)`` written as nearest upsampling times the kernel tiled
    over the grid, plus the bias: each output pixel (i, j) = x[i // r, j // r] * w[i % r, j % r] + b.

    No TRANSPOSE_CONV op in the graph, so XNNPACK delegates all of it.
    """

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        self.r = int(conv.stride[0])
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)  # (C, 1, r, r)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        r = self.r
        up = x.reshape(B, C, H, 1, W, 1).expand(B, C, H, r, W, r)
        w = self.weight.reshape(1, C, 1, r, 1, r)
        y = (up * w).reshape(B, C, H * r, W * r)
        return y + self.bias.reshape(1, C, 1, 1)


class Inert(nn.Module):
    """Drop-path / dropout at inference: the identity, with no ``bernoulli_`` left in the graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# ------------------------------------------------------------------------------------------ rewrites
@register_rewrite("avgpool_k1_to_slice", {"xnnpack"})
def _avgpool_k1(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.AvgPool2d):
        ks, ss, p = m.kernel_size, m.stride, m.padding
        k = ks if isinstance(ks, int) else (ks[0] if ks[0] == ks[1] else None)
        s = ss if isinstance(ss, int) else (ss[0] if ss[0] == ss[1] else None)
        if k == 1 and s and (p == 0 or p == (0, 0)) and not m.ceil_mode:
            return StridedSample(s)
    return None


@register_rewrite("depthwise_convtranspose_to_upsample", {"xnnpack"})
def _dw_convtranspose(m: nn.Module) -> nn.Module | None:
    if (
        isinstance(m, nn.ConvTranspose2d)
        and m.groups == m.in_channels == m.out_channels
        and m.kernel_size == m.stride
        and m.kernel_size[0] == m.kernel_size[1]
        and m.padding == (0, 0)
        and m.output_padding == (0, 0)
        and m.dilation == (1, 1)
    ):
        return DepthwiseUpsampleConv(m)
    return None


# every target, ExecuTorch included. ExecuTorch ("executorch") keeps the authors' ops otherwise: on
# ExecuTorch-XNNPACK the TFLite rewrites only add ops outside the delegate (the strided slice and the
# upsample's expand run in portable kernels) and measured slower (docs/executorch.md)
@register_rewrite("drop_path_off", EVERY_TARGET)
def _drop_path(m: nn.Module) -> nn.Module | None:
    from timm.layers import DropPath

    if isinstance(m, (DropPath, nn.Dropout)):
        return Inert()
    return None
