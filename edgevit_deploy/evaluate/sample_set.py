"""A small labelled ImageFolder made from photographs that ship in PyPI packages (:mod:`edgevit_deploy.images`).

No ImageNet is reachable offline. These are the natural photos whose ImageNet-1k class is unambiguous from
what the picture shows (not from what a model predicts); the others (the astronaut portrait, a rocket
launch, coins, the moon, the cameraman, a motorcycle, a dahlia) have no fitting ImageNet class and are left
out. Each photo is written whole and mirrored left-right (the label does not change), so the set has
twice as many images as labelled photos. It tests the evaluation end to end; it measures nothing about a
model's ImageNet accuracy (ten images: see the Wilson interval).
"""

from __future__ import annotations

from pathlib import Path

from PIL import ImageOps

#: photo -> ImageNet-1k synset id (class index, name)
SAMPLE_LABELS: dict[str, str] = {
    "chelsea": "n02123045",  # 281 tabby cat (Chelsea is a tabby)
    "coffee": "n07920052",  # 967 espresso (a cup of espresso on a saucer)
    "clock": "n04548280",  # 892 wall clock (motion-blurred)
    "grace_hopper": "n03763968",  # 652 military uniform (US Navy uniform)
    "china": "n03877845",  # 698 palace (the Summer Palace, Beijing)
}


def write_sample_set(out_dir: str | Path, mirrored: bool = True, quality: int = 95) -> Path:
    """Write ``out_dir/<synset>/<photo>.jpeg`` (and ``<photo>_mirrored.jpeg``) for every installed labelled
    photo; returns ``out_dir``. Missing photos (package not installed) are left out."""
    from ..images import sample_photos

    out = Path(out_dir)
    for name, img in sample_photos(tuple(SAMPLE_LABELS)).items():
        folder = out / SAMPLE_LABELS[name]
        folder.mkdir(parents=True, exist_ok=True)
        img = img.convert("RGB")
        img.save(folder / f"{name}.jpeg", quality=quality)
        if mirrored:
            ImageOps.mirror(img).save(folder / f"{name}_mirrored.jpeg", quality=quality)
    return out
