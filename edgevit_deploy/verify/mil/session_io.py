"""Core ML interface details shared by the native and reference sessions: image inputs with the
model's mean / std folded in, and where those come from."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MilProgramError

MEAN_KEY = "edgevit_deploy.mean"
STD_KEY = "edgevit_deploy.std"


def mean_std_from_metadata(meta: dict[str, str]) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(mean, std) written by the Core ML converter, or (None, None) when the package has none."""
    if MEAN_KEY not in meta or STD_KEY not in meta:
        return None, None
    try:
        mean = tuple(float(v) for v in meta[MEAN_KEY].split(","))
        std = tuple(float(v) for v in meta[STD_KEY].split(","))
    except ValueError as exc:
        raise MilProgramError(f"unreadable mean / std metadata ({meta[MEAN_KEY]!r}, {meta[STD_KEY]!r}): {exc}") from exc
    return mean, std


def denormalise_for_image(x: np.ndarray, mean, std, color_layout: str = "RGB") -> np.ndarray:
    """Normalised RGB NCHW floats -> 0..255 pixels in the image input's channel order. Not clipped or
    rounded: the program's input is a float tensor, and parity should measure the conversion."""
    if x.shape[1] != 3 or color_layout not in ("RGB", "BGR"):
        raise MilProgramError(
            f"an image input with colour layout {color_layout} and {x.shape[1]} channels cannot take the "
            "normalised RGB batch; feed pixels with predict() instead."
        )
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    pixels = (x * s + m) * 255.0
    return pixels[:, ::-1].copy() if color_layout == "BGR" else pixels


def image_feed(value: Any, color_layout: str) -> np.ndarray:
    """A PIL image (RGB) or a pixel array -> the program's NCHW float pixel tensor. Arrays already in NCHW
    (or CHW) are taken in the program's channel order; HWC arrays as RGB."""
    if hasattr(value, "convert") and hasattr(value, "size"):  # PIL.Image
        arr = np.asarray(value.convert("L" if color_layout.startswith("GRAYSCALE") else "RGB"), dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if color_layout == "BGR":
            arr = arr[::-1]
        return arr[None].copy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)
        if color_layout == "BGR":
            arr = arr[::-1]
    return arr[None].copy() if arr.ndim == 3 else arr
