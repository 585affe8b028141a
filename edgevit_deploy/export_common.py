"""What exporting an artifact (``export_api``) and checking it again (``verify.artifact``, ``evaluate``) share:
the size of an artifact on disk and the random-init weights an export used. A leaf below both, so that
neither imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UnsupportedOptionError

if TYPE_CHECKING:  # light to import: the bench's artifact cache sizes files with it
    from torch import nn

    from .models import ModelConfig


def artifact_size(path: Path) -> int:
    """Bytes of an artifact: a file, or every file of a package directory (``.mlpackage``)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def apply_random_init(model: nn.Module, cfg: ModelConfig, sha: str, random_init: str) -> None:
    """``random_init="conditioned"``: replace a random initialisation by well-conditioned random weights
    (:func:`~edgevit_deploy.models._conditioning.well_conditioned`) so that parity checks the structure."""
    import torch

    from .models._conditioning import RANDOM_INIT_CHOICES, well_conditioned
    from .verify.inputs import parity_inputs

    if random_init not in RANDOM_INIT_CHOICES:
        raise UnsupportedOptionError(f"random_init={random_init!r}: choose from {', '.join(RANDOM_INIT_CHOICES)}")
    if random_init == "default":
        return
    if sha != "random-init":
        raise UnsupportedOptionError(
            f"random_init={random_init!r} replaces random weights, but this model has trained weights "
            f"(sha256 {sha[:12]}); drop --random-init or --checkpoint"
        )
    # measured on inputs of the parity batch's kind (photographs and noise; other, more noise draws than its own)
    batch = torch.from_numpy(parity_inputs(cfg, num_random=16, seed=1))
    well_conditioned(model, cfg.input_size[1:], in_chans=cfg.input_size[0], inputs=batch)
