"""Output comparison metrics (numpy only)."""

from __future__ import annotations

import numpy as np


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    noise = np.sum((ref - candidate.astype(np.float64)) ** 2)
    signal = np.sum(ref**2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean per-sample cosine similarity over the batch (first axis)."""
    a = reference.reshape(reference.shape[0], -1).astype(np.float64)
    b = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(np.all(a == b, axis=1), 1.0, 0.0))
    return float(np.mean(cos))


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int) -> float:
    """k=1: fraction of samples whose argmax agrees. k>1: fraction whose reference top-1 is in the
    candidate's top-k."""
    ref_top1 = np.argmax(reference, axis=-1)
    if k == 1:
        return float(np.mean(ref_top1 == np.argmax(candidate, axis=-1)))
    k = min(k, candidate.shape[-1])
    cand_topk = np.argsort(-candidate, axis=-1)[..., :k]
    return float(np.mean(np.any(cand_topk == ref_top1[..., None], axis=-1)))
