"""VCMamba: "VCMamba: Bridging Convolutions with Multi-Directional Mamba for Efficient Visual Representation".

Mustafa Munir, Alex Zhang, Radu Marculescu. ICCV Workshops (ECLR) 2025.
Code: https://github.com/Wertyuui345/VCMamba (weights: huggingface.co/SLDGroup/VCMamba)

A convolutional stem and EfficientFormer-style hierarchy whose first stages are inverted-residual conv blocks
(the MobileViG block) and whose last stage ends with multi-directional Mamba blocks (PlainMamba's 2D
selective scan: four snake-order scans of the feature map, each with a learned per-step direction offset on
``B``, summed). Module and attribute names follow the authors' code so that their checkpoints load with
``strict=True``.

The authors call the CUDA ``selective_scan_fn`` of ``mamba_ssm``. Here the scan is written in plain tensor ops
so that it exports to ONNX / TFLite / Core ML: :func:`selective_scan_chunked` splits the sequence into chunks,
computes each chunk in parallel from a cumulative sum of the log decays and a masked (T x T) decay matrix,
and carries the state between chunks with a short loop over chunks (never over time steps).
:func:`selective_scan_reference` is the step-by-step recurrence the tests compare it with.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal, cast, get_args

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ._config import ModelConfig, PaperRef
from ._registry import register_model
from .edgevit import EdgeVit
from .mobilevig import ConvMlp, InvertedResidual, checkpoint_filter_fn

__all__ = [
    "DeltaBias",
    "VCMamba",
    "selective_scan_chunked",
    "selective_scan_reference",
    "vcmamba_b",
    "vcmamba_m",
    "vcmamba_s",
]


# ----------------------------------------------------------------------------------- selective scan
def selective_scan_reference(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """Mamba's selective scan, one time step at a time (the definition; slow, not for export).

    ``u``, ``delta``: (batch, d, L); ``A``: (d, n); ``B``, ``C``: (batch, n, L); ``D``: (d,).
    ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = C_t . h_t + D u_t``; returns (batch, d, L).
    ``delta`` is used as given (apply the softplus before).
    """
    b, d, L = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(L):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * B[:, None, :, t] * u[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1))
    return torch.stack(ys, dim=-1) + D[:, None] * u


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    chunk_size: int = 16,
) -> torch.Tensor:
    """The same scan as :func:`selective_scan_reference` in parallel form, for export.

    Within a chunk of ``T`` steps, with ``S_i`` the cumulative sum of the log decays ``delta A``,
    ``h_i = sum_{j<=i} exp(S_i - S_j) x_j + exp(S_i) h_0`` where ``x_j = delta_j B_j u_j`` and ``h_0`` is the
    state left by the previous chunk. The decay matrix ``exp(S_i - S_j)`` is masked to ``j <= i``; since
    ``delta >= 0`` and ``A < 0`` (Mamba's parametrisation), ``S_i - S_j <= 0`` there, so it is computed as
    ``exp(min(S_i - S_j, 0)) * mask`` without infinities. Tensors stay 4-D (``d`` and ``n`` merged).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of steps, got {chunk_size}")
    b, d, L = u.shape
    n = A.shape[1]
    log_decay = (delta[:, :, None, :] * A[None, :, :, None]).reshape(b, d * n, L)
    x = ((delta * u)[:, :, None, :] * B[:, None, :, :]).reshape(b, d * n, L)
    h: torch.Tensor | None = None
    ys = []
    for start in range(0, L, chunk_size):
        stop = min(start + chunk_size, L)
        T = stop - start
        cs = torch.cumsum(_steps(log_decay, start, stop), dim=-1)  # (b, dn, T)
        mask = torch.ones(T, T, dtype=u.dtype, device=u.device).tril()
        decay = torch.exp((cs[..., :, None] - cs[..., None, :]).clamp(max=0.0)) * mask  # (b, dn, T, T)
        hs = (decay @ _steps(x, start, stop)[..., None]).squeeze(-1)  # (b, dn, T)
        if h is not None:
            hs = hs + torch.exp(cs) * h[..., None]
        h = hs[..., -1]
        ys.append((hs.reshape(b, d, n, T) * _steps(C, start, stop)[:, None]).sum(2))
    y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=-1)
    return y + D[:, None] * u


def _steps(t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Time steps ``start:stop`` (last dim). The whole range is returned as is: a full slice becomes an
    ``aten.alias`` node after ``run_decompositions``, which coremltools cannot convert."""
    return t if start == 0 and stop == t.shape[-1] else t[..., start:stop]


@lru_cache(maxsize=32)
def snake_orders(
    H: int, W: int
) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """PlainMamba's four continuous (snake) scan orders of an ``H x W`` grid, their inverses, and the
    direction code of every step (0 start, 1 right, 2 left, 3 up, 4 down), as in the authors' code:
    rows from the top, rows from the bottom, columns from the left, columns from the right."""

    def walk(cells: list[tuple[int, int]]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        order = tuple(i * W + j for i, j in cells)
        moves = []
        for (i0, j0), (i1, j1) in itertools.pairwise(cells):
            moves.append(1 if j1 > j0 else 2 if j1 < j0 else 4 if i1 > i0 else 3)
        inverse = [0] * len(order)
        for pos, idx in enumerate(order):
            inverse[idx] = pos
        return order, tuple(inverse), tuple([0] + moves)

    def snake(major_seq: Sequence[int], n_minor: int, forward_first: bool) -> list[tuple[int, int]]:
        """(major, minor) cells line by line along ``major_seq``, alternating the minor direction."""
        cells, forward = [], forward_first
        for a in major_seq:
            cells += [(a, b) for b in (range(n_minor) if forward else range(n_minor - 1, -1, -1))]
            forward = not forward
        return cells

    def transposed(cells: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(i, j) for j, i in cells]

    walks = [
        walk(snake(range(H), W, True)),
        walk(snake(range(H - 1, -1, -1), W, H % 2 == 0)),
        walk(transposed(snake(range(W), H, True))),
        walk(transposed(snake(range(W - 1, -1, -1), H, W % 2 == 0))),
    ]
    return tuple(w[0] for w in walks), tuple(w[1] for w in walks), tuple(w[2] for w in walks)


# --------------------------------------------------------------------------------------------- blocks
#: where the bias added to ``dt_proj``'s output before the softplus comes from. ``"shared"`` (the authors'):
#: ``dt_proj.bias`` itself, so that one tensor feeds both the linear and the add. ``"separate"``: a copy of it
#: (a non-persistent buffer ``delta_bias``, refreshed by :meth:`PlainMamba2D.init_dt` and on every
#: ``load_state_dict``), the same numbers with two constants in an exported graph: executorch 1.5.1's XNNPACK
#: runtime crashes (SIGSEGV) loading a ``.pte`` whose delegate shares one constant between two nodes
#: (docs/executorch.md "Formulation"). The state dict is the same in both modes. ``"separate"`` is for inference
#: and export: the copy is a buffer, so training would no longer send the second term's gradient to ``dt_proj.bias``.
DeltaBias = Literal["shared", "separate"]


class PlainMamba2D(nn.Module):
    """Multi-directional selective-scan token mixer on NCHW maps (the authors' conv-projection variant).

    ``delta_bias`` says whether the step-size bias is added from ``dt_proj.bias`` itself (the authors') or from
    a copy of it (see :data:`DeltaBias`)."""

    delta_bias: torch.Tensor | None

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        expand: int = 2,
        conv_size: int = 7,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        chunk_size: int = 16,
        delta_bias: DeltaBias = "shared",
    ):
        super().__init__()
        if delta_bias not in get_args(DeltaBias):
            raise ValueError(f"delta_bias must be one of {', '.join(get_args(DeltaBias))}, got {delta_bias!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16)
        self.n_directions = 4
        self.chunk_size = chunk_size
        self.in_conv = nn.Sequential(nn.Conv2d(d_model, self.d_inner, 1), nn.BatchNorm2d(self.d_inner))
        self.conv2d = nn.Conv2d(self.d_inner, self.d_inner, conv_size, padding=conv_size // 2, groups=self.d_inner)
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        separate = self.dt_proj.bias.detach().clone() if delta_bias == "separate" else None
        self.register_buffer("delta_bias", separate, persistent=False)
        self.register_load_state_dict_post_hook(_sync_after_load)
        self.init_dt()
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.norm = nn.LayerNorm(self.d_inner)
        self.out_conv = nn.Sequential(nn.ReLU(), nn.Conv2d(self.d_inner, d_model, 1), nn.BatchNorm2d(d_model))
        self.direction_Bs = nn.Parameter(torch.zeros(self.n_directions + 1, d_state))
        nn.init.trunc_normal_(self.direction_Bs, std=0.02)

    @torch.no_grad()
    def init_dt(self) -> None:
        """Mamba's step-size init: softplus(dt_proj.bias) log-uniform in [dt_min, dt_max]."""
        dt_min, dt_max, floor = self._dt_range
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.sync_delta_bias()

    @torch.no_grad()
    def sync_delta_bias(self) -> None:
        """Copy ``dt_proj.bias`` into the separate ``delta_bias`` (``"separate"`` mode; no-op when shared)."""
        if self.delta_bias is not None:
            self.delta_bias.copy_(self.dt_proj.bias)

    def scan(
        self, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
    ) -> torch.Tensor:
        """The selective scan (chunked parallel form; tests swap in the reference recurrence)."""
        return selective_scan_chunked(u, delta, A, B, C, D, self.chunk_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, self.dt_proj.bias if self.delta_bias is None else self.delta_bias)

    def mix(self, x: torch.Tensor, delta_bias: torch.Tensor) -> torch.Tensor:
        """The mixer, with ``delta_bias`` added to ``dt_proj``'s output before the softplus (the authors add
        ``dt_proj.bias`` there a second time, as ``selective_scan_fn``'s ``delta_bias``)."""
        bsz, _, H, W = x.shape
        L, E, N = H * W, self.d_inner, self.d_state
        x = self.act(self.conv2d(self.in_conv(x)))
        x_conv = x.flatten(2).transpose(1, 2)  # (b, L, E)
        dt, B, C = torch.split(self.x_proj(x_conv), [self.dt_rank, N, N], dim=-1)
        delta = F.softplus(self.dt_proj(dt) + delta_bias).transpose(1, 2)  # (b, E, L)
        B, C = B.transpose(1, 2), C.transpose(1, 2)  # (b, N, L)
        orders, inverses, directions = snake_orders(H, W)
        order = torch.tensor(sum(orders, ()), dtype=torch.long, device=x.device)
        inverse = torch.tensor(
            [i + k * L for k, inv in enumerate(inverses) for i in inv], dtype=torch.long, device=x.device
        )
        steps = torch.tensor(sum(directions, ()), dtype=torch.long, device=x.device)
        # the four directions are batched: only u is permuted into scan order (delta, B, C stay in raster
        # order, as in the authors' code); B gets the direction offset of each scan step
        u = x_conv.index_select(1, order).reshape(bsz, 4, L, E).permute(1, 0, 3, 2).reshape(4 * bsz, E, L)
        dB = self.direction_Bs.index_select(0, steps).reshape(4, 1, L, N).transpose(2, 3)
        B4 = (B[None] + dB).reshape(4 * bsz, N, L)
        C4 = C[None].expand(4, -1, -1, -1).reshape(4 * bsz, N, L)
        delta4 = delta[None].expand(4, -1, -1, -1).reshape(4 * bsz, E, L)
        y = self.scan(u, delta4, -torch.exp(self.A_log), B4, C4, self.D)  # (4b, E, L) in scan order
        y = y.reshape(4, bsz, E, L).permute(1, 2, 0, 3).reshape(bsz, E, 4 * L).index_select(2, inverse)
        y = y.reshape(bsz, E, 4, L).sum(2).transpose(1, 2)  # (b, L, E), raster order
        out = self.norm(y).transpose(1, 2).reshape(bsz, E, H, W)
        return self.out_conv(out)


def _sync_after_load(module: nn.Module, incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook: a loaded ``dt_proj.bias`` reaches the separate ``delta_bias`` too."""
    del incompatible_keys
    cast(PlainMamba2D, module).sync_delta_bias()


class PlainMambaLayer(nn.Module):
    """BN, multi-directional Mamba, residual; BN, conv MLP with depthwise mid conv, residual."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        chunk_size: int = 16,
        delta_bias: DeltaBias = "shared",
    ):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mamba = PlainMamba2D(dim, chunk_size=chunk_size, delta_bias=delta_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop=drop, mid_conv=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mamba(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Embedding(nn.Module):
    """Stride-2 3x3 conv / BN downsampling between stages."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


# ---------------------------------------------------------------------------------------------- model
class VCMamba(nn.Module):
    """ReLU conv stem (stride 4), four stages of inverted residuals separated by stride-2 embeddings; the
    last ``mamba_blocks`` blocks of the last stage are multi-directional Mamba layers, preceded by a learned
    absolute position embedding (defined on the 224 grid, resized bilinearly for other sizes). Head:
    LayerNorm, mean pool, linear head and distillation head (averaged in eval mode, a pair in training).
    ``delta_bias``: the Mamba mixers' step-size bias, shared with ``dt_proj`` (the authors') or a separate copy
    (:data:`DeltaBias`); same numbers and same state dict either way."""

    def __init__(
        self,
        layers: Sequence[int] = (4, 4, 12, 8),
        embed_dims: Sequence[int] = (32, 64, 144, 288),
        mamba_blocks: int = 4,
        mlp_ratio: float = 4.0,
        distillation: bool = True,
        chunk_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-5,
        delta_bias: DeltaBias = "shared",
    ):
        super().__init__()
        del img_size  # any multiple of 32 works; kept in the signature for the registry
        self.num_classes = num_classes
        self.num_features = embed_dims[-1]
        self.distillation = distillation
        self.mamba_blocks = mamba_blocks
        self.patch_embed = nn.Sequential(
            nn.Conv2d(in_chans, embed_dims[0] // 2, 3, stride=2, padding=1),
            nn.BatchNorm2d(embed_dims[0] // 2),
            nn.ReLU(),
            nn.Conv2d(embed_dims[0] // 2, embed_dims[0], 3, stride=2, padding=1),
            nn.BatchNorm2d(embed_dims[0]),
            nn.ReLU(),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dims[-1], 7, 7))  # 224 / 32
        self.pos_drop = nn.Dropout(drop_rate)
        total = sum(layers)
        network: list[nn.Module] = []
        for i, depth in enumerate(layers):
            stage: list[nn.Module] = []
            for j in range(depth):
                dpr = drop_path_rate * (j + sum(layers[:i])) / max(total - 1, 1)
                if i == len(layers) - 1 and depth - j <= mamba_blocks:
                    stage.append(PlainMambaLayer(embed_dims[i], mlp_ratio, drop_rate, dpr, chunk_size, delta_bias))
                else:
                    stage.append(InvertedResidual(embed_dims[i], mlp_ratio, drop_rate, dpr, layer_scale_init_value))
            network.append(nn.ModuleList(stage))
            if i < len(layers) - 1:
                network.append(Embedding(embed_dims[i], embed_dims[i + 1]))
        if not 0 < mamba_blocks <= layers[-1]:
            raise ValueError(
                f"mamba_blocks must be between 1 and the last stage's depth ({layers[-1]}), got {mamba_blocks}"
            )
        self.network = nn.ModuleList(network)
        self.first_mamba = (len(network) - 1, layers[-1] - mamba_blocks)  # (stage, block) taking pos_embed
        self.norm = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        if distillation:
            self.dist_head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(EdgeVit._init_weights)  # trunc-normal Linear, unit LayerNorm
        for m in self.modules():
            if isinstance(m, PlainMamba2D):
                m.init_dt()  # the generic Linear init above must not erase the step-size init
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _pos_embed(self, H: int, W: int) -> torch.Tensor:
        if self.pos_embed.shape[-2:] == (H, W):
            return self.pos_embed
        return F.interpolate(self.pos_embed, size=(H, W), mode="bilinear", align_corners=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for i, stage in enumerate(self.network):
            if isinstance(stage, Embedding):
                x = stage(x)
                continue
            for j, blk in enumerate(cast(nn.ModuleList, stage)):
                if (i, j) == self.first_mamba:
                    x = self.pos_drop(x + self._pos_embed(x.shape[2], x.shape[3]))
                x = blk(x)
        return self.norm(x.flatten(2).transpose(1, 2))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = x.mean(1)
        out = self.head(x)
        if not self.distillation:
            return out
        dist = self.dist_head(x)
        return (out, dist) if self.training else (out + dist) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------- checkpoint filter
# the authors' checkpoints use our key names: MobileViG's filter (wrappers and non-tensors dropped) serves


# ------------------------------------------------------------------------------------ default configs
_PAPER = "VCMamba (ICCVW 2025), ImageNet-1K table and the authors' README; no mobile latency published"


def _cfg(
    name: str, num_params: int, gmacs: float, paper_params_m: float, paper_gmacs: float, top1: float
) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="vcmamba",
        input_size=(3, 224, 224),
        interpolation="bicubic",
        crop_pct=0.9,
        num_params=num_params,
        gmacs=gmacs,
        checkpoint_filter=checkpoint_filter_fn,
        paper=PaperRef(source=_PAPER, top1=top1, params_m=paper_params_m, gmacs=paper_gmacs),
    )


# ---------------------------------------------------------------------------------------- factories
@register_model(_cfg("vcmamba_s", 10_478_720, 1.155, 10.5, 1.1, 78.7))
def vcmamba_s(**kwargs: Any) -> VCMamba:
    return VCMamba((4, 4, 12, 8), (32, 64, 144, 288), mamba_blocks=4, **kwargs)


@register_model(_cfg("vcmamba_m", 21_072_176, 2.449, 21.0, 2.3, 81.5))
def vcmamba_m(**kwargs: Any) -> VCMamba:
    return VCMamba((4, 4, 12, 6), (48, 96, 224, 448), mamba_blocks=4, **kwargs)


@register_model(_cfg("vcmamba_b", 31_450_832, 4.15, 31.5, 4.0, 82.6))
def vcmamba_b(**kwargs: Any) -> VCMamba:
    return VCMamba((4, 4, 12, 6), (64, 128, 320, 512), mamba_blocks=4, **kwargs)
