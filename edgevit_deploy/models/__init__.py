"""Model registry and architectures.

The registry (``_registry``) is a leaf; this file imports every architecture module (each registers its
factories) and the resolvers of names outside the registry (``timm:NAME``, ``file.py:factory``), one line each.
"""

from __future__ import annotations

# each registers itself on import (timm_zoo: its models and ``timm:NAME``; _user: ``file.py:factory`` and
# ``module:factory``); the registry tries prefix resolvers before predicate ones, so the order here does not matter
from . import (
    _user,
    edgevit,
    efficientmod,
    efficientnet_lite,
    fcaformer,
    mobilevig,
    timm_zoo,
    vcmamba,
)
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
