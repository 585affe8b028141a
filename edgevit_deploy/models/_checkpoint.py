"""Checkpoint loading: raw state dicts or ones nested under ``model`` / ``state_dict``."""

from __future__ import annotations

import hashlib
import logging
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ._config import ModelConfig

log = logging.getLogger(__name__)

_NESTED_KEYS = ("model", "state_dict", "model_state_dict", "module")
_HEAD_PREFIXES = ("head.", "classifier.", "fc.", "head.fc.", "_fc.")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not exist or is not a file; pass the path of a "
            ".pth/.pt file holding a state dict."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes: the error below says what matters
            obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-tensor payloads
        # torch's own message suggests weights_only=False (running arbitrary code): say what the file is instead
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is not a PyTorch checkpoint: {_what_is(path, exc)}. {_EXPECTED}"
        ) from None
    for key in _NESTED_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not hold a state dict (a mapping of names to "
            f"tensors), neither raw nor under 'model' / 'state_dict'. {_EXPECTED}"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


_EXPECTED = "Expected a state dict saved with torch.save(model.state_dict(), path)."


_OBJECTS = (
    "it holds Python objects other than tensors and plain containers (e.g. a whole nn.Module), which "
    "a safe load (weights_only=True) refuses"
)


def _what_is(path: Path, exc: Exception) -> str:
    """What a file that torch.load(weights_only=True) refused looks like, in a few words."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "the file is empty (0 bytes)"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "a damaged or truncated zip archive"
        if any(n.endswith("data.pkl") for n in names):  # torch.save's layout
            return _OBJECTS
        return "a zip archive without torch.save's layout"
    if head[:1] == b"\x80":  # a pickle (protocol 2+): torch.save's legacy format
        return f"{_OBJECTS}, or it is truncated"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return f"unrecognised binary content ({type(exc).__name__})"


def _head_keys(state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys of the classifier whose shape differs from the model's (another class count)."""
    out = []
    for k, v in state.items():
        if k in model_state and k.startswith(_HEAD_PREFIXES) and tuple(v.shape) != tuple(model_state[k].shape):
            out.append(k)
    return out


def load_state_dict_into(model: nn.Module, state: Mapping[str, torch.Tensor], cfg: ModelConfig, source: str) -> None:
    if cfg.checkpoint_filter is not None:
        state = cfg.checkpoint_filter(state)
    model_state = model.state_dict()
    state = dict(state)
    dropped = _head_keys(state, model_state)
    if dropped:
        log.warning(
            "%s: dropping the classifier of %s (%s): its class count differs from the model's; "
            "the head stays randomly initialised.",
            cfg.name,
            source,
            ", ".join(dropped),
        )
        for k in dropped:
            del state[k]
    missing = [k for k in model_state if k not in state and k not in dropped]
    unexpected = [k for k in state if k not in model_state]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
        for k, v in state.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"Checkpoint {source} does not match {cfg.name}. Check that it was saved from this architecture "
            "(and variant).",
            missing=missing,
            unexpected=unexpected,
            mismatched=mismatched,
        )
    model.load_state_dict(state, strict=not dropped)


def load_checkpoint_into(model: nn.Module, path: str | Path, cfg: ModelConfig) -> str:
    """Load ``path`` into ``model``; returns the checkpoint's sha256."""
    state = read_state_dict(path)
    load_state_dict_into(model, state, cfg, repr(str(path)))
    return sha256_file(path)
