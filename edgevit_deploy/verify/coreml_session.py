"""Core ML sessions: native ``MLModel.predict`` (macOS) and the reference ML Program executor."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._lazy import require
from ..errors import RuntimeUnavailableError
from ..labels import class_labels


def _spec_io(spec) -> tuple[str, bool, str, bool]:
    """(input name, input is an image, output name holding the scores, is classifier)."""
    desc = spec.description
    inp = desc.input[0]
    is_image = inp.type.WhichOneof("Type") == "imageType"
    is_classifier = spec.WhichOneof("Type") == "mlProgram" and bool(desc.predictedFeatureName)
    out_name = desc.predictedProbabilitiesName if is_classifier and desc.predictedProbabilitiesName else desc.output[0].name
    return inp.name, is_image, out_name, is_classifier


def _denormalise(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Normalised NCHW float -> 0..255 pixels (what an ImageType input takes)."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.clip((x * s + m) * 255.0, 0, 255)


def _scores_from_dict(probs: dict, labels: list[str]) -> np.ndarray:
    return np.asarray([probs[label] for label in labels], dtype=np.float32)


class CoremlNativeSession:
    def __init__(self, path: Path):
        ct = require("coremltools", "coreml")
        from PIL import Image  # noqa: F401

        self.model = ct.models.MLModel(str(path))
        spec = self.model.get_spec()
        self.input_name, self.is_image, self.out_name, self.is_classifier = _spec_io(spec)
        meta = dict(spec.description.metadata.userDefined)
        self.mean = tuple(float(v) for v in meta.get("edgevit_deploy.mean", "0,0,0").split(","))
        self.std = tuple(float(v) for v in meta.get("edgevit_deploy.std", "1,1,1").split(","))
        num_classes = int(meta.get("edgevit_deploy.num_classes", "1000"))
        self.labels = class_labels(num_classes) if self.is_classifier else []
        self.executor = f"coreml-native (coremltools {ct.__version__})"

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        from PIL import Image

        if self.is_image:
            pixels = _denormalise(x, self.mean, self.std)[0].transpose(1, 2, 0).round().astype(np.uint8)
            feed = {self.input_name: Image.fromarray(pixels)}
        else:
            feed = {self.input_name: x.astype(np.float32)}
        out = self.model.predict(feed)[self.out_name]
        if isinstance(out, dict):
            keys = self.labels or sorted(out)
            return _scores_from_dict(out, keys)[None]
        return np.asarray(out, dtype=np.float32).reshape(1, -1)

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run_one(x[i:i + 1]) for i in range(x.shape[0])], axis=0)


class CoremlReferenceSession:
    """Runs the ML Program op by op with the reference executor (:mod:`edgevit_deploy.verify.mil`)."""

    def __init__(self, path: Path):
        try:
            from .mil import ReferenceExecutor
        except ImportError as exc:
            raise RuntimeUnavailableError(
                "Core ML prediction needs macOS and the reference ML Program executor is not available: "
                f"{exc}") from exc
        self.impl = ReferenceExecutor(Path(path))
        self.executor = "coreml-reference"

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.impl.run_normalised(x)
