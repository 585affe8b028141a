"""Core ML export: ``torch.export`` then coremltools, ML Program (``.mlpackage``).

Compute precision fp16 (default) or fp32, a minimum deployment target, and ``--image-input``: an ImageType
input taking 0..255 RGB pixels (what an iOS app feeds from the camera), the model's mean/std folded in as its
first ops, and a classifier output with ImageNet labels.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .._atomic import atomic_path
from .._lazy import require
from ..errors import ConversionError, UnsupportedOptionError, first_line
from ..labels import class_labels
from ._errors import unsupported_op_from
from ._quiet import quiet_backends
from .base import ArtifactMetadata, ExportOptions, Precision

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
CLASS_LABEL_NAME = "classLabel"
DEPLOYMENT_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")
#: the macOS release of each iOS release's Core ML specification (the same ML Program opset)
_MACOS_OF_IOS = {"iOS15": "macOS12", "iOS16": "macOS13", "iOS17": "macOS14", "iOS18": "macOS15"}


def at_least(requested: str, needed_ios: str) -> str:
    """The deployment target to convert for when a feature needs ``needed_ios`` (say int8 activations: iOS17):
    ``requested`` when it is as new on its own platform (``macOS14`` stays ``macOS14``), else that platform's
    release of the same specification (``macOS13`` -> ``macOS14``, ``iOS16`` -> ``iOS17``). A name this list
    lacks is returned as is: the converter rejects it with the choices."""
    if requested not in DEPLOYMENT_TARGETS:
        return requested
    macos = requested.startswith("macOS")
    floor = _MACOS_OF_IOS[needed_ios] if macos else needed_ios
    same_platform = [t for t in DEPLOYMENT_TARGETS if t.startswith("macOS") == macos]
    return requested if same_platform.index(requested) >= same_platform.index(floor) else floor


class NormalisedInput(nn.Module):
    """Takes 0..255 RGB pixels (the ImageType scales them to 0..1), applies the model's mean/std."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    mean: torch.Tensor
    inv_std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) * self.inv_std)


def deployment_target(ct, name: str):
    if name not in DEPLOYMENT_TARGETS:
        raise UnsupportedOptionError(
            f"unknown Core ML minimum deployment target {name!r}; choose one of {', '.join(DEPLOYMENT_TARGETS)} "
            "(ML Programs need iOS15 / macOS12 or newer)"
        )
    return getattr(ct.target, name)


class CoremlConverter:
    def convert(
        self,
        model: nn.Module,
        example: torch.Tensor,
        out_path: Path,
        options: ExportOptions,
        metadata: ArtifactMetadata,
    ) -> Path:
        ct = require("coremltools", "coreml")
        target = deployment_target(ct, options.minimum_deployment_target)
        module = NormalisedInput(model, metadata.mean, metadata.std).eval() if options.image_input else model
        try:
            with warnings.catch_warnings(), quiet_backends():
                warnings.simplefilter("ignore")
                program = torch.export.export(module, (example,)).run_decompositions({})
                kwargs = _io_kwargs(ct, example, options, metadata)
                mlmodel = ct.convert(
                    program,
                    convert_to="mlprogram",
                    minimum_deployment_target=target,
                    compute_precision=(
                        ct.precision.FLOAT16 if options.precision == Precision.FP16 else ct.precision.FLOAT32
                    ),
                    skip_model_load=True,
                    **kwargs,
                )
        except (UnsupportedOptionError, ConversionError):
            raise
        except Exception as exc:
            raise ConversionError("coreml", first_line(exc), op=unsupported_op_from(str(exc))) from exc
        set_metadata(mlmodel, metadata.as_strings())
        with atomic_path(out_path) as tmp:  # a whole package or none under out_path
            mlmodel.save(str(tmp))
        return out_path

    def read_metadata(self, path: Path) -> dict[str, str]:
        return read_metadata(path)


def _io_kwargs(ct, example: torch.Tensor, options: ExportOptions, metadata: ArtifactMetadata) -> dict:
    shape = tuple(example.shape)
    if options.image_input:
        return {
            "inputs": [ct.ImageType(name=INPUT_NAME, shape=shape, scale=1.0 / 255.0, color_layout=ct.colorlayout.RGB)],
            "classifier_config": ct.ClassifierConfig(
                class_labels(metadata.num_classes), predicted_feature_name=CLASS_LABEL_NAME
            ),
        }
    return {"inputs": [ct.TensorType(name=INPUT_NAME, shape=shape)], "outputs": [ct.TensorType(name=OUTPUT_NAME)]}


def set_metadata(mlmodel, meta: dict[str, str]) -> None:
    mlmodel.user_defined_metadata.update(meta)
    mlmodel.author = "edgevit-deploy"
    mlmodel.version = meta.get("edgevit_deploy.version", "")
    mlmodel.short_description = (
        f"{meta.get('edgevit_deploy.model', '')} exported by edgevit-deploy "
        f"({meta.get('edgevit_deploy.precision', '')})"
    )


def read_metadata(path: Path) -> dict[str, str]:
    ct = require("coremltools", "coreml")
    spec = ct.utils.load_spec(str(path))
    return dict(spec.description.metadata.userDefined)
