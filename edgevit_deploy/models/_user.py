"""A user's own model: ``path/to/file.py:factory`` or ``package.module:factory``.

Registers its resolver for every name with a ``:`` that no prefix resolver (``timm:``) claims.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from ..errors import UnknownModelError
from ._config import ModelConfig
from ._registry import RegisteredModel, register_resolver


def _load_module(ref: str):
    if ref.endswith(".py") or "/" in ref or "\\" in ref:
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise UnknownModelError(f"{ref} (no such file)")
        mod_name = f"edgevit_user_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(ref)
    except ImportError as exc:
        raise UnknownModelError(f"{ref} (cannot import: {exc})") from exc


def is_user_ref(name: str) -> bool:
    """``REF:factory``, where REF is a ``.py`` file or an importable module."""
    return ":" in name


def resolve_user_factory(name: str) -> RegisteredModel:
    ref, _, attr = name.rpartition(":")
    module = _load_module(ref)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UnknownModelError(f"{name} ({ref} has no callable {attr!r})")
    accepted = inspect.signature(fn).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in accepted.values())

    def factory(num_classes: int = 1000, img_size: int = 224, **kw):
        call_kw = dict(kw)
        for key, val in (("num_classes", num_classes), ("img_size", img_size)):
            if takes_kwargs or key in accepted:
                call_kw[key] = val
        return fn(**call_kw)

    return RegisteredModel(factory, ModelConfig(name=name, family="user", labels=None))


register_resolver(is_user_ref, resolve_user_factory)
