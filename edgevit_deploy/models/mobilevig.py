"""MobileViG: "MobileViG: Graph-Based Sparse Attention for Mobile Vision Applications".

Mustafa Munir, William Avery, Radu Marculescu. CVPR Workshops (MobileAI) 2023.
https://arxiv.org/abs/2307.00395, code: https://github.com/SLDGroup/MobileViG

A convolutional stem, inverted-residual stages, then stages of Sparse Vision Graph Attention (SVGA): every
pixel is connected to the pixels every ``K`` rows / columns away in its row and column (a fixed graph, no
k-NN search), aggregated by max-relative graph convolution. The modules and attribute names follow the
authors' code so that their ImageNet checkpoints load with ``strict=True`` (``dist_head`` included). The
graph is built from cyclic shifts of the feature map (``torch.roll``-style slices and a running max), so it
traces and exports without gathers; any input size that is a multiple of 32 works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from ._config import ModelConfig, PaperRef
from ._registry import register_model

__all__ = ["ConvMlp", "InvertedResidual", "MobileViG", "mobilevig_b", "mobilevig_m", "mobilevig_s", "mobilevig_ti"]


# --------------------------------------------------------------------------------------------- blocks
class Stem(nn.Module):
    """Two stride-2 3x3 conv / BN / GELU layers (overall stride 4)."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, out_chans // 2, 3, stride=2, padding=1),
            nn.BatchNorm2d(out_chans // 2),
            nn.GELU(),
            nn.Conv2d(out_chans // 2, out_chans, 3, stride=2, padding=1),
            nn.BatchNorm2d(out_chans),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class ConvMlp(nn.Module):
    """1x1 conv / BN / GELU, optional depthwise 3x3 conv / BN / GELU, 1x1 conv / BN (NCHW)."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0, mid_conv: bool = False):
        super().__init__()
        self.mid_conv = mid_conv
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_features, in_features, 1)
        self.drop = nn.Dropout(drop)
        if mid_conv:
            self.mid = nn.Conv2d(hidden_features, hidden_features, 3, padding=1, groups=hidden_features)
            self.mid_norm = nn.BatchNorm2d(hidden_features)
        self.norm1 = nn.BatchNorm2d(hidden_features)
        self.norm2 = nn.BatchNorm2d(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.fc1(x)))
        if self.mid_conv:
            x = self.act(self.mid_norm(self.mid(x)))
        x = self.drop(x)
        return self.drop(self.norm2(self.fc2(x)))


class InvertedResidual(nn.Module):
    """Residual inverted bottleneck (ConvMlp with a depthwise mid conv) with a per-channel layer scale."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-5,
    ):
        super().__init__()
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop=drop, mid_conv=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.layer_scale_2 * self.mlp(x))


class MRConv4d(nn.Module):
    """Max-relative graph convolution over the SVGA graph (neighbours every ``K`` rows and columns).

    For each pixel, ``x_j = max over neighbours (x - x_neighbour)``, with neighbours taken cyclically along
    the row and the column at hops ``K, 2K, ...``; then ``nn(cat(x, x_j))``. The authors' module declares
    the BatchNorm with ``in_channels * 2`` features, which equals ``out_channels`` in every MobileViG.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int = 2):
        super().__init__()
        self.nn = nn.Sequential(
            nn.Conv2d(in_channels * 2, out_channels, 1),
            nn.BatchNorm2d(in_channels * 2),
            nn.GELU(),
        )
        self.K = K

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, H, W = x.shape
        x_j = torch.zeros_like(x)  # the authors start from x - x: the max is never below 0
        for i in range(self.K, H, self.K):
            x_j = torch.maximum(x_j, x - torch.cat([x[:, :, -i:, :], x[:, :, :-i, :]], dim=2))
        for i in range(self.K, W, self.K):
            x_j = torch.maximum(x_j, x - torch.cat([x[:, :, :, -i:], x[:, :, :, :-i]], dim=3))
        return self.nn(torch.cat([x, x_j], dim=1))


class Grapher(nn.Module):
    """SVGA token mixer: 1x1 conv / BN, max-relative graph conv, 1x1 conv / BN, residual."""

    def __init__(self, in_channels: int, drop_path: float = 0.0, K: int = 2):
        super().__init__()
        self.channels = in_channels
        self.K = K
        self.fc1 = nn.Sequential(nn.Conv2d(in_channels, in_channels, 1), nn.BatchNorm2d(in_channels))
        self.graph_conv = MRConv4d(in_channels, in_channels * 2, K=K)
        self.fc2 = nn.Sequential(nn.Conv2d(in_channels * 2, in_channels, 1), nn.BatchNorm2d(in_channels))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.fc2(self.graph_conv(self.fc1(x))))


class FFN(nn.Module):
    """Channel mixer after SVGA: 1x1 conv / BN, GELU, 1x1 conv / BN, residual."""

    def __init__(self, in_features: int, hidden_features: int, drop_path: float = 0.0):
        super().__init__()
        self.fc1 = nn.Sequential(nn.Conv2d(in_features, hidden_features, 1), nn.BatchNorm2d(hidden_features))
        self.act = nn.GELU()
        self.fc2 = nn.Sequential(nn.Conv2d(hidden_features, in_features, 1), nn.BatchNorm2d(in_features))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.fc2(self.act(self.fc1(x))))


class Downsample(nn.Module):
    """Stride-2 3x3 conv / BN."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1), nn.BatchNorm2d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


# ---------------------------------------------------------------------------------------------- model
class MobileViG(nn.Module):
    """Stem, local stages of inverted residuals, SVGA stages, conv head (+ distillation head).

    In eval mode the output is the mean of the two heads (as the authors evaluate); in training mode with
    ``distillation=True`` it is the pair ``(head, dist_head)``.
    """

    def __init__(
        self,
        local_blocks: Sequence[int] = (2, 2, 6),
        local_channels: Sequence[int] = (42, 84, 168),
        global_blocks: Sequence[int] = (2,),
        global_channels: Sequence[int] = (256,),
        emb_dims: int = 512,
        K: int = 2,
        distillation: bool = True,
        in_chans: int = 3,
        num_classes: int = 1000,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        del img_size  # any multiple of 32 works; kept in the signature for the registry
        self.num_classes = num_classes
        self.num_features = emb_dims
        self.distillation = distillation
        n = sum(local_blocks) + sum(global_blocks)
        dpr = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]  # linspace, also on the meta device
        idx = 0
        self.stem = Stem(in_chans, local_channels[0])
        self.local_backbone = nn.ModuleList()
        for i, n in enumerate(local_blocks):
            if i > 0:
                self.local_backbone.append(Downsample(local_channels[i - 1], local_channels[i]))
            for _ in range(n):
                self.local_backbone.append(InvertedResidual(local_channels[i], 4.0, drop_path=dpr[idx]))
                idx += 1
        self.local_backbone.append(Downsample(local_channels[-1], global_channels[0]))
        self.backbone = nn.ModuleList()
        for i, n in enumerate(global_blocks):
            if i > 0:
                self.backbone.append(Downsample(global_channels[i - 1], global_channels[i]))
            for _ in range(n):
                c = global_channels[i]
                self.backbone.append(
                    nn.Sequential(Grapher(c, drop_path=dpr[idx], K=K), FFN(c, c * 4, drop_path=dpr[idx]))
                )
                idx += 1
        self.prediction = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(global_channels[-1], emb_dims, 1),
            nn.BatchNorm2d(emb_dims),
            nn.GELU(),
            nn.Dropout(drop_rate),
        )
        self.head = nn.Conv2d(emb_dims, num_classes, 1) if num_classes > 0 else nn.Identity()
        if distillation:
            self.dist_head = nn.Conv2d(emb_dims, num_classes, 1) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for blk in self.local_backbone:
            x = blk(x)
        for blk in self.backbone:
            x = blk(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.prediction(x)
        out = self.head(x).flatten(1)
        if not self.distillation:
            return out
        dist = self.dist_head(x).flatten(1)
        return (out, dist) if self.training else (out + dist) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------- checkpoint filter
def checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The authors' checkpoints use our key names; drop wrappers and non-tensor entries only."""
    return {k.removeprefix("module."): v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------------------------ default configs
_PAPER = "MobileViG (CVPRW 2023), ImageNet-1K table; latency on iPhone 13 Mini NPU (Core ML)"


def _cfg(
    name: str,
    num_params: int,
    gmacs: float,
    paper_params_m: float,
    paper_gmacs: float,
    top1: float,
    latency: float | None,
) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="mobilevig",
        input_size=(3, 224, 224),
        interpolation="bicubic",
        crop_pct=0.9,
        num_params=num_params,
        gmacs=gmacs,
        checkpoint_filter=checkpoint_filter_fn,
        paper=PaperRef(
            source=_PAPER,
            top1=top1,
            mobile_latency_ms=latency,
            latency_device="iPhone 13 Mini NPU (Core ML)",
            params_m=paper_params_m,
            gmacs=paper_gmacs,
        ),
    )


# ---------------------------------------------------------------------------------------- factories
@register_model(_cfg("mobilevig_ti", 5_271_074, 0.662, 5.2, 0.7, 75.7, 0.78))
def mobilevig_ti(**kwargs: Any) -> MobileViG:
    return MobileViG((2, 2, 6), (42, 84, 168), (2,), (256,), emb_dims=512, **kwargs)


@register_model(_cfg("mobilevig_s", 7_276_538, 0.984, 7.2, 1.0, 78.2, 0.82))
def mobilevig_s(**kwargs: Any) -> MobileViG:
    return MobileViG((3, 3, 9), (42, 84, 176), (3,), (256,), emb_dims=512, **kwargs)


@register_model(_cfg("mobilevig_m", 14_075_786, 1.493, 14.0, 1.5, 80.6, 1.02))
def mobilevig_m(**kwargs: Any) -> MobileViG:
    return MobileViG((3, 3, 9), (42, 84, 224), (3,), (400,), emb_dims=768, **kwargs)


@register_model(_cfg("mobilevig_b", 26_868_506, 2.793, 26.7, 2.8, 82.6, 2.30))
def mobilevig_b(**kwargs: Any) -> MobileViG:
    return MobileViG((5, 5, 15), (42, 84, 240), (5,), (464,), emb_dims=768, **kwargs)
