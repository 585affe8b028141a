"""The small interface every converter implements, and the options it receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import QuantizationError, UnsupportedOptionError

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


class Variant(str, Enum):
    """What an artifact is: a float precision or a quantization mode (``--precision`` / ``--quantize``).

    THE one name space of both: artifact rows (``ArtifactResult.precision``), the acceptance policy's bars,
    the sweep's precisions and the support matrix's columns are variants; :meth:`parse` is their one parser."""

    FP32 = "fp32"
    FP16 = "fp16"
    W8 = "w8"
    INT8_DYNAMIC = "int8-dynamic"
    PALETTIZE6 = "palettize6"
    INT8 = "int8"
    PALETTIZE4 = "palettize4"

    def __str__(self) -> str:
        return self.value

    @property
    def quantized(self) -> bool:
        return self not in (Variant.FP32, Variant.FP16)

    @property
    def precision(self) -> Precision | None:
        """The float precision this variant is (None for a quantization mode)."""
        return None if self.quantized else Precision(self.value)

    @property
    def quant_mode(self) -> QuantMode | None:
        """The quantization mode this variant is (None for a float precision)."""
        return QuantMode(self.value) if self.quantized else None

    @classmethod
    def of(cls, precision: Precision | str | None, quantize: QuantMode | str | None) -> Variant:
        """The variant of an export asked for with ``precision`` and ``quantize`` (the mode wins)."""
        if quantize is not None:
            return cls(str(quantize))
        if precision is None:
            raise ValueError("a variant needs a precision or a quantization mode")
        return cls(str(precision))

    @classmethod
    def parse(cls, value: str | Enum, source: str = "--precision") -> Variant:
        """The variant named ``value``; anything else is bad input listing the valid names."""
        text = str(value.value if isinstance(value, Enum) else value).strip().lower()
        try:
            return cls(text)
        except ValueError:
            raise UnsupportedOptionError(
                f"{source} {str(value)!r} is not a known precision; use one of: {', '.join(v.value for v in cls)}"
            ) from None


class EtBackend(str, Enum):
    """The ExecuTorch delegate a ``.pte`` is lowered to (``--et-backend``)."""

    XNNPACK = "xnnpack"  # XNNPACK delegate (CPU; Android, iOS, Linux, macOS)
    PORTABLE = "portable"  # no delegate: ExecuTorch's portable reference kernels
    COREML = "coreml"  # Core ML delegate: lowers on Linux, runs on macOS / iOS

    def __str__(self) -> str:
        return self.value


def safe_stem(name: str) -> str:
    """A file-name-safe stem for model names like ``timm:foo`` or ``path/to/x.py:factory`` (no folder part)."""
    stem = name.rsplit("/", 1)[-1]
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


CALIB_METHODS = ("minmax", "percentile", "entropy", "reconstruct")
ACTIVATION_DTYPES = ("int8", "uint8")


@dataclass(frozen=True)
class QuantSettings:
    """The per-mode settings a user passes in ``ExportOptions.quant`` (all optional).

    ``calib_method``: ONNX static calibration (minmax | percentile | entropy); ``reconstruct`` (every int8
    target): block reconstruction of the weight rounding before quantizing (``quantize/reconstruct.py``).
    ``reconstruct_iters``: optimisation steps per block of ``reconstruct`` (default 200).
    ``activation_dtype``: ONNX activations int8 (symmetric-range friendly) or uint8.
    ``int8_io``: TFLite int8 input/output tensors (default False: float in, float out).
    ``exclude``: name globs of layers kept in float (ONNX node names, e.g. ``/stages.3/*``).
    ``target_sqnr``: ONNX only: keep the worst layers in float until the output SQNR (dB) reaches this.
    ``analyze``: ONNX only: per-layer sensitivity (quantized tensor vs its float twin).
    ``percentile``: the percentile of the percentile method (default 99.999).
    ``max_float_layers``: cap of the ``target_sqnr`` search (default 12).
    ``bias_correction``: static int8 (every target): subtract the expected output shift of each conv / linear
    weight's int8 rounding from its bias before quantizing (``quantize/bias_correction.py``; default on,
    ``--no-bias-correction``); skipped with ``calib_method="reconstruct"``, which learns the rounding.
    """

    calib_method: str = "minmax"
    activation_dtype: str = "uint8"
    int8_io: bool = False
    exclude: tuple[str, ...] = ()
    target_sqnr: float | None = None
    analyze: bool = False
    percentile: float = 99.999
    max_float_layers: int = 12
    reconstruct_iters: int = 200
    bias_correction: bool = True
    explicit: tuple[str, ...] = field(default=(), compare=False)  # the names a caller's mapping gave, in order

    @classmethod
    def from_options(cls, quant: QuantSettings | Mapping[str, Any] | None) -> QuantSettings:
        """Parse the settings a caller gave as a mapping (the CLI's, an API user's); checked once, here."""
        if isinstance(quant, QuantSettings):
            return quant
        quant = dict(quant or {})
        known = set(cls.__dataclass_fields__) - {"explicit"}
        unknown = sorted(set(quant) - known)
        if unknown:
            raise QuantizationError(
                f"unknown quantization setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        exclude = quant.get("exclude") or ()
        if isinstance(exclude, str):
            exclude = (exclude,)
        s = cls(
            calib_method=str(quant.get("calib_method", "minmax")),
            activation_dtype=str(quant.get("activation_dtype", "uint8")),
            int8_io=bool(quant.get("int8_io", False)),
            exclude=tuple(exclude),
            target_sqnr=None if quant.get("target_sqnr") is None else float(quant["target_sqnr"]),
            analyze=bool(quant.get("analyze", False)),
            percentile=float(quant.get("percentile", 99.999)),
            max_float_layers=int(quant.get("max_float_layers", 12)),
            reconstruct_iters=int(quant.get("reconstruct_iters", 200)),
            bias_correction=bool(quant.get("bias_correction", True)),
            explicit=tuple(quant),
        )
        return s

    def __post_init__(self) -> None:
        self.check()

    def given(self) -> list[str]:
        """The settings the user asked for: the names a parsed mapping gave, else those off their defaults."""
        if self.explicit:
            return list(self.explicit)
        default = QuantSettings()
        fields = [name for name in self.__dataclass_fields__ if name != "explicit"]
        return [name for name in fields if getattr(self, name) != getattr(default, name)]

    def check(self) -> None:
        if self.calib_method not in CALIB_METHODS:
            raise QuantizationError(
                f"calibration method {self.calib_method!r} is not one of: {', '.join(CALIB_METHODS)}"
            )
        if self.activation_dtype not in ACTIVATION_DTYPES:
            raise QuantizationError(
                f"activation dtype {self.activation_dtype!r} is not one of: {', '.join(ACTIVATION_DTYPES)}"
            )
        if not 90.0 <= self.percentile < 100.0:
            raise QuantizationError(f"percentile {self.percentile} must be in [90, 100)")
        if self.max_float_layers < 1:
            raise QuantizationError("max_float_layers must be at least 1")
        if self.reconstruct_iters < 1:
            raise QuantizationError(f"reconstruct_iters must be at least 1 (got {self.reconstruct_iters})")


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
    quant: QuantSettings = field(default_factory=QuantSettings)  # per-mode settings (a mapping is parsed once)

    def __post_init__(self) -> None:
        if not isinstance(self.quant, QuantSettings):  # e.g. {"calib_method": "entropy"}: parsed once, here
            self.quant = QuantSettings.from_options(self.quant)

    @property
    def layout(self) -> Layout:
        return Layout.NHWC if self.nhwc else Layout.NCHW

    @classmethod
    def for_variant(cls, variant: Variant, **kwargs: Any) -> ExportOptions:
        """Options asking for ``variant`` (a precision, or a quantization mode)."""
        return cls(precision=variant.precision, quantize=variant.quant_mode, **kwargs)

    def artifact_variant(self) -> Variant:
        """The variant this export makes (the quantization mode, else the precision; the precision must be
        resolved: ``None`` means "the target's default")."""
        return Variant.of(self.precision, self.quantize)

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
