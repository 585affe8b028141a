"""Shared helpers of the quantization tests (imported by tests/quantize/test_quant_*.py).

Every int8 artifact is built once per session (``lru_cache``: the builders are shared by every test module
that imports them): EdgeViT-XXS at 64 px with seeded random weights, EfficientNet-Lite0 at 224 px with its
real packaged weights; small calibration sets (the conversions, not the calibration, dominate the time).
"""
from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions, QuantMode
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.models import create_model
from edgevit_deploy.quantize.fidelity import FidelityReport
from edgevit_deploy.quantize.pipeline import export_float_twin, quantize_and_report

XXS_SIZE = 64
CALIB_SIZE = 16
# EDGEVIT_QUANT_TEST_OUT keeps the artifacts and their report.json (docs/quantization.md quotes them)
_OUT = Path(os.environ.get("EDGEVIT_QUANT_TEST_OUT") or tempfile.mkdtemp(prefix="edgevit-quant-tests-"))


@lru_cache(maxsize=None)
def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, img_size=XXS_SIZE if name == "edgevit_xxs" else None)


def metadata(m: nn.Module, precision: str = "int8") -> ArtifactMetadata:
    cfg = m.deploy_cfg
    return ArtifactMetadata(model=cfg.name, input_shape=(1, *cfg.input_size), layout="NCHW", mean=cfg.mean,
                            std=cfg.std, toolkit_version="test", checkpoint_sha256=m.checkpoint_sha256,
                            precision=precision, num_classes=cfg.num_classes)


@lru_cache(maxsize=None)
def float_twin(name: str, target: str) -> Path:
    """The float artifact every mode of ``name`` x ``target`` is compared with (size, latency): made once,
    as the export pipeline does when it exports float and quantized artifacts in one run."""
    m = model(name)
    spec = get_spec(target)
    example = torch.zeros(1, *m.deploy_cfg.input_size)
    return export_float_twin(spec, m, example, ExportOptions(precision=spec.default_precision), metadata(m),
                             _OUT / f"{name}-{target}-float", m.deploy_cfg.name)


@lru_cache(maxsize=None)
def quantized(name: str, target: str, mode: str = "int8", quant: tuple = ()) -> tuple[Path, FidelityReport]:
    """(artifact, fidelity report) of ``name`` quantized for ``target``; ``quant``: sorted settings items."""
    m = model(name)
    spec = get_spec(target)
    options = ExportOptions(quantize=QuantMode(mode), quant=dict(quant),
                            precision=spec.default_precision)
    out = _OUT / f"{name}-{target}-{mode}-{abs(hash(quant))}"
    path, report = quantize_and_report(m, m.deploy_cfg, spec, options, out, metadata(m), calib_size=CALIB_SIZE,
                                       float_artifact=float_twin(name, target), coreml_executor="reference",
                                       latency_runs=5)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1, default=str))
    return path, report


def photo_views(cfg, names: tuple[str, ...], views: int = 1, seed: int = 11) -> tuple[list[str], np.ndarray]:
    """The photographs ``names`` that are installed, preprocessed for ``cfg``: each whole, then ``views - 1``
    seeded crops / flips of each (other crops than the calibration ones, which use seeds 0 and 1)."""
    from edgevit_deploy.images import sample_photos
    from edgevit_deploy.quantize.calibration import views_of

    photos = sample_photos(names)
    x, used = views_of(photos, views * len(photos), cfg, seed, whole_first=True)
    return used, x
