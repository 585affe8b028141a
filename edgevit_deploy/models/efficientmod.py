"""EfficientMod: "Efficient Modulation for Vision Networks".

Xu Ma, Xiyang Dai, Jianwei Yang, Bin Xiao, Yinpeng Chen, Yun Fu, Lu Yuan. ICLR 2024.
https://arxiv.org/abs/2403.19963, code: https://github.com/ma-xu/EfficientMod

Channels-last stages of efficient-modulation blocks: ``fc2(act(fc1(x)) * repeat(ctx(x)))`` where the context
branch is a linear / depthwise 7x7 conv / GELU / linear; the last two stages end with plain self-attention
blocks. Blocks alternate a narrow (ratio 1) and a wide (ratio 4 or 6) MLP. Module and attribute names follow
the authors' code so that their checkpoints load with ``strict=True``. Differences: attention is written out
(matmul / softmax) instead of ``scaled_dot_product_attention``, which is numerically the same and exports
everywhere; the channel ``repeat`` of the context is a concatenation (same values, simpler graphs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from ._config import ModelConfig, PaperRef
from ._registry import register_model
from .edgevit import EdgeVit
from .edgevit import Mlp as AttMlp  # Linear / GELU / Linear with the same keys as the authors' AttMlp

__all__ = ["EfficientMod", "efficientmod_s", "efficientmod_xs", "efficientmod_xxs"]


# --------------------------------------------------------------------------------------------- blocks
class PatchEmbed(nn.Module):
    """Conv downsampling on channels-last maps (NHWC in, NHWC out), then LayerNorm."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, patch_stride: int, patch_pad: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_stride, padding=patch_pad)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class ContextLayer(nn.Module):
    """Context branch: linear down to ``conv_dim``, depthwise conv, GELU, linear back up (NHWC)."""

    def __init__(self, in_dim: int, conv_dim: int, context_size: int = 7):
        super().__init__()
        self.f = nn.Linear(in_dim, conv_dim)
        self.g = nn.Linear(conv_dim, in_dim)
        self.act = nn.GELU()
        self.context_list = nn.ModuleList(
            [nn.Conv2d(conv_dim, conv_dim, context_size, padding=context_size // 2, groups=conv_dim)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.f(x).permute(0, 3, 1, 2)
        out = self.act(self.context_list[0](x))
        return self.g(out.permute(0, 2, 3, 1))


class ModMlp(nn.Module):
    """Efficient modulation: the MLP's hidden features times the context, repeated over channel groups.

    Registered as ``mlp`` in :class:`BasicBlock` with the authors' attribute names.
    """

    def __init__(self, dim: int, mlp_ratio: int, context_size: int = 7, drop: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.conv_group_dim = mlp_ratio  # the authors set conv_group_dim = mlp_ratio
        self.fc1 = nn.Linear(dim, hidden)
        self.context_layer = ContextLayer(dim, hidden // self.conv_group_dim, context_size)
        self.fc2 = nn.Linear(hidden, dim)
        self.expand_dim = not (hidden == dim and self.conv_group_dim == 1)
        if self.expand_dim:
            self.act = nn.GELU()
            self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context_layer(x)
        x = self.fc1(x)
        if self.expand_dim:
            x = self.drop(self.act(x))
            if self.conv_group_dim > 1:
                ctx = torch.cat([ctx] * self.conv_group_dim, dim=-1)  # == ctx.repeat(1, 1, 1, groups)
        return self.fc2(x * ctx)


class BasicBlock(nn.Module):
    """Pre-norm residual efficient-modulation block with a layer scale (``gamma_1``)."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: int,
        context_size: int = 7,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layerscale_value: float = 1e-4,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = ModMlp(dim, mlp_ratio, context_size, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.gamma_1 = nn.Parameter(layerscale_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.gamma_1 * self.mlp(self.norm(x)))


class Attention(nn.Module):
    """Multi-head self-attention with head dim ``max(dim // num_heads, 32)`` (no qkv bias)."""

    def __init__(self, dim: int, num_heads: int = 8, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = max(dim // num_heads, 32)
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, num_heads * self.head_dim * 3, bias=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(num_heads * self.head_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)
        return self.proj_drop(self.proj(x))


class AttentionBlock(nn.Module):
    """Pre-norm transformer block on NHWC maps (flattened to tokens inside)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, proj_drop=drop)
        self.ls1 = nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = AttMlp(dim, int(dim * mlp_ratio), drop)
        self.ls2 = nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x.reshape(B, H * W, C)
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x.reshape(B, H, W, C)


class BasicLayer(nn.Module):
    """A stage: modulation blocks, then attention blocks, then an optional downsampling PatchEmbed."""

    def __init__(
        self,
        dim: int,
        out_dim: int | None,
        mlp_ratios: Sequence[int],
        attention_depth: int,
        att_ratio: float,
        drop: float,
        drop_path: Sequence[float],
        context_size: int = 7,
    ):
        super().__init__()
        depth = len(mlp_ratios)
        blocks: list[nn.Module] = [
            BasicBlock(dim, r, context_size, drop, drop_path[i]) for i, r in enumerate(mlp_ratios)
        ]
        blocks += [AttentionBlock(dim, att_ratio, drop, drop_path[depth + j]) for j in range(attention_depth)]
        self.blocks = nn.ModuleList(blocks)
        self.downsample = PatchEmbed(dim, out_dim, 3, 2, 1) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


# ---------------------------------------------------------------------------------------------- model
class EfficientMod(nn.Module):
    """Stride-4 7x7 patch embedding, four channels-last stages, LayerNorm, average pool, linear head.

    ``mlp_ratios[i]`` lists the MLP ratio of every modulation block of stage ``i`` (its length is the
    stage depth); ``attention_depth[i]`` attention blocks follow them.
    """

    def __init__(
        self,
        embed_dim: Sequence[int] = (32, 64, 128, 256),
        mlp_ratios: Sequence[Sequence[int]] = ((1, 6), (1, 6), (1, 6, 1, 6, 1, 6), (1, 6)),
        attention_depth: Sequence[int] = (0, 0, 1, 2),
        att_ratio: Sequence[float] = (0, 0, 4, 4),
        context_size: int = 7,
        in_chans: int = 3,
        num_classes: int = 1000,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        del img_size  # any multiple of 32 works; kept in the signature for the registry
        self.num_classes = num_classes
        self.num_features = embed_dim[-1]
        self.patch_embed = PatchEmbed(in_chans, embed_dim[0], 7, 4, 3)
        n_blocks = [len(r) + a for r, a in zip(mlp_ratios, attention_depth)]
        dpr = [drop_path_rate * i / max(sum(n_blocks) - 1, 1) for i in range(sum(n_blocks))]  # linspace
        self.layers = nn.ModuleList()
        start = 0
        for i, ratios in enumerate(mlp_ratios):
            out_dim = embed_dim[i + 1] if i < len(embed_dim) - 1 else None
            self.layers.append(
                BasicLayer(
                    embed_dim[i],
                    out_dim,
                    ratios,
                    attention_depth[i],
                    att_ratio[i],
                    drop_rate,
                    dpr[start : start + n_blocks[i]],
                    context_size,
                )
            )
            start += n_blocks[i]
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(EdgeVit._init_weights)  # trunc-normal Linear, unit LayerNorm: the authors' init

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x.permute(0, 2, 3, 1))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(1, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------- checkpoint filter
def checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The authors' checkpoints use our key names. Their distillation runs may also save a teacher head
    (``dist_head.*``), which this architecture does not have: drop it with the wrappers and non-tensors."""
    return {
        k.removeprefix("module."): v
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and not k.removeprefix("module.").startswith("dist_head.")
    }


# ------------------------------------------------------------------------------------ default configs
_PAPER = (
    "EfficientMod (ICLR 2024), ImageNet-1K table and the authors' README (top-1 of the released, "
    "distilled checkpoints); GPU / desktop CPU latency only, no mobile latency"
)


def _cfg(
    name: str, num_params: int, gmacs: float, paper_params_m: float, paper_gmacs: float, top1: float
) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="efficientmod",
        input_size=(3, 224, 224),
        interpolation="bicubic",
        crop_pct=0.875,
        num_params=num_params,
        gmacs=gmacs,
        checkpoint_filter=checkpoint_filter_fn,
        paper=PaperRef(source=_PAPER, top1=top1, params_m=paper_params_m, gmacs=paper_gmacs),
    )


def _alternate(wide: int, depths: Sequence[int]) -> list[tuple[int, ...]]:
    """Per-stage MLP ratios alternating 1 and ``wide``, as in the authors' configs."""
    return [tuple(1 if j % 2 == 0 else wide for j in range(d)) for d in depths]


# ---------------------------------------------------------------------------------------- factories
@register_model(_cfg("efficientmod_xxs", 4_736_264, 0.579, 4.7, 0.6, 77.1))
def efficientmod_xxs(**kwargs: Any) -> EfficientMod:
    return EfficientMod((32, 64, 128, 256), _alternate(6, (2, 2, 6, 2)), (0, 0, 1, 2), (0, 0, 4, 4), **kwargs)


@register_model(_cfg("efficientmod_xs", 6_627_544, 0.773, 6.6, 0.8, 79.4))
def efficientmod_xs(**kwargs: Any) -> EfficientMod:
    return EfficientMod((32, 64, 144, 288), _alternate(4, (3, 3, 4, 2)), (0, 0, 3, 3), (4, 4, 4, 4), **kwargs)


@register_model(_cfg("efficientmod_s", 12_897_184, 1.402, 12.9, 1.4, 81.9))
def efficientmod_s(**kwargs: Any) -> EfficientMod:
    return EfficientMod((32, 64, 144, 312), _alternate(6, (4, 4, 8, 4)), (0, 0, 4, 4), (4, 4, 4, 5), **kwargs)
