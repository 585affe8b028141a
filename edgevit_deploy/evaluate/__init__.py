"""Accuracy of PyTorch models and exported artifacts on a labelled image set (``edgevit-eval``)."""

from __future__ import annotations

from .api import EvalReport, EvalResult, EvalRunError, EvalSourceError, Flip, evaluate
from .dataset import DatasetError, LabelledSet, Sample, load_set
from .metrics import wilson_interval

__all__ = [
    "DatasetError",
    "EvalReport",
    "EvalResult",
    "EvalRunError",
    "EvalSourceError",
    "Flip",
    "LabelledSet",
    "Sample",
    "evaluate",
    "load_set",
    "wilson_interval",
]
