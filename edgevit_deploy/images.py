"""Photographs that ship inside PyPI packages: offline, no hub, no download at run time.

Sources: scikit-image's sample data (``skimage.data``), matplotlib's sample data (Grace Hopper's portrait)
and scikit-learn's sample images (a Chinese temple, a flower). A name whose package is not installed, or
that this package version lacks, is skipped.

Two groups matter to the int8 fidelity checks:

- :data:`NATURAL_PHOTOS`: photographs of everyday scenes and objects, the kind of picture an ImageNet
  classifier is made for (a cat, a coffee cup, a clock, a rocket launch, a person, coins, a motorcycle...);
- :data:`SCIENTIFIC_IMAGES`: textures, microscopy, a fundus image, a deep-space field and document scans:
  real images, but with no ImageNet object in them, so a classifier's top-2 are near-ties and its top-1 is
  noise. They are still calibration material and are still measured, apart from the natural ones.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from PIL import Image

# the default natural inputs of the parity check (verify/inputs.py); the cat and the coffee cup have
# ImageNet classes. "motorcycle_left" is not a function of every scikit-image (see "motorcycle" below).
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "hubble_deep_field")

NATURAL_PHOTOS = (
    "chelsea",
    "coffee",
    "clock",
    "astronaut",
    "rocket",
    "camera",
    "coins",
    "moon",
    "motorcycle",
    "grace_hopper",
    "china",
    "flower",
)
SCIENTIFIC_IMAGES = ("hubble_deep_field", "immunohistochemistry", "retina", "grass", "gravel", "brick", "page", "text")


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def _motorcycle() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data(filename, asfileobj=False)) as img:
            return np.asarray(img.convert("RGB"))

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


# names that are not a scikit-image sample function of the same name
_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "motorcycle": _motorcycle,
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


@cache
def _load(name: str) -> np.ndarray:
    arr = np.asarray(_LOADERS[name]() if name in _LOADERS else _skimage(name))
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.dtype != np.uint8:  # float images in [0, 1]
        arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def sample_photos(names: tuple[str, ...] = SKIMAGE_PHOTOS) -> dict[str, Image.Image]:
    """Available photographs by name, in the order asked (missing packages or samples are skipped)."""
    out: dict[str, Image.Image] = {}
    for name in names:
        try:
            out[name] = Image.fromarray(_load(name))
        except Exception:  # the package is not installed, lacks the sample, or its optional reader
            continue
    return out
