"""FcaFormer: "FcaFormer: Forward Cross Attention in Hybrid Vision Transformer".

Haokui Zhang, Wenze Hu, Xiaoyu Wang. arXiv 2211.07198 (2022), ICCV 2023.
https://arxiv.org/abs/2211.07198, code: https://github.com/hkzhang-git/FcaFormer

Two ConvNeXt stages, then two transformer stages with forward cross attention: every block of a stage also
attends to "cross tokens" that the earlier blocks of the stage produced (a depthwise 7x7 stride-4 conv of
their output), scaled by learned factors and given a learned per-head bias. Attention carries a LeViT-style
relative position bias, so the bias tables (and the parameter count) depend on the input size: the
recorded figures are at 224, the authors' checkpoints load at 224, and the model can be built at any
multiple of 32 (``img_size``). Module and attribute names follow the authors' code; the bias gather uses
constant indices, the cross-token concatenation is unrolled at trace time (kept running, see
:meth:`FcaLayer.forward`), so the model exports.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ..errors import InputSizeError
from ._config import ModelConfig, PaperRef
from ._registry import register_model

__all__ = ["FcaFormer", "fcaformer_l1", "fcaformer_l2"]


# --------------------------------------------------------------------------------------------- blocks
class Conv2dBN(nn.Sequential):
    """Bias-free conv followed by BatchNorm (keys ``c.*`` and ``bn.*``)."""

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class PatchEmbed(nn.Module):
    """Stride-4 stem: conv-BN, GELU, conv-BN."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 3, 2, 1), nn.GELU(), Conv2dBN(embed_dim // 2, embed_dim, 3, 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class PatchMerging(nn.Module):
    """1x1 conv-BN, GELU, depthwise stride-2 3x3 conv-BN, GELU, 1x1 conv-BN. Takes NCHW maps or
    ``(B, H*W, C)`` tokens (then ``hw`` gives the grid) and returns the same layout."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim, 1)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, 2, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        tokens = x.ndim == 3
        if tokens:
            assert hw is not None
            x = x.transpose(1, 2).reshape(x.shape[0], -1, hw[0], hw[1])
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2) if tokens else x


class ChannelsLastLayerNorm(nn.Module):
    """LayerNorm over the last dim with keys ``weight`` / ``bias`` (the authors' own class)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class CxBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, Linear 4x, GELU, Linear, layer scale, residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = ChannelsLastLayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Mlp(nn.Module):
    """Token MLP with its own input LayerNorm (LayerNorm, Linear, GELU, Linear)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(self.norm(x))))))


def relative_bias_index(h: int, w: int) -> tuple[torch.Tensor, int]:
    """LeViT-style index of |dy|, |dx| offsets between all pairs of an ``h x w`` grid, and their count."""
    points = list(itertools.product(range(h), range(w)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    return torch.tensor(idxs, dtype=torch.long).view(len(points), len(points)), len(offsets)


class FcaBlock(nn.Module):
    """Transformer block with forward cross attention and token merge / enhancement.

    Block ``inner_depth`` of a stage attends over its own tokens plus ``min(inner_depth, cab_max_d)``
    groups of cross tokens; unless it is the stage's last block it also emits its own cross tokens
    (``dw_conv``, stride 4).
    """

    attention_bias_idxs: torch.Tensor  # a buffer

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        inner_depth: int,
        cab_max_d: int,
        s_up: bool,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
    ):
        super().__init__()
        self.dim = dim
        self.resolution = resolution
        self.num_heads = num_heads
        self.inner_depth = inner_depth
        self.s_up = s_up
        H, W = resolution
        self.gamma_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.gamma_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        if s_up:
            self.dw_conv = nn.Conv2d(dim, dim, 7, stride=4, padding=3, groups=dim, bias=False)
        s_token_num = math.ceil(H / 4) * math.ceil(W / 4)
        if inner_depth > 0:
            n_s = min(inner_depth, cab_max_d) * s_token_num
            self.s_token_bias = nn.Parameter(torch.zeros(1, num_heads, 1, n_s))
            self.s_norm = nn.LayerNorm(dim)
            self.s_scale_factors = nn.Parameter(torch.ones(1, n_s, 1))
        self.norm1 = nn.LayerNorm(dim)
        self.scale = (dim // num_heads) ** -0.5
        idxs, n_offsets = relative_bias_index(H, W)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_offsets))
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        self.softmax = nn.Softmax(dim=-1)
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, N, _ = t.shape
        return t.reshape(B, N, 3, self.num_heads, self.dim // self.num_heads).permute(2, 0, 3, 1, 4)

    def forward(self, x: torch.Tensor, s: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, C = x.shape
        shortcut = x
        x = self.norm1(x)
        q, k, v = self._heads(self.qkv(x))
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.attention_biases[:, self.attention_bias_idxs]
        if self.inner_depth > 0:
            assert s is not None
            s = self.s_norm(s * self.s_scale_factors)
            _, k_s, v_s = self._heads(self.qkv(s))
            attn_s = (q * self.scale) @ k_s.transpose(-2, -1) + self.s_token_bias
            attn = torch.cat((attn, attn_s), dim=-1)
            v = torch.cat((v, v_s), dim=-2)
        attn = self.attn_drop(self.softmax(attn))
        x = self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(B, N, C)))
        x = shortcut + self.drop_path(self.gamma_1 * x)
        H, W = self.resolution
        x = x.transpose(1, 2).reshape(B, C, H, W)
        s_update = self.dw_conv(x).flatten(2).transpose(1, 2) if self.s_up else None
        x = self.local_conv(x).flatten(2).transpose(1, 2)
        x = x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))
        return x, s_update


class CxLayer(nn.Module):
    """ConvNeXt stage, then optional PatchMerging."""

    def __init__(self, dim_in: int, dim_out: int, depth: int, dp_rates: Sequence[float], downsample: bool):
        super().__init__()
        self.blocks = nn.Sequential(*[CxBlock(dim_in, dp_rates[j]) for j in range(depth)])
        self.downsample = PatchMerging(dim_in, dim_out) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return self.downsample(x) if self.downsample is not None else x


class FcaLayer(nn.Module):
    """Stage of FcaBlocks passing the most recent ``cab_max_d`` groups of cross tokens forward."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        dp_rates: Sequence[float],
        downsample: bool,
        cab_max_d: int = 12,
    ):
        super().__init__()
        self.resolution = resolution
        self.cab_max_d = cab_max_d
        self.blocks = nn.ModuleList(
            [
                FcaBlock(dim_in, resolution, i, cab_max_d, i < depth - 1, num_heads, mlp_ratio, drop_path=dp_rates[i])
                for i in range(depth)
            ]
        )
        self.downsample = PatchMerging(dim_in, dim_out) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The authors keep a list of cross-token groups and concatenate its last ``cab_max_d`` entries for
        # every block. Here the concatenation is kept running (one new group appended per block, the
        # oldest dropped past ``cab_max_d``): the same tensor (tested against the list form), and each
        # group feeds ONE concatenation, so int8 TFLite can give every concatenation a single scale (the
        # list form feeds group 0 to every later concatenation, and the converter fails on the transpose
        # + reshape in front of it with "quantization parameters violate the same scale constraint").
        cross: torch.Tensor | None = None
        for blk in self.blocks:
            x, s = blk(x, cross)
            if s is not None:
                cross = s if cross is None else torch.cat((cross, s), dim=1)
                keep = self.cab_max_d * s.shape[1]
                if cross.shape[1] > keep:  # static shapes: decided at trace time, no no-op slice exported
                    cross = cross[:, -keep:]
        return self.downsample(x, self.resolution) if self.downsample is not None else x


# ---------------------------------------------------------------------------------------------- model
class FcaFormer(nn.Module):
    """Stem (stride 4), two ConvNeXt stages, two forward-cross-attention stages, mean pool, LN, head."""

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 192, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (0, 0, 6, 10),
        mlp_ratio: float = 4.0,
        cab_max_d: int = 12,
        in_chans: int = 3,
        num_classes: int = 1000,
        img_size: int = 224,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = embed_dims[-1]
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        dpr = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]  # linspace
        rates = [dpr[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(4)]
        r2, r3 = img_size // 16, img_size // 32
        self.layer_0 = CxLayer(embed_dims[0], embed_dims[1], depths[0], rates[0], downsample=True)
        self.layer_1 = CxLayer(embed_dims[1], embed_dims[2], depths[1], rates[1], downsample=True)
        self.layer_2 = FcaLayer(
            embed_dims[2],
            embed_dims[3],
            (r2, r2),
            depths[2],
            num_heads[2],
            mlp_ratio,
            rates[2],
            downsample=True,
            cab_max_d=cab_max_d,
        )
        self.layer_3 = FcaLayer(
            embed_dims[3],
            embed_dims[3],
            (r3, r3),
            depths[3],
            num_heads[3],
            mlp_ratio,
            rates[3],
            downsample=False,
            cab_max_d=cab_max_d,
        )
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise InputSizeError(
                f"FcaFormer was built for {self.img_size}x{self.img_size} inputs (its relative "
                f"position biases depend on the size) but got {tuple(x.shape[-2:])}; build it "
                "with img_size set to the input size."
            )
        x = self.layer_1(self.layer_0(self.patch_embed(x)))
        x = self.layer_3(self.layer_2(x.flatten(2).transpose(1, 2)))
        return x.mean(1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm_head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------- checkpoint filter
def checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The authors' checkpoints use our key names. Drop wrappers, non-tensors and the (derived, rebuilt
    here) ``attention_bias_idxs`` buffers that checkpoints saved before they became non-persistent hold."""
    return {
        k.removeprefix("module."): v
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and not k.endswith("attention_bias_idxs")
    }


# ------------------------------------------------------------------------------------ default configs
_PAPER = (
    "FcaFormer (arXiv 2211.07198 / ICCV 2023), ImageNet-1K table and the authors' README "
    "(no distillation); the paper reports GPU latency, no mobile latency"
)


def _cfg(
    name: str, num_params: int, gmacs: float, paper_params_m: float, paper_gmacs: float, top1: float
) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="fcaformer",
        input_size=(3, 224, 224),
        interpolation="bicubic",
        crop_pct=0.875,
        num_params=num_params,
        gmacs=gmacs,
        checkpoint_filter=checkpoint_filter_fn,
        paper=PaperRef(source=_PAPER, top1=top1, params_m=paper_params_m, gmacs=paper_gmacs),
    )


# ---------------------------------------------------------------------------------------- factories
@register_model(_cfg("fcaformer_l1", 6_187_560, 1.374, 6.2, 1.4, 80.3))
def fcaformer_l1(**kwargs: Any) -> FcaFormer:
    return FcaFormer((64, 128, 192, 320), (2, 2, 6, 2), (0, 0, 6, 10), **kwargs)


@register_model(_cfg("fcaformer_l2", 16_275_870, 3.602, 16.3, 3.6, 83.1))
def fcaformer_l2(**kwargs: Any) -> FcaFormer:
    return FcaFormer((96, 192, 320, 480), (2, 2, 7, 2), (0, 0, 10, 15), **kwargs)
