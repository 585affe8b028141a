"""EdgeViT: "EdgeViTs: Competing Light-weight CNNs on Mobile Devices with Vision Transformers".

Junting Pan, Adrian Bulat, Fuwen Tan, Xiatian Zhu, Lukasz Dudziak, Hongsheng Li, Georgios Tzimiropoulos,
Brais Martinez. ECCV 2022. https://arxiv.org/abs/2205.03436

The modules, attribute names and numerics follow the authors' public implementation exactly, so that a
checkpoint saved by their code loads with ``strict=True`` and gives the same logits. Differences: any input
size that is a multiple of 32 works (theirs asserts one), and the sampler / local propagation are plain
modules that :mod:`edgevit_deploy.formulations` can swap for export-friendly equivalents per target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from ._config import ModelConfig, PaperRef
from ._registry import register_model

__all__ = ["EdgeVit", "edgevit_s", "edgevit_xs", "edgevit_xxs"]


# --------------------------------------------------------------------------------------------- blocks
class Mlp(nn.Module):
    """Token MLP (Linear, GELU, Linear)."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class CMlp(nn.Module):
    """Convolutional MLP (1x1 conv, GELU, 1x1 conv) on NCHW maps."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_features, in_features, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class GlobalSparseAttn(nn.Module):
    """Sparse global attention among delegate tokens (every r-th pixel), propagated back by a
    depthwise transposed conv. With ``sr_ratio == 1`` it is plain multi-head self-attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        #: scale the queries before ``q k^T`` instead of the logits after it (an export formulation's switch, as timm's
        #: ``fused_attn``; the authors' order is the default). Same sums up to float rounding, and on int8 LiteRT the
        #: difference between an int8 BATCH_MATMUL on its reference kernel and a float one in XNNPACK
        self.scale_queries = False
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr = sr_ratio
        if sr_ratio > 1:
            # the authors' delegate sampler: average pooling with kernel 1 and stride r
            self.sampler: nn.Module = nn.AvgPool2d(1, sr_ratio)
            self.LocalProp = nn.ConvTranspose2d(dim, dim, sr_ratio, stride=sr_ratio, groups=dim)
            self.norm: nn.Module = nn.LayerNorm(dim)
        else:
            self.sampler = nn.Identity()
            self.upsample = nn.Identity()
            self.norm = nn.Identity()

    def sample(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """The delegate tokens: the sampler on the (B, C, H, W) map of the (B, H W, C) token sequence."""
        B, _, C = x.shape
        x = x.transpose(1, 2).reshape(B, C, H, W)
        x = self.sampler(x)
        return x.flatten(2).transpose(1, 2)

    def logits(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The scaled attention logits ``q k^T / sqrt(d)`` (``k`` as ``(..., N, d)``)."""
        if self.scale_queries:
            return (q * self.scale) @ k.transpose(-2, -1)
        return (q @ k.transpose(-2, -1)) * self.scale

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, _, C = x.shape
        if self.sr > 1:
            x = self.sample(x, H, W)
        qkv = self.qkv(x).reshape(B, -1, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.logits(q, k)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, -1, C)
        if self.sr > 1:
            x = x.permute(0, 2, 1).reshape(B, C, H // self.sr, W // self.sr)
            x = self.LocalProp(x)
            x = x.reshape(B, C, -1).permute(0, 2, 1)
            x = self.norm(x)
        return self.proj_drop(self.proj(x))


class LocalAgg(nn.Module):
    """Local aggregation: depthwise 3x3 position encoding, a 1x1 / depthwise 5x5 / 1x1 sandwich, conv-MLP."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = CMlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SelfAttn(nn.Module):
    """Global part of the block: position encoding, sparse attention and MLP on tokens."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        sr_ratio: int = 1,
    ):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = norm_layer(dim)
        self.attn = GlobalSparseAttn(dim, num_heads, qkv_bias, attn_drop, drop, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        B, C, H, W = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(B, C, H, W)


class LGLBlock(nn.Module):
    """Local-global-local block."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        sr_ratio: int = 1,
    ):
        super().__init__()
        self.LocalAgg = LocalAgg(dim, mlp_ratio, drop, drop_path) if sr_ratio > 1 else nn.Identity()
        self.SelfAttn = SelfAttn(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path, sr_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SelfAttn(self.LocalAgg(x))


class PatchEmbed(nn.Module):
    """Conv patch embedding (kernel = stride) followed by LayerNorm over channels, kept NCHW."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)  # declared first, as in the authors' code (state-dict order)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        B, C, H, W = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------------- model
class EdgeVit(nn.Module):
    def __init__(
        self,
        depth: Sequence[int] = (1, 2, 5, 3),
        embed_dim: Sequence[int] = (48, 96, 240, 384),
        head_dim: int = 48,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        sr_ratios: Sequence[int] = (4, 2, 2, 1),
        in_chans: int = 3,
        num_classes: int = 1000,
        img_size: int = 224,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        del img_size  # any multiple of 32 works; kept in the signature for the registry
        self.num_classes = num_classes
        self.num_features = embed_dim[-1]
        self.patch_embed1 = PatchEmbed(4, in_chans, embed_dim[0])
        self.patch_embed2 = PatchEmbed(2, embed_dim[0], embed_dim[1])
        self.patch_embed3 = PatchEmbed(2, embed_dim[1], embed_dim[2])
        self.patch_embed4 = PatchEmbed(2, embed_dim[2], embed_dim[3])
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depth)).tolist()
        num_heads = [d // head_dim for d in embed_dim]
        start = 0
        for i in range(4):
            blocks = nn.ModuleList(
                [
                    LGLBlock(
                        embed_dim[i],
                        num_heads[i],
                        mlp_ratio,
                        qkv_bias,
                        drop_rate,
                        attn_drop_rate,
                        dpr[start + j],
                        sr_ratios[i],
                    )
                    for j in range(depth[i])
                ]
            )
            setattr(self, f"blocks{i + 1}", blocks)
            start += depth[i]
        self.norm = nn.BatchNorm2d(embed_dim[-1])
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = self.pos_drop(getattr(self, f"patch_embed{i}")(x))
            for blk in getattr(self, f"blocks{i}"):
                x = blk(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # the global average pool of the authors' `flatten(2).mean(-1)`, written as a keepdim mean over the two
        # spatial axes of the (B, C, H, W) map: equal, and the one form ExecuTorch's XNNPACK partitioner takes
        # (executorch 1.5.1 leaves a rank-3 mean, or a rank-4 mean without keepdim, to the portable kernels)
        return self.head(x.mean((2, 3), keepdim=True).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------- checkpoint filter
def checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The authors' checkpoints use our key names; drop wrappers and non-tensor entries only."""
    return {k.removeprefix("module."): v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------------------------ default configs
_PAPER = "EdgeViTs (ECCV 2022), Table 'On-device evaluation on ImageNet-1K' (Snapdragon 888 CPU, 1 thread)"


def _cfg(name: str, num_params: int, gmacs: float, top1: float, latency: float) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="edgevit",
        input_size=(3, 224, 224),
        interpolation="bicubic",
        crop_pct=0.875,
        num_params=num_params,
        gmacs=gmacs,
        checkpoint_filter=checkpoint_filter_fn,
        paper=PaperRef(source=_PAPER, top1=top1, mobile_latency_ms=latency, latency_device="Snapdragon 888 CPU"),
    )


# ---------------------------------------------------------------------------------------- factories
@register_model(_cfg("edgevit_xxs", 4_067_704, 0.551, 74.4, 32.8))
def edgevit_xxs(**kwargs: Any) -> EdgeVit:
    return EdgeVit(depth=(1, 1, 3, 2), embed_dim=(36, 72, 144, 288), head_dim=36, **kwargs)


@register_model(_cfg("edgevit_xs", 6_770_056, 1.128, 77.5, 54.1))
def edgevit_xs(**kwargs: Any) -> EdgeVit:
    return EdgeVit(depth=(1, 1, 3, 1), embed_dim=(48, 96, 240, 384), head_dim=48, **kwargs)


@register_model(_cfg("edgevit_s", 13_108_168, 1.911, 81.0, 85.3))
def edgevit_s(**kwargs: Any) -> EdgeVit:
    return EdgeVit(depth=(1, 2, 5, 3), embed_dim=(48, 96, 240, 384), head_dim=48, **kwargs)
