"""The registry of export-friendly rewrites and the one function that applies a target's formulation.

Each target's row in the table (``converters/table.py``) names a *formulation*; :func:`apply_formulations`
deep-copies the model and swaps the modules that formulation rewrites. Register a rewrite with
:func:`register_rewrite`: it receives a module and returns its replacement, or ``None`` when it does not apply.
The toolkit's rewrites live in :mod:`.rewrites` (generic) and :mod:`.zoo` (the model zoo's), loaded on the
first lookup.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

log = logging.getLogger(__name__)

Rewrite = Callable[[nn.Module], "nn.Module | None"]


@dataclass(frozen=True)
class RegisteredRewrite:
    name: str
    fn: Rewrite
    formulations: frozenset[str]


_REWRITES: list[RegisteredRewrite] = []

#: the formulations a rewrite applies to when it suits every target (the table's own ``formulation`` names, the
#: ones to come included): a rewrite registered for ``EVERY_TARGET`` is looked up under any formulation name
EVERY_TARGET = frozenset({"*"})


def register_rewrite(name: str, formulations: Iterable[str]) -> Callable[[Rewrite], Rewrite]:
    def deco(fn: Rewrite) -> Rewrite:
        _REWRITES.append(RegisteredRewrite(name, fn, frozenset(formulations)))
        return fn

    return deco


def rewrites_for(formulation: str) -> list[RegisteredRewrite]:
    _load_rewrites()
    return [r for r in _REWRITES if formulation in r.formulations or "*" in r.formulations]


def apply_formulations(model: nn.Module, formulation: str) -> tuple[nn.Module, dict[str, int]]:
    """A deep copy of ``model`` (eval mode) with every rewrite of ``formulation`` applied.

    Each module is offered to the formulation's rewrites in registration order. A rewrite that returns a new
    module replaces it and ends its turn; one that changes the module in place (returns the module itself: a
    switch flipped or its class swapped, so its path and state dict stay the authors') lets the next rewrites see
    the changed module, so in-place rewrites compose.

    Returns the copy and how many modules each rewrite replaced or changed.
    """
    rewrites = rewrites_for(formulation)
    model = copy.deepcopy(model).eval()
    counts: dict[str, int] = {}
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            for rw in rewrites:
                new = rw.fn(child)
                if new is None:
                    continue
                counts[rw.name] = counts.get(rw.name, 0) + 1
                if new is child:  # changed in place (a switch or a class): the next rewrites may still apply
                    continue
                setattr(parent, child_name, new)
                break
    if counts:
        log.info("formulation %s: %s", formulation, ", ".join(f"{k} x{v}" for k, v in counts.items()))
    return model, counts


_LOADED = False


def _load_rewrites() -> None:
    """Import the modules that register the toolkit's rewrites (once)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import rewrites, zoo  # noqa: F401  (registration on import)
