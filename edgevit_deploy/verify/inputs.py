"""The fixed batch the parity check runs: seeded random tensors plus natural photographs."""

from __future__ import annotations

import numpy as np

from ..images import sample_photos
from ..models._config import ModelConfig
from ..preprocess import preprocess_image

PARITY_SEED = 0


def parity_inputs(cfg: ModelConfig, num_random: int = 2, natural: bool = True, seed: int = PARITY_SEED) -> np.ndarray:
    """``(N, 3, H, W)`` float32: ``num_random`` N(0, 1) tensors (seeded) then every sample photograph,
    preprocessed with the model's own config."""
    rng = np.random.default_rng(seed)
    c, h, w = cfg.input_size
    parts = [rng.standard_normal((num_random, c, h, w), dtype=np.float32)] if num_random else []
    if natural:
        photos = [preprocess_image(im, cfg) for im in sample_photos().values()]
        if photos:
            parts.append(np.stack(photos).astype(np.float32))
    if not parts:
        raise ValueError("parity_inputs needs at least one random or natural input")
    return np.concatenate(parts, axis=0)
