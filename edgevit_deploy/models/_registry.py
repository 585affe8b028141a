"""Model registry: ``register_model``, ``register_resolver``, ``create_model``, ``list_models``.

A leaf: it imports no architecture and no resolver. ``models/__init__`` imports the architecture modules
(each registers its factories with :func:`register_model`) and the resolver modules (each registers a
:func:`register_resolver` hook). Names resolve in this order: a registered name; a resolver whose prefix the
name starts with (``timm:NAME``, any timm architecture); a resolver whose predicate accepts the name
(``path/to/file.py:factory`` or ``package.module:factory``, a user's own model).
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import InputSizeError, UnknownModelError
from ._config import ModelConfig

log = logging.getLogger(__name__)

Factory = Callable[..., nn.Module]
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class RegisteredModel:
    factory: Factory
    config: ModelConfig


Resolver = Callable[[str], RegisteredModel]
NamePredicate = Callable[[str], bool]

_REGISTRY: dict[str, RegisteredModel] = {}
# names outside the registry: name prefix -> resolver (tried first), then predicate -> resolver (in registration order)
_PREFIX_RESOLVERS: dict[str, Resolver] = {}
_PREDICATE_RESOLVERS: dict[NamePredicate, Resolver] = {}


def register_model(config: ModelConfig) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(num_classes=..., img_size=..., **kw)`` under ``config.name``."""

    def deco(fn: Factory) -> Factory:
        if config.name in _REGISTRY:
            raise ValueError(f"model {config.name!r} is registered twice")
        _REGISTRY[config.name] = RegisteredModel(fn, config)
        return fn

    return deco


def register_resolver(prefix_or_predicate: str | NamePredicate, resolver: Resolver) -> None:
    """Resolve names outside the registry: those starting with a prefix (``"timm:"``), or those a predicate
    accepts. Prefixes are tried before predicates; registering the same prefix again replaces its resolver."""
    if isinstance(prefix_or_predicate, str):
        _PREFIX_RESOLVERS[prefix_or_predicate] = resolver
    else:
        _PREDICATE_RESOLVERS[prefix_or_predicate] = resolver


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def _suggest(name: str) -> list[str]:
    names = list(_REGISTRY)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:
        close = [n for n in names if name.lower() in n or n in name.lower()][:5]
    return close


def resolve(name: str) -> RegisteredModel:
    """The factory and default config for ``name`` (registered, ``timm:``, or ``file.py:factory``)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, resolver in _PREFIX_RESOLVERS.items():
        if name.startswith(prefix):
            return resolver(name)
    for accepts, resolver in _PREDICATE_RESOLVERS.items():
        if accepts(name):
            return resolver(name)
    raise UnknownModelError(name, _suggest(name))


def get_model_config(name: str) -> ModelConfig:
    return resolve(name).config


MAX_IMG_SIZE = 1024  # larger inputs need tens of GB for attention maps and parity batches, and no target wants them


def check_img_size(img_size: int, cfg: ModelConfig) -> None:
    div = cfg.size_divisor
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0:
        raise InputSizeError(
            f"{cfg.name}: input size {img_size!r} must be a positive multiple of {div} "
            f"(at most {MAX_IMG_SIZE}); omit --img-size for the model's {cfg.img_size}."
        )
    if img_size > MAX_IMG_SIZE:
        raise InputSizeError(
            f"{cfg.name}: input size {img_size} is larger than the maximum {MAX_IMG_SIZE}; "
            f"use a multiple of {div} up to {MAX_IMG_SIZE} (the model's own is {cfg.img_size})."
        )
    if cfg.fixed_input_size and img_size != cfg.img_size:
        raise InputSizeError(f"{cfg.name} runs only at {cfg.img_size}x{cfg.img_size}; use img_size={cfg.img_size}.")
    if img_size % div:
        lower = max(div, img_size // div * div)
        upper = min(lower + div, MAX_IMG_SIZE)
        raise InputSizeError(f"{cfg.name}: input size {img_size} is not a multiple of {div}; use {lower} or {upper}.")


def check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputSizeError(
            f"--num-classes must be at least 1 (got {num_classes!r}); omit it for the model's "
            "own classifier (1000 ImageNet classes)."
        )


def create_model(
    name: str,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    img_size: int | None = None,
    **kwargs,
) -> nn.Module:
    """Build a model in eval mode, optionally loading a checkpoint (``weights_only=True``).

    The returned module carries ``deploy_cfg`` (a :class:`ModelConfig` for the requested input size and
    class count) and ``checkpoint_sha256`` (or ``"random-init"``). Without a checkpoint the weights are a
    seeded random initialisation, the same on every call.
    """
    entry = resolve(name)
    cfg = entry.config
    img_size = cfg.img_size if img_size is None else img_size  # 0 is an error, not "the default"
    check_img_size(img_size, cfg)
    num_classes = cfg.num_classes if num_classes is None else num_classes
    check_num_classes(num_classes)
    # random initialisation is seeded: a "random-init" artifact can be re-verified later (edgevit-verify)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = entry.factory(num_classes=num_classes, img_size=img_size, **kwargs)
    sha = "random-init"
    if checkpoint is None and cfg.pretrained and kwargs.get("pretrained", True):
        from ._pretrained import load_packaged_weights

        sha = load_packaged_weights(model, cfg)
    if checkpoint is not None:
        from ._checkpoint import load_checkpoint_into

        sha = load_checkpoint_into(model, checkpoint, cfg)
    model.eval()
    model.deploy_cfg = replace(cfg.with_img_size(img_size), num_classes=num_classes)  # type: ignore[assignment]
    model.checkpoint_sha256 = sha  # type: ignore[assignment]
    return model


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
