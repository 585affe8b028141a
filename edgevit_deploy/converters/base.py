"""The small interface every converter implements, and the options it receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # keep torch out of light imports (host workers, runtimes)
    import torch
    from torch import nn


class Target(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    COREML = "coreml"
    EXECUTORCH = "executorch"

    def __str__(self) -> str:
        return self.value


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"

    def __str__(self) -> str:
        return self.value


class QuantMode(str, Enum):
    """Post-training quantization modes (``--quantize``)."""

    INT8 = "int8"  # static: int8 weights and activations, calibrated
    INT8_DYNAMIC = "int8-dynamic"  # dynamic range: int8 weights, activations quantized at run time
    W8 = "w8"  # weight-only int8, float compute
    PALETTIZE4 = "palettize4"  # 4-bit weight palettization (LUT)
    PALETTIZE6 = "palettize6"  # 6-bit weight palettization (LUT)

    def __str__(self) -> str:
        return self.value


class EtBackend(str, Enum):
    """The ExecuTorch delegate a ``.pte`` is lowered to (``--et-backend``)."""

    XNNPACK = "xnnpack"  # XNNPACK delegate (CPU; Android, iOS, Linux, macOS)
    PORTABLE = "portable"  # no delegate: ExecuTorch's portable reference kernels
    COREML = "coreml"  # Core ML delegate: lowers on Linux, runs on macOS / iOS

    def __str__(self) -> str:
        return self.value


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


@dataclass
class ExportOptions:
    """Everything a user can ask of one export. Converters read only what concerns them."""

    precision: Precision | None = None  # None: the target's default (first in its table row)
    dynamic_batch: bool = False
    batch_size: int = 1
    nhwc: bool = False  # TFLite: take NHWC input (camera pipelines)
    image_input: bool = False  # Core ML: ImageType input + classifier output
    minimum_deployment_target: str = "iOS16"  # Core ML
    onnx_opset: int = 17
    onnx_exporter: str = "torchscript"  # "torchscript" (default, faster graph) or "dynamo"
    et_backend: EtBackend | None = None  # ExecuTorch: None means the target's default (xnnpack)
    quantize: QuantMode | None = None
    quant: dict[str, Any] = field(default_factory=dict)  # per-mode settings (calibration, methods, ...)

    @property
    def layout(self) -> Layout:
        return Layout.NHWC if self.nhwc else Layout.NCHW

    @property
    def variant(self) -> str:
        """Short tag used in artifact file names, e.g. ``fp16``, ``int8``, ``fp32-nhwc``."""
        tag = str(self.quantize) if self.quantize else str(self.precision or "default")
        if self.nhwc:
            tag += "-nhwc"
        if self.image_input:
            tag += "-image"
        if self.dynamic_batch:
            tag += "-dynbatch"
        if self.et_backend is not None and self.et_backend != EtBackend.XNNPACK:
            tag += f"-{self.et_backend}"
        return tag


@dataclass(frozen=True)
class ArtifactMetadata:
    """Written into every artifact (ONNX metadata_props, TFLite metadata buffer, Core ML user_defined,
    ExecuTorch: a sidecar ``NAME.pte.json``)."""

    model: str
    input_shape: tuple[int, ...]
    layout: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    toolkit_version: str
    checkpoint_sha256: str
    precision: str
    num_classes: int
    random_init: str = "default"  # "conditioned": well-conditioned random weights (--random-init)

    def as_strings(self) -> dict[str, str]:
        extra = {} if self.random_init == "default" else {"edgevit_deploy.random_init": self.random_init}
        return {
            **extra,
            "edgevit_deploy.model": self.model,
            "edgevit_deploy.input_shape": ",".join(map(str, self.input_shape)),
            "edgevit_deploy.layout": self.layout,
            "edgevit_deploy.mean": ",".join(f"{v:.6g}" for v in self.mean),
            "edgevit_deploy.std": ",".join(f"{v:.6g}" for v in self.std),
            "edgevit_deploy.version": self.toolkit_version,
            "edgevit_deploy.checkpoint_sha256": self.checkpoint_sha256,
            "edgevit_deploy.precision": self.precision,
            "edgevit_deploy.num_classes": str(self.num_classes),
        }

    @classmethod
    def from_strings(cls, d: dict[str, str]) -> ArtifactMetadata:
        def floats(s: str) -> tuple[float, ...]:
            return tuple(float(v) for v in s.split(",")) if s else ()

        return cls(
            model=d["edgevit_deploy.model"],
            input_shape=tuple(int(v) for v in d["edgevit_deploy.input_shape"].split(",")),
            layout=d["edgevit_deploy.layout"],
            mean=floats(d["edgevit_deploy.mean"]),
            std=floats(d["edgevit_deploy.std"]),
            toolkit_version=d["edgevit_deploy.version"],
            checkpoint_sha256=d["edgevit_deploy.checkpoint_sha256"],
            precision=d["edgevit_deploy.precision"],
            num_classes=int(d["edgevit_deploy.num_classes"]),
            random_init=d.get("edgevit_deploy.random_init", "default"),
        )


@runtime_checkable
class Converter(Protocol):
    """Turns an eval-mode module into one artifact file (or package directory) at ``out_path``."""

    def convert(
        self,
        model: nn.Module,
        example: torch.Tensor,
        out_path: Path,
        options: ExportOptions,
        metadata: ArtifactMetadata,
    ) -> Path: ...

    def read_metadata(self, path: Path) -> dict[str, str]: ...
