"""Calibration and held-out image sets, preprocessed with the model's own config.

``--calib-data DIR``: a flat folder of images, or the ImageFolder layout of the EdgeViT training README
(``train/<class>/*.jpeg``, ``val/<class>/*.jpeg``). With ``train/`` and ``val/`` the calibration images come
from ``train/`` and the held-out images from ``val/``; otherwise a seeded shuffle splits the folder (the
held-out images are never calibration images). Unreadable images are skipped and counted.

Without a folder, the built-in default: photographs bundled inside PyPI packages (scikit-image's sample
data; offline), with deterministic crops and flips to reach N. Six natural photos (the cat, the coffee cup,
the clock from scikit-image; Grace Hopper from matplotlib; the temple and the flower from scikit-learn, when
those are installed) are held out entirely for the fidelity report: never calibration images.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..images import sample_photos
from ..models._config import ModelConfig
from ..preprocess import preprocess_image
from .base import CalibrationDataError

log = logging.getLogger(__name__)

DEFAULT_CALIB_SIZE = 128
DEFAULT_HELD_OUT = 32
BUILTIN_SOURCE = "built-in default (sample photos bundled in scikit-image / matplotlib / scikit-learn)"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif"})
# calibration photos (natural scenes, textures, microscopy: see images.py) and held-out natural photos
BUILTIN_CALIB_PHOTOS = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "coins",
    "moon",
    "grass",
    "gravel",
    "brick",
)
BUILTIN_HELD_OUT_PHOTOS = ("chelsea", "coffee", "clock", "grace_hopper", "china", "flower")
HELD_OUT_VIEWS = 8  # the whole photo plus 7 deterministic crops / flips of it


@dataclass
class CalibrationSet:
    """``data``: ``(N, 3, H, W)`` float32, normalised with the model's mean/std."""

    data: np.ndarray
    source: str
    names: list[str] = field(default_factory=list)
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    builtin: bool = False

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    def batches(self, batch_size: int = 1):
        for i in range(0, self.count, batch_size):
            yield self.data[i : i + batch_size]

    def provenance(self) -> dict[str, object]:
        return {
            "source": self.source,
            "builtin_default_used": self.builtin,
            "count": self.count,
            "skipped_unreadable": self.skipped,
            "skipped_files": self.skipped_files[:20],
            "images": sorted(set(self.names))[:50],
        }


def check_calib_size(calib_size: int) -> None:
    if not isinstance(calib_size, int) or isinstance(calib_size, bool) or calib_size <= 0:
        raise CalibrationDataError(
            f"--calib-size must be a positive integer (got {calib_size!r}); the default is {DEFAULT_CALIB_SIZE}."
        )


def load_calibration(
    cfg: ModelConfig,
    calib_data: str | Path | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    seed: int = 0,
    held_out_size: int = DEFAULT_HELD_OUT,
) -> tuple[CalibrationSet, CalibrationSet]:
    """(calibration set, held-out set) for ``cfg``'s input size and preprocessing."""
    check_calib_size(calib_size)
    if calib_data is None:
        return builtin_calibration(cfg, calib_size, seed), builtin_held_out(cfg, seed)
    return folder_calibration(cfg, Path(calib_data), calib_size, seed, held_out_size)


# ----------------------------------------------------------------------------------------- built-in
def _random_view(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A seeded crop (35-100 % of the area, aspect 3/4-4/3) and a horizontal flip half the time."""
    w, h = img.size
    area = w * h * rng.uniform(0.35, 1.0)
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    cw = int(min(w, round(np.sqrt(area * aspect))))
    ch = int(min(h, round(np.sqrt(area / aspect))))
    left = int(rng.integers(0, w - cw + 1))
    top = int(rng.integers(0, h - ch + 1))
    view = img.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return view


def views_of(
    photos: dict[str, Image.Image], n: int, cfg: ModelConfig, seed: int, whole_first: bool
) -> tuple[np.ndarray, list[str]]:
    """``n`` preprocessed views cycling through ``photos`` (each whole first if ``whole_first``, then
    seeded crops / flips): ``(array, photo name of each view)``."""
    rng = np.random.default_rng(seed)
    names = list(photos)
    arrays, used = [], []
    for k in range(n):
        name = names[k % len(names)]
        img = photos[name]
        view = img if (whole_first and k < len(names)) else _random_view(img, rng)
        arrays.append(preprocess_image(view, cfg))
        used.append(name)
    return np.stack(arrays).astype(np.float32), used


def _builtin_photos(names: Sequence[str]) -> dict[str, Image.Image]:
    photos = sample_photos(tuple(names))
    if not photos:
        raise CalibrationDataError(
            "the built-in calibration photos need scikit-image "
            "(pip install 'edgevit-deploy[quant]'), or pass --calib-data DIR."
        )
    return photos


def builtin_calibration(cfg: ModelConfig, calib_size: int = DEFAULT_CALIB_SIZE, seed: int = 0) -> CalibrationSet:
    check_calib_size(calib_size)
    photos = _builtin_photos(BUILTIN_CALIB_PHOTOS)
    data, names = views_of(photos, calib_size, cfg, seed, whole_first=True)
    log.info("calibrating on the %s: %d views of %d photos", BUILTIN_SOURCE, calib_size, len(photos))
    return CalibrationSet(data, BUILTIN_SOURCE, names, builtin=True)


def builtin_held_out(cfg: ModelConfig, seed: int = 0, views: int = HELD_OUT_VIEWS) -> CalibrationSet:
    """Photos never used for calibration: each whole, then ``views - 1`` seeded crops / flips of each."""
    photos = _builtin_photos(BUILTIN_HELD_OUT_PHOTOS)
    data, names = views_of(photos, views * len(photos), cfg, seed + 1, whole_first=True)
    return CalibrationSet(data, f"{BUILTIN_SOURCE}, held out: {', '.join(photos)}", names, builtin=True)


# ------------------------------------------------------------------------------------------- folder
def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open_checked(path: Path) -> Image.Image:
    """Open and decode an image; a decompression bomb (more pixels than ``Image.MAX_IMAGE_PIXELS``, a
    pixel-count limit PIL enforces from the header alone) raises ``ValueError`` before it is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"decompression bomb ({exc})") from None
    try:
        img.load()
    except BaseException:
        img.close()
        raise
    return img


def _read(path: Path, cfg: ModelConfig) -> np.ndarray | None:
    try:
        with _open_checked(path) as img:
            return preprocess_image(img, cfg)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        log.warning("skipping unreadable image %s: %s", path, exc)
        return None


def _readable(path: Path) -> bool:
    try:
        with _open_checked(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def _read_up_to(
    files: Sequence[Path], n: int, cfg: ModelConfig, root: Path
) -> tuple[list[np.ndarray], list[str], list[str], int]:
    """Read files in order until ``n`` are readable: (arrays, names, skipped names, files consumed)."""
    arrays: list[np.ndarray] = []
    names: list[str] = []
    skipped: list[str] = []
    consumed = 0
    for path in files:
        if len(arrays) >= n:
            break
        consumed += 1
        arr = _read(path, cfg)
        rel = str(path.relative_to(root))
        if arr is None:
            skipped.append(rel)
        else:
            arrays.append(arr)
            names.append(rel)
    return arrays, names, skipped, consumed


def _shuffled(files: list[Path], seed: int) -> list[Path]:
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order]


def _split(folder: Path, seed: int, held_out_size: int) -> tuple[list[Path], list[Path], str]:
    """(calibration files, held-out files, layout) of a calibration folder; raises when it has no image."""
    if not folder.exists():
        raise CalibrationDataError(
            f"--calib-data {str(folder)!r} does not exist; pass a folder of images "
            "(flat, or train/<class>/*.jpeg), or omit it to use the built-in photos."
        )
    if not folder.is_dir():
        raise CalibrationDataError(f"--calib-data {str(folder)!r} is not a folder; pass a folder of images.")
    train, val = folder / "train", folder / "val"
    if train.is_dir() and val.is_dir():
        calib_files, held_files = _shuffled(list_images(train), seed), _shuffled(list_images(val), seed)
        layout = "ImageFolder train/ (calibration) and val/ (held out)"
    else:
        calib_files, held_files = _shuffled(list_images(folder), seed), []
        layout = "flat (seeded split)"
    if not calib_files:
        where = train if train.is_dir() and val.is_dir() else folder
        raise CalibrationDataError(
            f"--calib-data {str(where)!r} holds no image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or omit --calib-data."
        )
    if not held_files:  # flat folder: hold out the first images of the shuffle, calibrate on the rest
        n_held = min(held_out_size, len(calib_files) // 5)
        held_files, calib_files = calib_files[:n_held], calib_files[n_held:]
    return calib_files, held_files, layout


def _none_readable(folder: Path, n: int) -> CalibrationDataError:
    return CalibrationDataError(
        f"--calib-data {str(folder)!r}: none of its {n} image files could be read (corrupt, "
        "not an image, or over PIL's decompression-bomb pixel limit); add valid JPEG/PNG "
        "files or omit --calib-data."
    )


def check_calib_folder(folder: Path, seed: int = 0, held_out_size: int = DEFAULT_HELD_OUT) -> None:
    """Raise CalibrationDataError unless ``folder`` has at least one readable calibration image (checked
    before an export starts; unreadable files are skipped with a warning when the images are loaded)."""
    calib_files, _, _ = _split(Path(folder), seed, held_out_size)
    if not any(_readable(p) for p in calib_files):
        raise _none_readable(Path(folder), len(calib_files))


def folder_calibration(
    cfg: ModelConfig,
    folder: Path,
    calib_size: int = DEFAULT_CALIB_SIZE,
    seed: int = 0,
    held_out_size: int = DEFAULT_HELD_OUT,
) -> tuple[CalibrationSet, CalibrationSet]:
    check_calib_size(calib_size)
    calib_files, held_files, layout = _split(folder, seed, held_out_size)
    arrays, names, skipped, _ = _read_up_to(calib_files, calib_size, cfg, folder)
    if not arrays:
        raise _none_readable(folder, len(skipped))
    if len(arrays) < calib_size:
        log.warning(
            "--calib-data %s has %d readable calibration images, fewer than --calib-size %d",
            folder,
            len(arrays),
            calib_size,
        )
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s", len(skipped), folder)
    calib = CalibrationSet(
        np.stack(arrays).astype(np.float32), f"{folder} ({layout})", names, skipped=len(skipped), skipped_files=skipped
    )
    h_arrays, h_names, h_skipped, _ = _read_up_to(held_files, held_out_size, cfg, folder)
    if h_arrays:
        held = CalibrationSet(
            np.stack(h_arrays).astype(np.float32),
            f"{folder} (held out)",
            h_names,
            skipped=len(h_skipped),
            skipped_files=h_skipped,
        )
    else:
        log.warning(
            "%s has too few readable images to hold any out; the fidelity report uses the built-in held-out photos",
            folder,
        )
        held = builtin_held_out(cfg, seed)
    return calib, held
