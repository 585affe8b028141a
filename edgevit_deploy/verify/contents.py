"""What an artifact actually holds, read from the file itself (never from its metadata).

Each host runtime's ``inspect(path)`` (``verify/runtimes.py``) calls one reader here. A reader parses the whole
file up front: a missing, empty, truncated or foreign file raises :class:`~edgevit_deploy.errors.ArtifactReadError`
(bad input, exit code 2) naming the file and what was wrong. Otherwise it returns the variants the contents are
consistent with: no quantize ops and float32 weights can only be ``fp32``; a QDQ graph is ``int8``; and so on.
``edgevit-verify`` fails an artifact whose claimed variant (metadata or ``--precision``) is looser than that.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._lazy import require
from ..errors import ArtifactReadError
from .policy import Variant


@dataclass(frozen=True)
class ArtifactContents:
    allowed: frozenset[Variant]  # the variants the file's weights and ops are consistent with
    evidence: str  # what showed it, in words: "no quantize ops, float32 weights"

    @property
    def strictest(self) -> Variant:
        from .policy import STRICTNESS

        return max(self.allowed, key=lambda v: STRICTNESS[v])

    @property
    def loosest(self) -> Variant:
        from .policy import STRICTNESS

        return min(self.allowed, key=lambda v: STRICTNESS[v])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def _need_file(path: Path, what: str) -> None:
    if not path.exists():
        raise ArtifactReadError(f"{path} does not exist; pass the {what} edgevit-export wrote")
    if not path.is_file():
        raise ArtifactReadError(f"{path} is a folder, not a {what} file; pass the file edgevit-export wrote")
    if path.stat().st_size == 0:
        raise ArtifactReadError(f"{path} is empty (0 bytes); re-export it")


# ------------------------------------------------------------------------------------------------ ONNX
_ONNX_DYNAMIC = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}
_ONNX_STATIC = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearMul",
    "QGemm",
    "QAttention",
}


def onnx_contents(path: Path) -> ArtifactContents:
    path = Path(path)
    _need_file(path, ".onnx model")
    onnx = require("onnx", "onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactReadError(
            f"{path} is not a valid ONNX model (protobuf parse error: {_one_line(exc)}); re-export it"
        ) from None
    if not proto.graph.node or not proto.graph.output:
        raise ArtifactReadError(
            f"{path} is not a usable ONNX model (its graph has no nodes or no outputs); re-export it"
        )
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ArtifactReadError(f"{path} is not a valid ONNX model ({_one_line(exc)}); re-export it") from None
    ops = Counter(n.op_type for n in proto.graph.node)
    dtypes = Counter(onnx.TensorProto.DataType.Name(i.data_type) for i in proto.graph.initializer)
    dynamic = sorted(set(ops) & _ONNX_DYNAMIC)
    static = sorted(set(ops) & _ONNX_STATIC)
    if dynamic:
        return ArtifactContents(frozenset({Variant.INT8_DYNAMIC}), f"dynamic quantization ops ({', '.join(dynamic)})")
    if static:
        return ArtifactContents(
            frozenset({Variant.INT8}), f"quantize / dequantize ops ({', '.join(f'{ops[o]} {o}' for o in static)})"
        )
    if dtypes.get("FLOAT16"):
        return ArtifactContents(frozenset({Variant.FP16}), f"no quantize ops, {dtypes['FLOAT16']} float16 weights")
    return ArtifactContents(frozenset({Variant.FP32}), "no quantize ops, float32 weights")


# ---------------------------------------------------------------------------------------------- TFLite
def tflite_contents(path: Path) -> ArtifactContents:
    path = Path(path)
    _need_file(path, ".tflite model")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ArtifactReadError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier); re-export it")
    interp_mod = require("ai_edge_litert.interpreter", "tflite")
    try:
        interp = interp_mod.Interpreter(model_path=str(path), num_threads=1)
        tensors = interp.get_tensor_details()
    except Exception as exc:  # LiteRT verifies the flatbuffer: "The model is not a valid Flatbuffer buffer"
        raise ArtifactReadError(f"{path} is not a valid TFLite model ({_one_line(exc)}); re-export it") from None
    kind = {t["index"]: _np_kind(t["dtype"]) for t in tensors}
    try:
        ops = interp._get_ops_details()  # op outputs are activations; other tensors are weights or inputs
        activations = {int(i) for op in ops for i in op["outputs"]}
    except Exception:  # an interpreter without the op listing: tell int8 weights from activations no more
        activations = None
    int_acts = activations is not None and any(kind.get(i) == "int8" for i in activations)
    int_any = any(k == "int8" for k in kind.values())
    fp16 = sum(1 for k in kind.values() if k == "float16")
    if int_acts:
        return ArtifactContents(frozenset({Variant.INT8}), "int8 activations (full-integer quantization)")
    if int_any:
        if activations is None:
            return ArtifactContents(frozenset({Variant.INT8, Variant.INT8_DYNAMIC}), "int8 tensors")
        return ArtifactContents(frozenset({Variant.INT8_DYNAMIC}), "int8 weights, float activations")
    if fp16:
        return ArtifactContents(frozenset({Variant.FP16}), f"no quantized tensors, {fp16} float16 tensors")
    return ArtifactContents(frozenset({Variant.FP32}), "no quantized or float16 tensors")


def _np_kind(dtype: Any) -> str:
    import numpy as np

    dt = np.dtype(dtype)
    if dt in (np.int8, np.uint8, np.int16) or dt.name == "int4":
        return "int8"
    return dt.name


# --------------------------------------------------------------------------------------------- Core ML
_MIL_LUT = ("constexpr_lut_to_dense",)
_MIL_AFFINE = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")
_MIL_ACT_QUANT = ("quantize", "dequantize")


def coreml_contents(path: Path) -> ArtifactContents:
    path = Path(path)
    if not path.exists():
        raise ArtifactReadError(f"{path} does not exist; pass the .mlpackage folder edgevit-export wrote")
    if path.is_dir() and not (path / "Manifest.json").is_file():
        raise ArtifactReadError(f"{path} is not a Core ML package (no Manifest.json in the folder); re-export it")
    from .mil.errors import MilExecutorError
    from .mil.program import load_package

    try:
        package = load_package(path)
    except MilExecutorError as exc:
        raise ArtifactReadError(_one_line(exc) + "; re-export it") from None
    except Exception as exc:
        raise ArtifactReadError(
            f"{path} is not a readable Core ML ML Program ({_one_line(exc)}); re-export it"
        ) from None
    ops = package.function.operations
    types = Counter(op.op_type for op in ops)
    lut = [op for op in ops if op.op_type.startswith(_MIL_LUT)]
    if lut:
        bits = {_lut_bits(op) for op in lut}
        allowed = (
            {Variant.PALETTIZE4}
            if bits == {4}
            else {Variant.PALETTIZE6}
            if bits == {6}
            else {Variant.PALETTIZE4, Variant.PALETTIZE6}
        )
        return ArtifactContents(
            frozenset(allowed), f"{len(lut)} palettized weights ({sorted(b for b in bits if b)} bit look-up tables)"
        )
    affine = sum(types[t] for t in _MIL_AFFINE)
    act_quant = sum(types[t] for t in _MIL_ACT_QUANT)
    if act_quant:
        return ArtifactContents(frozenset({Variant.INT8}), f"{act_quant} activation quantize / dequantize ops")
    if affine:
        return ArtifactContents(frozenset({Variant.W8}), f"{affine} int8 weights, no activation quantization")
    from .mil.executor import _dtype_name

    fp16 = sum(1 for op in ops for v in op.outputs if _dtype_name(v) == "fp16")
    if fp16:
        return ArtifactContents(frozenset({Variant.FP16}), f"no compressed weights, {fp16} float16 tensors")
    return ArtifactContents(frozenset({Variant.FP32}), "no compressed weights, no float16 tensors")


def _lut_bits(op: Any) -> int | None:
    try:
        shape = tuple(op.inputs["lut"].shape)
    except (KeyError, AttributeError, TypeError):
        return None
    entries = shape[0] if len(shape) == 1 else shape[-2] if len(shape) >= 2 else None
    return {16: 4, 64: 6}.get(int(entries)) if entries is not None else None


def executorch_contents(path: Path) -> ArtifactContents:
    """A ``.pte`` program, parsed whole. Its delegate payloads (XNNPACK's own flatbuffers) are not decoded here, so
    the contents allow fp32 and int8; verify_artifact's weight-size check (:func:`weight_size_mismatch`) is what
    catches a float program that claims int8."""
    _need_file(path, "ExecuTorch .pte")
    ser = require("executorch.exir._serialize._program", "executorch")
    try:
        program = ser.deserialize_pte_binary(path.read_bytes()).program
    except Exception as exc:
        raise ArtifactReadError(f"{path} is not a valid ExecuTorch program ({_one_line(exc)}); re-export it") from None
    if not program.execution_plan:
        raise ArtifactReadError(f"{path} holds no method to run; re-export it")
    return ArtifactContents(
        frozenset({Variant.FP32, Variant.INT8}), "an ExecuTorch program (delegate payloads not decoded)"
    )


def weight_size_mismatch(claimed: Variant, size_bytes: int, num_params: int) -> str | None:
    """A claim of a quantized variant on a file that holds float32-sized weights, used where the contents cannot
    tell float from quantized (a .pte): int8 artifacts measured 0.27-0.30x their float32 twin; at >= 0.6x the
    weights cannot be 8-bit. Models under 1 MB of weights are not judged (graph structure dominates their size)."""
    float_bytes = 4 * num_params
    if claimed.quantized and float_bytes >= 1_000_000 and size_bytes >= 0.6 * float_bytes:
        return (
            f"{claimed} claimed, but the file holds {size_bytes / 1e6:.1f} MB for {num_params:,} parameters "
            f"(float32 weights are {float_bytes / 1e6:.1f} MB; {claimed} artifacts are at most ~0.3x that)"
        )
    return None
