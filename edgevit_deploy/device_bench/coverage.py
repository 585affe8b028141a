"""Offline delegate-coverage predictions, before any phone (``edgevit-bench coverage``).

- LiteRT XNNPACK on this host (``.tflite``): the file is loaded in ai_edge_litert with its default XNNPACK
  delegate; the ``DELEGATE`` nodes the interpreter then holds are walked back to the original nodes they
  replaced (each DELEGATE node is one partition; a node it did not take falls back to the built-in kernels).
  The runtime's native output is captured at the file-descriptor level (``converters._quiet``): a
  "Replacing N out of M node(s) ... partitions" line wins over the structural count where the build prints it
  (Android builds do; the Linux wheel logs it only at verbose level), and its delegate lines that name an
  op as unsupported are kept as the reasons.
- ONNX Runtime's mobile usability checker (``onnxruntime.tools.mobile_helpers.usability_checker``, the code
  behind ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``) for the NNAPI and the Core ML EPs
  (NeuralNetwork and MLProgram): supported nodes, partitions, the op types that fall back and the checker's
  reasons (unsupported op, dynamic input shape, rank), on the model after ORT's basic optimisations (as the
  tool does).

Everything here is a PREDICTION (``source: "predicted"``): the device's runtime version and driver decide.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .profiles import CoverageSource, coverage, coverage_label

log = logging.getLogger(__name__)

XNNPACK = "TfLiteXNNPackDelegate"
_REPLACING = re.compile(
    r"Replacing (?P<n>\d+) out of (?P<total>\d+) node\(s\) with delegate \((?P<name>[^()\n]{0,120})\) node"
    r"(?:, yielding (?P<parts>\d+) partitions?)?"
)
_REASON_MARKERS = ("not supported", "unsupported", "failed to delegate", "cannot", "fallback")


@dataclass
class CoveragePrediction:
    """One tool's prediction (or reading) of how much of a graph a delegate / EP takes."""

    tool: str  # what produced it, e.g. "LiteRT 2.x XNNPACK (host)"
    delegate: str  # the delegate / EP name
    delegated: int = 0
    total: int = 0
    partitions: int = 0
    source: str = CoverageSource.PREDICTED.value
    fallback_ops: dict[str, int] = field(default_factory=dict)  # op type -> nodes left to another backend
    reasons: list[str] = field(default_factory=list)  # why, where the tool says
    error: str | None = None  # the tool could not run on this artifact (then the counts mean nothing)

    def to_dict(self) -> dict[str, Any]:
        """The ``delegate_coverage`` shape (device_bench.profiles)."""
        return coverage(self.delegate, self.delegated, self.total, self.partitions, self.source, self.fallback_ops)

    def as_json(self) -> dict[str, Any]:
        out = {"tool": self.tool, **self.to_dict(), "label": self.label, "reasons": list(self.reasons)}
        if self.error:
            out["error"] = self.error
        return out

    @property
    def label(self) -> str:
        return f"not predicted ({self.error})" if self.error else coverage_label(self.to_dict())


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(record.getMessage())


def _native_text(body: Any) -> tuple[Any, str]:
    """Run ``body()`` with fds 1 and 2 captured (``native_output_to_log``); its result and what it printed."""
    from ..converters._quiet import log as backend_log
    from ..converters._quiet import native_output_to_log

    handler = _Capture()
    level, propagate = backend_log.level, backend_log.propagate
    backend_log.addHandler(handler)
    backend_log.setLevel(logging.DEBUG)
    backend_log.propagate = False  # captured here, not printed by the CLI's handlers
    try:
        with native_output_to_log():
            result = body()
    finally:
        backend_log.removeHandler(handler)
        backend_log.setLevel(level)
        backend_log.propagate = propagate
    text = "\n".join(handler.text)
    if text:
        log.debug("%s", text)
    return result, text


def _delegated_nodes(ops: list[dict[str, Any]]) -> tuple[set[int], int]:
    """The original nodes the DELEGATE nodes replaced (walked back from each DELEGATE's outputs to its inputs),
    and the number of DELEGATE nodes (partitions)."""
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): int(o["index"]) for o in originals for t in o["outputs"]}
    by_index = {int(o["index"]): o for o in originals}
    taken: set[int] = set()
    partitions = 0
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        partitions += 1
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            node = producer.get(todo.pop())
            if node is None or node in taken:
                continue
            taken.add(node)
            todo.extend(int(t) for t in by_index[node]["inputs"] if int(t) not in stop and int(t) >= 0)
    return taken, partitions


def xnnpack_coverage(path: str | Path, threads: int = 1, source: str = "predicted") -> CoveragePrediction:
    """What LiteRT's XNNPACK delegate takes of ``path`` on this host (see the module docstring)."""
    from .._lazy import require

    def load() -> Any:
        interp = require("ai_edge_litert.interpreter", "tflite").Interpreter(
            model_path=str(path), num_threads=max(1, threads)
        )
        interp.allocate_tensors()
        return interp

    interp, native = _native_text(load)
    ops = interp._get_ops_details()
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    taken, partitions = _delegated_nodes(ops)
    fallback = Counter(str(o["op_name"]) for o in originals if int(o["index"]) not in taken)
    try:
        from ai_edge_litert import __version__ as version
    except ImportError:
        version = "?"
    pred = CoveragePrediction(
        tool=f"LiteRT {version} XNNPACK delegate (this host)",
        delegate=XNNPACK,
        delegated=len(taken),
        total=len(originals),
        partitions=partitions,
        source=CoverageSource(source).value,
        fallback_ops=dict(fallback),
    )
    line = None
    for m in _REPLACING.finditer(native):
        if "xnnpack" in m.group("name").lower():
            line = m
    if line is not None:  # the runtime's own count wins where the build prints it
        pred.delegated, pred.total = int(line.group("n")), int(line.group("total"))
        pred.partitions = int(line.group("parts") or pred.partitions)
    pred.reasons = [ln.strip()[:300] for ln in native.splitlines() if any(k in ln.lower() for k in _REASON_MARKERS)][
        :20
    ]
    if fallback and not pred.reasons:
        pred.reasons = [f"{op}: not taken by XNNPACK here (runs on the built-in kernels)" for op in sorted(fallback)]
    return pred


#: ORT's usability checker: (EP name shown, checker config file or "nnapi")
ORT_EPS: tuple[tuple[str, str], ...] = (
    ("NNAPI", "nnapi"),
    ("CoreML (NeuralNetwork)", "coreml_supported_neuralnetwork_ops.md"),
    ("CoreML (MLProgram)", "coreml_supported_mlprogram_ops.md"),
)


def ort_mobile_coverage(path: str | Path) -> list[CoveragePrediction]:
    """ONNX Runtime's mobile usability checker for NNAPI and the Core ML EP (see the module docstring)."""
    from .._lazy import require

    require("onnxruntime", "onnx")
    import onnxruntime
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    out: list[CoveragePrediction] = []
    with tempfile.TemporaryDirectory(prefix="edgevit-coverage-") as tmp:
        optimized = Path(tmp) / "model.onnx"

        def prepare() -> Any:
            optimize_model(Path(path), optimized, use_external_initializers=True)
            return ModelProtoWithShapeInfo(optimized).model_with_shape_info

        model, _ = _native_text(prepare)
        nodes = list(model.graph.node)
        for shown, config in ORT_EPS:
            name = f"ORT mobile usability checker {onnxruntime.__version__}: {shown} EP"
            try:
                info = (
                    uc.check_nnapi_partitions(model, require_fixed_input_sizes=True)
                    if config == "nnapi"
                    else uc.check_coreml_partitions(model, require_fixed_input_sizes=True, config_filename=config)
                )
            except Exception as exc:  # the checker's own failure is its row's error, not the command's
                out.append(CoveragePrediction(tool=name, delegate=shown, error=f"{type(exc).__name__}: {exc}"))
                continue
            checker = info.supported_ops_checker
            fallback = Counter(n.op_type for n in nodes if not checker.is_op_supported(n))
            reasons = [f"{op}: op not supported by the {shown} EP" for op in sorted(info.unsupported_ops)]
            if info.nodes_unsupported_due_to_dynamic_input:
                reasons.append(f"{info.nodes_unsupported_due_to_dynamic_input} node(s) have dynamic input shapes")
            if info.num_unsupported_nodes_due_to_rank:
                reasons.append(
                    f"{info.num_unsupported_nodes_due_to_rank} node(s) exceed the EP's tensor rank "
                    f"({', '.join(sorted(info.ops_with_unsupported_rank))})"
                )
            reasons += [f"caveat {c.strip()}" for c in checker.get_caveats()][:10]
            out.append(
                CoveragePrediction(
                    tool=name,
                    delegate=shown,
                    delegated=int(info.num_supported_nodes),
                    total=int(info.num_nodes),
                    partitions=int(info.num_partitions),
                    fallback_ops=dict(fallback),
                    reasons=reasons,
                )
            )
    return out


def predict(path: str | Path) -> list[CoveragePrediction]:
    """Every prediction that applies to the artifact's format (.tflite: XNNPACK; .onnx: NNAPI and Core ML EPs)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return [xnnpack_coverage(path)]
    if suffix == ".onnx":
        return ort_mobile_coverage(path)
    raise ValueError(f"no coverage prediction for {path.name}: give a .tflite or .onnx artifact (or a model name)")


def matrix_xnnpack_cell(path: str | Path) -> str:
    """The support matrix's ``coverage_xnnpack`` value of a tflite artifact: ``full (M/M)``, ``partial (N/M, K
    partitions)`` or why it could not be predicted; never raises."""
    try:
        return xnnpack_coverage(path).label.replace(", predicted", "")
    except Exception as exc:
        return f"not predicted ({type(exc).__name__})"


class CoverageInputError(ValueError):
    """``coverage`` got neither a .tflite / .onnx file nor a known model name (bad input)."""


#: the formats a prediction exists for, and the target that exports them
PREDICTABLE = {".tflite": "tflite", ".onnx": "onnx"}


def predict_for(
    what: str, targets: tuple[str, ...] = ("tflite", "onnx"), img_size: int | None = None, checkpoint: str | None = None
) -> dict[str, list[CoveragePrediction]]:
    """Predictions for an artifact path, or for a model name exported on demand (fp32, into a temporary folder
    removed afterwards): artifact file name -> its predictions. Bad input raises before anything is exported."""
    path = Path(what)
    if path.suffix.lower() in PREDICTABLE or path.exists():
        if not path.is_file():
            raise CoverageInputError(f"{what}: no such file; give a .tflite or .onnx artifact, or a model name")
        if path.suffix.lower() not in PREDICTABLE:
            raise CoverageInputError(f"{path.name}: no coverage prediction for this format; give .tflite or .onnx")
        return {path.name: predict(path)}
    from ..models import get_model_config  # an unknown name fails here (UnknownModelError: bad input)
    from .artifacts import ArtifactCache
    from .types import BenchJob

    size = img_size or get_model_config(what).img_size
    out: dict[str, list[CoveragePrediction]] = {}
    with tempfile.TemporaryDirectory(prefix="edgevit-coverage-") as tmp:
        cache = ArtifactCache(tmp, checkpoint=checkpoint)
        for target in targets:
            artifact = cache.ensure(BenchJob(what, target, "fp32", img_size=size))
            out[f"{what} ({target}, fp32, {size}px)"] = predict(artifact.path)
    return out
