"""Natural photographs that ship inside a PyPI package (scikit-image's sample data): offline, no hub."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

# scikit-image sample photographs (RGB, natural scenes); the cat and the coffee cup have ImageNet classes
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "hubble_deep_field")


@lru_cache(maxsize=None)
def _load(name: str) -> np.ndarray:
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def sample_photos(names: tuple[str, ...] = SKIMAGE_PHOTOS) -> dict[str, Image.Image]:
    """Available sample photographs by name (names a scikit-image version lacks are skipped)."""
    out: dict[str, Image.Image] = {}
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        return out
    for name in names:
        try:
            out[name] = Image.fromarray(_load(name))
        except Exception:  # a sample missing from this scikit-image version, or its optional reader
            continue
    return out
