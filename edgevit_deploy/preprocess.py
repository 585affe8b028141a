"""Image preprocessing with a model's own config (resize, centre crop, mean/std), as timm evaluates."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .models._config import ModelConfig

_INTERP = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def preprocess_image(img: Image.Image, cfg: ModelConfig) -> np.ndarray:
    """PIL image -> normalised float32 CHW array for ``cfg`` (shorter side to size / crop_pct, centre crop)."""
    size = cfg.img_size
    img = img.convert("RGB")
    scale_size = math.floor(size / cfg.crop_pct)
    w, h = img.size
    if w <= h:
        new_w, new_h = scale_size, max(scale_size, round(h * scale_size / w))
    else:
        new_w, new_h = max(scale_size, round(w * scale_size / h)), scale_size
    img = img.resize((new_w, new_h), _INTERP.get(cfg.interpolation, Image.Resampling.BICUBIC))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    arr = (pixels - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
