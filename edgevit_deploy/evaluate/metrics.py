"""Accuracy figures of a labelled set: top-k, the Wilson score interval, agreement with a reference."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 %, 100 % and small ``n``,
    which is what a few hundred images or fewer give (Wilson, JASA 1927; Brown, Cai & DasGupta 2001).
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def topk_indices(logits: np.ndarray, k: int = 5) -> np.ndarray:
    """``(N, k)`` class indices, best first (stable: ties keep the lower index first)."""
    logits = np.asarray(logits)
    k = min(k, logits.shape[-1])
    order = np.argsort(-logits, axis=-1, kind="stable")
    return order[:, :k].astype(np.int64)


def hits(topk: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is the label among the first ``k`` predictions."""
    return (topk[:, :k] == labels[:, None]).any(axis=1)
