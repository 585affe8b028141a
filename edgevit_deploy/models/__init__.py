"""Model registry and architectures."""

from __future__ import annotations

from ._conditioning import RANDOM_INIT_CHOICES, well_conditioned
from ._config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, PaperRef
from ._registry import (
    check_img_size,
    count_params,
    create_model,
    get_model_config,
    list_models,
    register_model,
    register_resolver,
    resolve,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RANDOM_INIT_CHOICES",
    "ModelConfig",
    "PaperRef",
    "check_img_size",
    "count_params",
    "create_model",
    "get_model_config",
    "list_models",
    "register_model",
    "register_resolver",
    "resolve",
    "well_conditioned",
]
