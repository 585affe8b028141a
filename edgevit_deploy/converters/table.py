"""The one table of targets. It drives CLI choices, option validation, verification, quantization, the host
bench and the support matrix.

Add a target by adding a row here (or :func:`register_target` at run time) and its modules: a ``Converter``
class, a host runtime, a quantizer module; nothing else dispatches on target names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..errors import UnsupportedOptionError
from .base import Converter, EtBackend, ExportOptions, Precision, QuantMode, Target, Variant, safe_stem

if TYPE_CHECKING:
    from ..quantize.base import Quantizer


@dataclass(frozen=True)
class TargetSpec:
    target: Target | str  # a Target of this package, or the name of a target registered at run time
    suffix: str  # file suffix of the artifact
    runtime: str  # the host runtime that executes it (human-readable)
    extra: str  # pip extra that installs converter and runtime
    converter: str  # "module:Class" implementing Converter
    host_runtime: str  # "module:Class" implementing verify.runtimes.HostRuntime
    precisions: tuple[Precision, ...]
    quant_modes: tuple[QuantMode, ...]
    quantizer: str  # "module" implementing quantize.base.Quantizer (a quantize(...) function) for this target
    formulation: str  # export-friendly rewrites applied before conversion
    supports_nhwc: bool
    supports_image_input: bool
    supports_dynamic_batch: bool
    verified_where: str  # README: what is verified where
    opsets: tuple[int, int] | None = None  # --opset range the converter accepts (ONNX); None: no opset option
    app_runtime: str = ""  # runtime in the device job protocol (device_bench.jobs); "" = no app runner
    backends: tuple[EtBackend, ...] = ()  # delegates a user may pick (--et-backend), default first
    per_layer_quant: bool = False  # its quantizer does per-layer analysis / float fallback (--analyze, --exclude...)
    executors: tuple[str, ...] = ()  # executors its host runtime offers (--coreml-executor); (): just one
    bench_executor: str = ""  # the executor the host bench times ("": the runtime's own); not for parity checks
    isolated_runs: bool = False  # checks run its host runtime in a child process (a native crash = a failure)

    def load_converter(self) -> Converter:
        return cast(Converter, _load(self.converter)())

    def load_host_runtime(self) -> Any:
        return _load(self.host_runtime)()

    def load_quantizer(self) -> Quantizer:
        return cast("Quantizer", importlib.import_module(self.quantizer))

    @property
    def default_precision(self) -> Precision:
        return self.precisions[0]

    @property
    def variants(self) -> tuple[Variant, ...]:
        """Every variant this target makes: its precisions, then its quantization modes."""
        return tuple(Variant.of(p, None) for p in self.precisions) + tuple(
            Variant.of(None, q) for q in self.quant_modes
        )

    def runtime_options(self, executor: str) -> dict[str, str]:
        """Load options of the host runtime for a parity check with ``executor`` (``--coreml-executor``): only a
        runtime with several executors takes one."""
        return {"executor": executor} if self.executors else {}

    def bench_options(self) -> dict[str, str]:
        """Load options of the host runtime when the host bench times it."""
        return {"executor": self.bench_executor} if self.bench_executor else {}

    def artifact_name(self, model: str, options: ExportOptions) -> str:
        """THE artifact file name (export, quantization and its float twin): a file-name-safe stem of the model
        name (``timm:foo``, ``path/to/m.py:factory`` never leave the output folder), the variant tag, the suffix."""
        return f"{safe_stem(model)}-{options.variant}{self.suffix}"

    def validate(self, options: ExportOptions) -> None:
        """Raise one UnsupportedOptionError listing every option this target lacks."""
        problems: list[str] = []
        if options.quantize is None and options.precision is not None and options.precision not in self.precisions:
            problems.append(f"precision {options.precision} (has: {', '.join(map(str, self.precisions))})")
        if options.quantize is not None and options.quantize not in self.quant_modes:
            has = ", ".join(map(str, self.quant_modes)) or "none"
            problems.append(f"--quantize {options.quantize} (has: {has})")
        if options.nhwc and not self.supports_nhwc:
            problems.append("--nhwc (NHWC input is a TFLite option)")
        if options.image_input and not self.supports_image_input:
            problems.append("--image-input (an ImageType input is a Core ML option)")
        if options.quantize is not None and options.nhwc and self.supports_nhwc:
            problems.append("--nhwc with --quantize (not yet: export the quantized model in NCHW)")
        if options.quantize is not None and options.image_input and self.supports_image_input:
            problems.append("--image-input with --quantize (not yet: quantize the tensor-input model)")
        if options.dynamic_batch and not self.supports_dynamic_batch:
            problems.append("--dynamic-batch")
        if self.opsets is not None and not self.opsets[0] <= options.onnx_opset <= self.opsets[1]:
            problems.append(f"--opset {options.onnx_opset} (has: {self.opsets[0]} to {self.opsets[1]})")
        if options.et_backend is not None and options.et_backend not in self.backends:
            problems.append(
                f"--et-backend {options.et_backend} (the delegate choice is an ExecuTorch option)"
                if not self.backends
                else f"--et-backend {options.et_backend} (has: {', '.join(map(str, self.backends))})"
            )
        elif self.backends:
            problems.extend(self._backend_problems(options))
        if problems:
            raise UnsupportedOptionError(f"target {self.target} does not support: " + "; ".join(problems))

    def _backend_problems(self, options: ExportOptions) -> list[str]:
        """Precisions and quantization a delegate cannot take (ExecuTorch: int8 is XNNPACK's PT2E flow)."""
        backend = options.et_backend or self.backends[0]
        if options.quantize is not None and backend is not EtBackend.XNNPACK:
            return [f"--quantize {options.quantize} with --et-backend {backend} (int8 needs --et-backend xnnpack)"]
        return []


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


_P = Precision
_Q = QuantMode
#: who runs a Core ML artifact for a parity check (--coreml-executor): native on macOS, else the reference ML
#: Program executor; native; the reference executor; both (macOS: native numbers, checked against the reference)
COREML_EXECUTORS = ("auto", "native", "reference", "both")
# torch.onnx's supported opsets here: 17 (the toolkit's floor) to torch 2.14's ONNX_MAX_OPSET (a test compares)
ONNX_OPSETS = (17, 23)
ONNX_EXPORTERS = ("torchscript", "dynamo")  # ExportOptions.onnx_exporter: torch.onnx.export(dynamo=False|True)

TARGETS: dict[str, TargetSpec] = {  # keyed by name (a Target is its name: a str Enum)
    Target.ONNX: TargetSpec(
        target=Target.ONNX,
        suffix=".onnx",
        runtime="onnxruntime (CPU EP)",
        extra="onnx",
        converter="edgevit_deploy.converters.onnx:OnnxConverter",
        host_runtime="edgevit_deploy.verify.runtimes:OnnxRuntimeHost",
        precisions=(_P.FP32,),
        quant_modes=(_Q.INT8, _Q.INT8_DYNAMIC),
        quantizer="edgevit_deploy.quantize.onnx",
        formulation="onnx",
        supports_nhwc=False,
        supports_image_input=False,
        supports_dynamic_batch=True,
        verified_where="executed in onnxruntime on every OS",
        opsets=ONNX_OPSETS,
        app_runtime="onnxruntime",
        per_layer_quant=True,
    ),
    Target.TFLITE: TargetSpec(
        target=Target.TFLITE,
        suffix=".tflite",
        runtime="LiteRT interpreter (XNNPACK)",
        extra="tflite",
        converter="edgevit_deploy.converters.tflite:TfliteConverter",
        host_runtime="edgevit_deploy.verify.runtimes:LiteRtHost",
        precisions=(_P.FP32, _P.FP16),
        quant_modes=(_Q.INT8, _Q.INT8_DYNAMIC),
        quantizer="edgevit_deploy.quantize.tflite",
        formulation="xnnpack",
        supports_nhwc=True,
        supports_image_input=False,
        supports_dynamic_batch=False,
        verified_where="executed in the LiteRT interpreter on Linux and macOS",
        app_runtime="litert",
    ),
    Target.COREML: TargetSpec(
        target=Target.COREML,
        suffix=".mlpackage",
        runtime="Core ML (ML Program)",
        extra="coreml",
        converter="edgevit_deploy.converters.coreml:CoremlConverter",
        host_runtime="edgevit_deploy.verify.runtimes:CoremlHost",
        precisions=(_P.FP16, _P.FP32),
        quant_modes=(_Q.INT8, _Q.W8, _Q.PALETTIZE4, _Q.PALETTIZE6),
        quantizer="edgevit_deploy.quantize.coreml",
        formulation="coreml",
        supports_nhwc=False,
        supports_image_input=True,
        supports_dynamic_batch=False,
        verified_where="MLModel.predict on macOS; elsewhere the reference ML Program executor, else executed: false",
        app_runtime="coreml",  # the iOS app (next); no Android runner measures it (RUNNERS has no coreml rows)
        executors=COREML_EXECUTORS,
        bench_executor="native",  # timed natively only: the reference executor is not for timing
    ),
    Target.EXECUTORCH: TargetSpec(
        target=Target.EXECUTORCH,
        suffix=".pte",
        runtime="ExecuTorch (XNNPACK delegate)",
        extra="executorch",
        converter="edgevit_deploy.converters.executorch:ExecutorchConverter",
        host_runtime="edgevit_deploy.verify.runtimes:ExecuTorchHost",
        # fp16: XNNPACK's fp16 kernels (finite and within the fp16 bars since the formulation keeps LayerNorm and
        # the attention in the delegate; docs/executorch.md)
        precisions=(_P.FP32, _P.FP16),
        quant_modes=(_Q.INT8,),
        quantizer="edgevit_deploy.quantize.executorch",
        formulation="executorch",
        supports_nhwc=False,
        supports_image_input=False,
        supports_dynamic_batch=False,
        verified_where="executed in the ExecuTorch Python runtime on every OS (XNNPACK, portable); "
        "Core ML-delegated programs on macOS, elsewhere executed: false",
        backends=(EtBackend.XNNPACK, EtBackend.PORTABLE, EtBackend.COREML),
        app_runtime="executorch",  # the Android app's ExecuTorch runner (org.pytorch.executorch Module)
        isolated_runs=True,  # XNNPACK-in-ExecuTorch 1.5.1 segfaults on some programs (VCMamba's shared bias)
    ),
}


def backend_names() -> list[str]:
    """Every ``--et-backend`` choice of the table."""
    return list(dict.fromkeys(str(b) for spec in TARGETS.values() for b in spec.backends))


def target_names() -> list[str]:
    return [str(t) for t in TARGETS]


def get_spec(target: Target | str) -> TargetSpec:
    spec = TARGETS.get(str(target))
    if spec is None:
        raise UnsupportedOptionError(f"unknown target {str(target)!r}; choose one of: {', '.join(target_names())}, all")
    return spec


def register_target(spec: TargetSpec) -> None:
    """Add a row to the table at run time (a plugin's target, a test's dummy): from then on it is a choice of
    ``edgevit-export --target``, validated, exported, verified, benchmarked on the host and in the matrix."""
    name = str(spec.target)
    if not name or name == "all" or name in TARGETS:
        raise ValueError(f"target {name!r} is already in the table (or reserved)")
    TARGETS[name] = spec


def unregister_target(target: Target | str) -> TargetSpec:
    """Remove a row added by :func:`register_target` (the package's own rows stay)."""
    name = str(target)
    if name in {t.value for t in Target}:
        raise ValueError(f"target {name!r} is one of the package's own rows")
    return TARGETS.pop(name)
