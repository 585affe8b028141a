"""Generic export-friendly rewrites, each numerically equal to the module it replaces (proven by
tests/converters/test_formulations.py): XNNPACK-friendly spellings of strided average pooling and depthwise transposed
convolutions, and drop-path / dropout removed for every target.

EdgeViT's depthwise transposed conv (kernel = stride = r) is one broadcasting multiply on both XNNPACK targets
(:class:`DepthwiseUpsampleConv`): XNNPACK takes the authors' op only on ExecuTorch, and there as a slow
"Deconvolution ... Subconv2D" (a fifth of EdgeViT-XXS's time in its ETDump profile); written through ``expand``,
the product left ``expand_copy`` to ExecuTorch's portable kernels and, in an int8 LiteRT model, a BROADCAST_TO
per block to LiteRT's built-in kernels, outside XNNPACK (docs/quantization.md "Speed"). On LiteRT and
onnxruntime EdgeViT's delegate sampler runs on the token sequence (:class:`TokenSampledSparseAttn`: a stride-1
slice, no transposes to and from NCHW and no strided slice, which XNNPACK does not delegate; onnxruntime: 4 %
faster in fp32 and int8 alike).

On both XNNPACK targets ``nn.SiLU`` is spelled ``x * sigmoid(x)`` (:class:`SigmoidMulSiLU`): the PT2E quantizers
have no annotator for ``aten.silu`` and left it in float between a dequantize and a quantize; as a sigmoid and a
mul it runs in int8 (MobileViT-XS int8 on LiteRT 0.91x -> 0.52x of fp32, ExecuTorch 0.86x -> 0.54x with the
fusion split of :mod:`.zoo`; docs/quantization.md "Speed").

For ExecuTorch's XNNPACK delegate (formulation ``executorch``, docs/executorch.md "Ops outside the delegate"):
LayerNorm as matrix products and a square root (:class:`MatmulLayerNorm`: executorch 1.5.1's partitioner takes
no ``native_layer_norm`` and no ``mean.dim`` over the last axis of a rank-3 tensor, but it takes ``matmul``,
``sqrt`` and ``div``), and EdgeViT's attention with 3-D batched matmuls on slices of one permuted ``qkv``
(:class:`BmmGlobalSparseAttn`: the rank-4 ``q @ k^T`` left ``expand_copy`` outside the delegate and
``qkv[0..2]`` ``select_copy``); its LayerNorm is then rewritten like every other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.edgevit import GlobalSparseAttn
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
    """Depthwise ``ConvTranspose2d(kernel=stride=r)`` as one broadcasting product: ``x`` viewed as
    ``(B, C, H, 1, W, 1)`` times the kernel viewed as ``(1, C, 1, r, 1, r)``, reshaped to ``(B, C, H r, W r)``,
    plus the bias: each output pixel (i, j) = x[i // r, j // r] * w[i % r, j % r] + b, the same single product
    per pixel as the transposed conv. No TRANSPOSE_CONV and no ``expand`` (BROADCAST_TO) in the graph: XNNPACK
    delegates all of it, in float and in int8."""

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        self.r = int(conv.stride[0])
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)  # (C, 1, r, r)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        r = self.r
        y = x.reshape(B, C, H, 1, W, 1) * self.weight.reshape(1, C, 1, r, 1, r)
        return y.reshape(B, C, H * r, W * r) + self.bias.reshape(1, C, 1, 1)


class MatmulLayerNorm(nn.Module):
    """``LayerNorm`` over the last axis written with matrix products: the mean and the (biased) variance are
    ``linear(x, 1/C)`` and ``linear((x - mu)^2, 1/C)`` (a 1-output fully connected layer, whatever the input's
    strides; ``x @ v`` on a transposed input becomes ``expand`` + ``bmm``), then ``(x - mu) / sqrt(var + eps) * w
    + b``. Equal to the fused kernel up to float rounding (sums in another order); XNNPACK delegates every op."""

    avg: torch.Tensor

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        (c,) = norm.normalized_shape
        self.eps = float(norm.eps)
        self.register_buffer("avg", torch.full((1, c), 1.0 / c))
        weight = norm.weight.detach().clone() if norm.weight is not None else torch.ones(c)
        bias = norm.bias.detach().clone() if norm.bias is not None else torch.zeros(c)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = F.linear(x, self.avg)
        d = x - mu
        var = F.linear(d * d, self.avg)
        return d / torch.sqrt(var + self.eps) * self.weight + self.bias


class BmmGlobalSparseAttn(nn.Module):
    """EdgeViT's ``GlobalSparseAttn`` with the heads folded into the batch axis: ``qkv`` is permuted once to
    ``(3 * B * heads, N, d)``, q / k / v are contiguous slices of it, and both products are 3-D ``bmm``: the
    same sums as the authors' rank-4 matmuls. It runs the wrapped module's own layers (``qkv``, ``proj``, the
    sampler, ``LocalProp``, ``norm``), so the formulation's other rewrites still reach them."""

    def __init__(self, attn: GlobalSparseAttn):
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        a = self.attn
        B, _, C = x.shape
        h = a.num_heads
        d = C // h
        sr = a.sr
        if sr > 1:
            x = a.sample(x, H, W)
        n = x.shape[1]
        qkv = a.qkv(x).reshape(B, n, 3, h, d).permute(2, 0, 3, 1, 4).reshape(3 * B * h, n, d)
        q, k, v = qkv[: B * h], qkv[B * h : 2 * B * h], qkv[2 * B * h :]
        if a.scale_queries:  # the module's own order (GlobalSparseAttn.logits), as explicit bmm: `@` adds expand_copy
            logits = torch.bmm(q * a.scale, k.transpose(1, 2))
        else:
            logits = torch.bmm(q, k.transpose(1, 2)) * a.scale
        attn = a.attn_drop(logits.softmax(dim=-1))
        x = torch.bmm(attn, v).reshape(B, h, n, d).transpose(1, 2).reshape(B, n, C)
        if sr > 1:
            x = x.permute(0, 2, 1).reshape(B, C, H // sr, W // sr)
            x = a.LocalProp(x)
            x = x.reshape(B, C, -1).permute(0, 2, 1)
            x = a.norm(x)
        return a.proj_drop(a.proj(x))


class TokenGridSample(nn.Module):
    """``AvgPool2d(kernel_size=1, stride=r)`` of the ``(B, C, H, W)`` map, applied to its ``(B, H W, C)`` token
    sequence: it keeps the tokens of every r-th row and column, which in the 4-D view ``(B H/r, r, W/r, r C)`` of
    the sequence are ``[:, :1, :, :C]``, one stride-1 slice. Pure data movement, so equal bit for bit."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, _, C = x.shape
        r = self.stride
        return x.reshape(B * (H // r), r, W // r, r * C)[:, :1, :, :C].reshape(B, -1, C)


class TokenSampledSparseAttn(GlobalSparseAttn):
    """EdgeViT's ``GlobalSparseAttn`` whose delegate sampler runs on the token sequence (:class:`TokenGridSample`)
    instead of a transpose to NCHW, the pooling and a transpose back. The rewrite switches the class of the
    formulation's deep copy in place and swaps its parameter-free ``sampler``: the module keeps its path
    (``--exclude`` / ``--analyze`` names stay the authors') and its state dict."""

    sampler: TokenGridSample

    def sample(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        # H, W are multiples of sr: the authors' LocalProp reshapes the sampled map to (H / sr, W / sr)
        return self.sampler(x, H, W)


#: ``nn.LayerNorm`` subclasses whose ``forward`` is ``F.layer_norm`` over the last axis, as the base class's (timm's
#: ``LayerNorm``, with its fast-norm option off by default); others, such as timm's ``LayerNorm2d``, permute first
_LAST_AXIS_LAYER_NORMS = {("timm.layers.norm", "LayerNorm")}


def _plain_layer_norm(m: nn.Module) -> bool:
    """A LayerNorm over the last axis only: ``nn.LayerNorm`` itself or a subclass known to keep its ``forward``."""
    if not isinstance(m, nn.LayerNorm) or len(m.normalized_shape) != 1:
        return False
    cls = type(m)
    if cls is nn.LayerNorm:
        return True
    return (cls.__module__, cls.__name__) in _LAST_AXIS_LAYER_NORMS and not getattr(m, "_fast_norm", False)


class SigmoidMulSiLU(nn.Module):
    """``nn.SiLU`` spelled as its definition, ``x * sigmoid(x)``: one ``sigmoid`` and one ``mul`` in the exported
    graph, which the PT2E quantizers annotate (litert-torch: the sigmoid with its fixed output grid, the mul;
    ExecuTorch's XNNPACK quantizer: the mul), where ``aten.silu`` has no annotator and ran in float between a
    DEQUANTIZE and a QUANTIZE."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


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


def _kernel_stride_depthwise(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.ConvTranspose2d)
        and m.groups == m.in_channels == m.out_channels
        and m.kernel_size == m.stride
        and m.kernel_size[0] == m.kernel_size[1]
        and m.padding == (0, 0)
        and m.output_padding == (0, 0)
        and m.dilation == (1, 1)
    )


@register_rewrite("depthwise_convtranspose_to_broadcast", {"xnnpack", "executorch"})
def _dw_convtranspose(m: nn.Module) -> nn.Module | None:
    return DepthwiseUpsampleConv(m) if isinstance(m, nn.ConvTranspose2d) and _kernel_stride_depthwise(m) else None


def _token_sampleable(m: nn.Module) -> bool:
    """EdgeViT's own ``GlobalSparseAttn`` with ``sr > 1`` and the authors' sampler, ``AvgPool2d(1, sr)``."""
    if type(m) is not GlobalSparseAttn or m.sr <= 1 or not isinstance(m.sampler, nn.AvgPool2d):
        return False
    sample = _avgpool_k1(m.sampler)
    return isinstance(sample, StridedSample) and sample.stride == m.sr


@register_rewrite("edgevit_sampler_on_tokens", {"xnnpack", "onnx"})
def _edgevit_token_sampler(m: nn.Module) -> nn.Module | None:
    if not isinstance(m, GlobalSparseAttn) or not _token_sampleable(m):
        return None
    m.__class__ = TokenSampledSparseAttn  # the formulation's deep copy: switched in place, as timm_attention_unfused
    m.sampler = TokenGridSample(m.sr)
    return m


# LiteRT int8 (litert-torch's quantizer): the authors' ``(q k^T) * scale`` gets an int8 MUL, whose quantized input
# makes the converter write q k^T as an int8 BATCH_MATMUL, a kernel LiteRT's XNNPACK delegate does not take and that
# runs on LiteRT's reference kernel (perf: 17 % of EdgeViT-XXS's int8 time). Scaling the queries instead puts the
# MUL on q (int8, in XNNPACK) and leaves q k^T a float BATCH_MATMUL between DEQUANTIZEs, in XNNPACK
# (docs/quantization.md "Speed"). In place, after the sampler rewrite, so both apply to the same module.
@register_rewrite("edgevit_queries_scaled", {"xnnpack"})
def _edgevit_queries_scaled(m: nn.Module) -> nn.Module | None:
    if isinstance(m, GlobalSparseAttn) and not m.scale_queries:
        m.scale_queries = True
        return m
    return None


# every target, ExecuTorch included. ExecuTorch ("executorch") keeps the authors' delegate sampler: on
# ExecuTorch-XNNPACK the strided slice runs in portable kernels and measured slower; its own rewrites are below
# (docs/executorch.md "Formulation")
@register_rewrite("silu_as_sigmoid_mul", {"xnnpack", "executorch"})
def _silu(m: nn.Module) -> nn.Module | None:
    return SigmoidMulSiLU() if type(m) is nn.SiLU else None


@register_rewrite("drop_path_off", EVERY_TARGET)
def _drop_path(m: nn.Module) -> nn.Module | None:
    from timm.layers import DropPath

    if isinstance(m, (DropPath, nn.Dropout)):
        return Inert()
    return None


# ExecuTorch-XNNPACK: the ops the partitioner leaves to the portable kernels, in forms it delegates
# (measured in docs/executorch.md "Formulation")
@register_rewrite("layer_norm_as_matmul", {"executorch"})
def _layer_norm(m: nn.Module) -> nn.Module | None:
    return MatmulLayerNorm(m) if isinstance(m, nn.LayerNorm) and _plain_layer_norm(m) else None


@register_rewrite("timm_attention_unfused", {"executorch"})
def _timm_attention_unfused(m: nn.Module) -> nn.Module | None:
    """timm's attention modules with their own ``fused_attn`` switch (ViT's ``Attention``, PVT-v2's, Twins', ...)
    computing ``softmax(q k^T * scale) v`` with explicit matmuls, timm's reference path, instead of
    ``F.scaled_dot_product_attention``, whose decomposition in ``torch.export`` adds masking ops (``logical_not``,
    ``any``, ``eq``, ``full_like``, ``where``, ``mul.Scalar``) and ``squeeze_copy`` that executorch 1.5.1's XNNPACK
    partitioner leaves to the portable kernels. The module is already the formulation's deep copy: switched in
    place."""
    if type(m).__module__.startswith("timm.") and getattr(m, "fused_attn", None) is True:
        setattr(m, "fused_attn", False)  # noqa: B010  (nn.Module's __setattr__ types it as a tensor)
        return m
    return None


@register_rewrite("edgevit_attention_bmm", {"executorch"})
def _edgevit_attention(m: nn.Module) -> nn.Module | None:
    return BmmGlobalSparseAttn(m) if type(m) is GlobalSparseAttn else None
