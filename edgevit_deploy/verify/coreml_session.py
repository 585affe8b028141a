"""Core ML sessions behind ``CoremlHost``: native ``MLModel.predict`` (macOS), the reference ML Program
executor (any OS), or both compared with each other (macOS).

Every session takes the model's normalised NCHW float32 batch and returns ``(N, classes)`` float32
scores; its ``executor`` attribute says what produced them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._lazy import require
from ..labels import class_labels
from .report import ParityReport, Thresholds
from .validator import validate_outputs

log = logging.getLogger(__name__)


class CoremlNativeSession:
    """``MLModel.predict``, one sample at a time (macOS only). Image inputs get uint8 RGB pixels, as from
    a camera; classifier outputs are read back in class-index order."""

    def __init__(self, path: Path):
        ct = require("coremltools", "coreml")
        from .mil.session_io import mean_std_from_metadata

        self.model = ct.models.MLModel(str(path))
        desc = self.model.get_spec().description
        inp = desc.input[0]
        self.input_name = inp.name
        self.is_image = inp.type.WhichOneof("Type") == "imageType"
        self.color_layout = inp.type.imageType.ColorSpace.Name(inp.type.imageType.colorSpace) if self.is_image else None
        self.scores_name = desc.predictedProbabilitiesName or desc.output[0].name
        meta = dict(desc.metadata.userDefined)
        self.mean, self.std = mean_std_from_metadata(meta)
        self.labels = (
            class_labels(int(meta.get("edgevit_deploy.num_classes", "1000"))) if desc.predictedProbabilitiesName else []
        )
        self.executor = f"coreml-native (coremltools {ct.__version__})"

    def _feed(self, x: np.ndarray):
        from PIL import Image

        from .mil.session_io import denormalise_for_image

        if not self.is_image:
            return x.astype(np.float32)
        pixels = denormalise_for_image(x, self.mean, self.std, "RGB") if self.mean is not None else x
        rgb = np.clip(np.round(pixels[0]), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return Image.fromarray(rgb)

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        out = self.model.predict({self.input_name: self._feed(x)})[self.scores_name]
        if isinstance(out, dict):
            keys = self.labels if self.labels and all(k in out for k in self.labels) else list(out)
            return np.asarray([out[k] for k in keys], dtype=np.float32)[None]
        return np.asarray(out, dtype=np.float32).reshape(1, -1)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return np.concatenate([self._run_one(x[i : i + 1]) for i in range(x.shape[0])], axis=0)


class CoremlReferenceSession:
    """The ML Program run op by op by :class:`~edgevit_deploy.verify.mil.ReferenceExecutor`."""

    def __init__(self, path: Path, threads: int = 1, emulate_fp16: bool = True):
        from .mil import ReferenceExecutor

        self.impl = ReferenceExecutor(Path(path), emulate_fp16=emulate_fp16, threads=threads)
        self.executor = self.impl.executor

    def run(self, x: np.ndarray, uint8_pixels: bool = False) -> np.ndarray:
        return self.impl.run_normalised(x, uint8_pixels=uint8_pixels)


class CoremlBothSession:
    """macOS: runs native and reference on the same batch, compares them (``last_comparison``), logs a
    warning when they disagree, and returns the native numbers."""

    def __init__(self, path: Path, threads: int = 1):
        self.native = CoremlNativeSession(path)
        self.reference = CoremlReferenceSession(path, threads)
        precision = "fp16" if self.reference.impl.has_fp16 else "fp32"
        self.thresholds = Thresholds.for_precision(precision)
        self.executor = f"{self.native.executor}; checked against {self.reference.executor}"
        self.last_comparison: ParityReport | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        native = self.native.run(x)
        ref = self.reference.run(x, uint8_pixels=self.native.is_image)  # same 8-bit pixels as native
        self.last_comparison = validate_outputs(native, ref, self.thresholds, executor=self.reference.executor)
        if not self.last_comparison.passed:
            log.warning("Core ML native and reference executors disagree: %s", self.last_comparison.reason)
        return native
