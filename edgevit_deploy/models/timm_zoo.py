"""The efficient mobile backbones EdgeViT is compared with, built by timm (never re-implemented here).

Each registered name is timm's architecture name. Preprocessing (input size, mean / std, interpolation,
crop_pct) is read from timm's ``pretrained_cfg``; parameter counts and GMACs are recorded figures measured
with :func:`edgevit_deploy.analysis.count_macs` at the default input size (checked by the tests); the paper
figures are reference data with their source:

* MobileNetV2, MobileNetV3-L 0.75, EfficientNet-B0, PVTv2-B0/B1, DeiT-Tiny, LeViT-384 and MobileViT
  XXS/XS/S: EdgeViTs (ECCV 2022), table "On-device evaluation on ImageNet-1K" (Snapdragon 888 CPU), the
  paper this toolkit's flagship comes from, which measured them all on one phone;
* the others: their own papers.

``timm:NAME`` builds any other timm architecture by name (random weights: nothing is ever downloaded; load
a checkpoint file with ``checkpoint=``).
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import InputSizeError, UnknownModelError, UnsupportedOptionError
from ._config import ModelConfig, PaperRef
from ._registry import RegisteredModel, register_model, register_resolver

log = logging.getLogger(__name__)

__all__ = ["TIMM_SPECS", "TimmSpec", "create_timm", "resolve_timm", "timm_config"]

TIMM_PREFIX = "timm:"


# ------------------------------------------------------------------------------------------ building
def _timm():
    # timm is a core dependency (EdgeViT uses its layers); imported here to keep this module's import light
    import timm

    return timm


def create_timm(
    arch: str, num_classes: int, img_size: int, default_size: int, fixed_input_size: bool, **kwargs: Any
) -> nn.Module:
    """``timm.create_model(arch, pretrained=False, ...)``, passing ``img_size`` only to models whose
    position embeddings / attention biases depend on it (timm's ``fixed_input_size``)."""
    if kwargs.pop("pretrained", False):
        raise UnsupportedOptionError(
            f"{arch}: weights are never downloaded at run time; pass checkpoint=path/to/weights.pth instead "
            "(a timm or Hugging Face state dict loads as is)."
        )
    if fixed_input_size and img_size != default_size:
        kwargs["img_size"] = img_size
    try:
        return _timm().create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        if "img_size" in kwargs and "img_size" in str(exc):
            raise InputSizeError(
                f"{arch}: timm builds it only at {default_size}x{default_size} (its constructor takes no "
                f"img_size); use img_size={default_size}."
            ) from exc
        raise


def _size_divisor(default_size: int) -> int:
    """The largest of 32's divisors that divides the default size (32 for 224 / 256, 2 for 518)."""
    return math.gcd(default_size, 32)


def timm_config(arch: str, name: str | None = None, family: str = "timm", **fields: Any) -> ModelConfig:
    """A :class:`ModelConfig` from timm's ``pretrained_cfg`` of ``arch`` (its default weights' tag)."""
    pc = _timm().models.get_pretrained_cfg(arch)
    if pc is None:
        raise UnknownModelError(f"{TIMM_PREFIX}{arch}", _close_timm_names(arch))
    input_size = tuple(int(v) for v in pc.input_size)
    base: dict[str, Any] = dict(
        name=name or arch,
        family=family,
        input_size=input_size,
        mean=tuple(float(v) for v in pc.mean),
        std=tuple(float(v) for v in pc.std),
        interpolation=pc.interpolation or "bilinear",
        crop_pct=float(pc.crop_pct or 0.875),
        num_classes=int(pc.num_classes or 1000),
        size_divisor=_size_divisor(input_size[-1]),
    )
    base.update(fields)
    return ModelConfig(**base)


def _factory(arch: str, cfg: ModelConfig, fixed_input_size: bool, only_size: int | None) -> Callable[..., nn.Module]:
    def factory(num_classes: int = cfg.num_classes, img_size: int = cfg.img_size, **kwargs: Any) -> nn.Module:
        if only_size is not None and img_size != only_size:
            raise InputSizeError(
                f"{cfg.name}: timm's implementation works only at {only_size}x{only_size} (attention biases "
                f"sized for it); got {img_size}. Use img_size={only_size}."
            )
        return create_timm(arch, num_classes, img_size, cfg.img_size, fixed_input_size, **kwargs)

    factory.__name__ = arch
    factory.__doc__ = f"timm's {arch} (random init unless a checkpoint is given)."
    return factory


# -------------------------------------------------------------------------------------- timm:NAME
def _close_timm_names(arch: str) -> list[str]:
    names = _timm().list_models()
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
    return [f"{TIMM_PREFIX}{n}" for n in close]


def resolve_timm(name: str) -> RegisteredModel:
    """``timm:NAME``: a registered spec when NAME is one (keeps its paper figures), else any timm model."""
    arch = name.removeprefix(TIMM_PREFIX).strip()
    if arch in _REGISTERED:
        return _REGISTERED[arch]
    timm = _timm()
    if not arch or not timm.is_model(arch):
        raise UnknownModelError(name, _close_timm_names(arch) if arch else [])
    pc = timm.models.get_pretrained_cfg(arch)
    fixed = bool(pc is not None and pc.fixed_input_size)
    module = timm.models.model_entrypoint(arch).__module__.rsplit(".", 1)[-1]  # e.g. "resnet"
    cfg = timm_config(arch, name=name, family=f"timm:{module}")
    return RegisteredModel(_factory(arch, cfg, fixed, None), cfg)


# ------------------------------------------------------------------------------------ default configs
_EDGEVIT = "EdgeViTs (ECCV 2022), table 'On-device evaluation on ImageNet-1K'"
_SD888 = "Snapdragon 888 CPU"
_IPHONE12 = "iPhone 12 NPU"


def _edgevit_ref(top1: float, latency_ms: float) -> PaperRef:
    return PaperRef(source=_EDGEVIT, top1=top1, mobile_latency_ms=latency_ms, latency_device=_SD888)


@dataclass(frozen=True)
class TimmSpec:
    """One registered timm backbone: recorded cost at the default size, paper figures, size rules."""

    arch: str
    family: str
    num_params: int
    gmacs: float
    paper: PaperRef
    size_divisor: int = 32
    only_size: int | None = None  # timm's implementation builds at other sizes but runs only at this one


_LEVIT = "LeViT (ICCV 2021), Table 3"
_MVIT2 = "Separable Self-attention for Mobile Vision Transformers (MobileViTv2, TMLR 2023), ImageNet-1k table"
_EF = "EfficientFormer (NeurIPS 2022), Table 1 (latency: iPhone 12 NPU, Core ML)"
_EF2 = "EfficientFormerV2 (ICCV 2023), Table 1 (latency: iPhone 12 NPU, Core ML)"
_NEXT = "Next-ViT (2022), Table 4 (latency: iPhone 12, Core ML)"

TIMM_SPECS: tuple[TimmSpec, ...] = (
    TimmSpec("mobilenetv2_100", "mobilenetv2", 3_504_872, 0.301, _edgevit_ref(72.0, 33.3)),
    TimmSpec("mobilenetv3_large_075", "mobilenetv3", 3_993_528, 0.155, _edgevit_ref(73.3, 23.0)),
    TimmSpec("efficientnet_b0", "efficientnet", 5_288_548, 0.386, _edgevit_ref(77.1, 52.1)),
    TimmSpec("pvt_v2_b0", "pvt_v2", 3_666_760, 0.566, _edgevit_ref(70.5, 26.0)),
    TimmSpec("pvt_v2_b1", "pvt_v2", 14_009_000, 2.108, _edgevit_ref(78.7, 75.4)),
    TimmSpec("deit_tiny_patch16_224", "deit", 5_717_416, 1.254, _edgevit_ref(72.2, 46.2), size_divisor=16),
    TimmSpec(
        "levit_128s",
        "levit",
        7_777_058,
        0.305,
        PaperRef(source=_LEVIT, top1=76.6, params_m=7.8, gmacs=0.305),
        size_divisor=16,
    ),
    TimmSpec("levit_384", "levit", 39_128_836, 2.352, _edgevit_ref(79.5, 71.3), size_divisor=16),
    TimmSpec("mobilevit_xxs", "mobilevit", 1_272_024, 0.407, _edgevit_ref(69.0, 69.5)),
    TimmSpec("mobilevit_xs", "mobilevit", 2_317_848, 1.026, _edgevit_ref(74.7, 150.1)),
    TimmSpec("mobilevit_s", "mobilevit", 5_578_632, 2.001, _edgevit_ref(78.3, 221.3)),
    TimmSpec(
        "mobilevitv2_050", "mobilevitv2", 1_370_593, 0.465, PaperRef(source=_MVIT2, top1=70.18, params_m=1.4, gmacs=0.5)
    ),
    TimmSpec(
        "mobilevitv2_075", "mobilevitv2", 2_866_009, 1.028, PaperRef(source=_MVIT2, top1=75.56, params_m=2.9, gmacs=1.0)
    ),
    TimmSpec(
        "mobilevitv2_100", "mobilevitv2", 4_901_841, 1.812, PaperRef(source=_MVIT2, top1=78.09, params_m=4.9, gmacs=1.8)
    ),
    TimmSpec(
        "efficientformer_l1",
        "efficientformer",
        12_289_928,
        1.291,
        PaperRef(source=_EF, top1=79.2, mobile_latency_ms=1.6, latency_device=_IPHONE12, params_m=12.3, gmacs=1.3),
        only_size=224,
    ),
    TimmSpec(
        "efficientformer_l3",
        "efficientformer",
        31_406_000,
        3.907,
        PaperRef(source=_EF, top1=82.4, mobile_latency_ms=3.0, latency_device=_IPHONE12, params_m=31.3, gmacs=3.9),
        only_size=224,
    ),
    TimmSpec(
        "efficientformer_l7",
        "efficientformer",
        82_229_328,
        10.119,
        PaperRef(source=_EF, top1=83.3, mobile_latency_ms=7.0, latency_device=_IPHONE12, params_m=82.1, gmacs=10.2),
        only_size=224,
    ),
    TimmSpec(
        "efficientformerv2_s0",
        "efficientformerv2",
        3_600_256,
        0.396,
        PaperRef(source=_EF2, top1=75.7, mobile_latency_ms=0.9, latency_device=_IPHONE12, params_m=3.5, gmacs=0.40),
    ),
    TimmSpec(
        "efficientformerv2_s1",
        "efficientformerv2",
        6_185_560,
        0.652,
        PaperRef(source=_EF2, top1=79.0, mobile_latency_ms=1.1, latency_device=_IPHONE12, params_m=6.1, gmacs=0.65),
    ),
    TimmSpec(
        "efficientformerv2_s2",
        "efficientformerv2",
        12_710_112,
        1.247,
        PaperRef(source=_EF2, top1=81.6, mobile_latency_ms=1.6, latency_device=_IPHONE12, params_m=12.6, gmacs=1.25),
    ),
    TimmSpec(
        "nextvit_small",
        "nextvit",
        31_763_368,
        5.794,
        PaperRef(source=_NEXT, top1=82.5, mobile_latency_ms=3.5, latency_device=_IPHONE12, params_m=31.7, gmacs=5.8),
    ),
    TimmSpec(
        "nextvit_base",
        "nextvit",
        44_818_856,
        8.274,
        PaperRef(source=_NEXT, top1=83.2, mobile_latency_ms=4.5, latency_device=_IPHONE12, params_m=44.8, gmacs=8.3),
    ),
    TimmSpec(
        "nextvit_large",
        "nextvit",
        57_874_344,
        10.753,
        PaperRef(source=_NEXT, top1=83.6, mobile_latency_ms=5.5, latency_device=_IPHONE12, params_m=57.8, gmacs=10.8),
    ),
    TimmSpec(
        "tnt_s_patch16_224",
        "tnt",
        23_768_584,
        5.217,
        PaperRef(source="Transformer in Transformer (NeurIPS 2021), Table 2", top1=81.5, params_m=23.8, gmacs=5.2),
        size_divisor=16,
    ),
    TimmSpec(
        "twins_svt_small",
        "twins",
        24_060_776,
        2.927,
        PaperRef(source="Twins (NeurIPS 2021), Table 1", top1=81.7, params_m=24.0, gmacs=2.9),
    ),
)


# ---------------------------------------------------------------------------------------- factories
_REGISTERED: dict[str, RegisteredModel] = {}


def _register(spec: TimmSpec) -> None:
    pc = _timm().models.get_pretrained_cfg(spec.arch)
    cfg = timm_config(
        spec.arch,
        family=spec.family,
        num_params=spec.num_params,
        gmacs=spec.gmacs,
        paper=spec.paper,
        size_divisor=spec.size_divisor,
        fixed_input_size=spec.only_size is not None,
    )
    factory = _factory(spec.arch, cfg, bool(pc.fixed_input_size), spec.only_size)
    register_model(cfg)(factory)
    _REGISTERED[spec.arch] = RegisteredModel(factory, cfg)


for _spec in TIMM_SPECS:
    _register(_spec)
register_resolver(TIMM_PREFIX, resolve_timm)
