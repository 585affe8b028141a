"""Float input / output for a full-integer TFLite model: QUANTIZE in front, DEQUANTIZE behind.

litert-torch's PT2E conversion gives int8 input and output tensors. This rewrites the flatbuffer so that
the model takes and returns float32 (what TFLite's ``inference_input_type=float32`` produces): the
int8 tensors stay inside, fed by a QUANTIZE op and read by a DEQUANTIZE op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._lazy import require

_TYPE_NAMES = {0: "float32", 9: "int8", 3: "uint8", 2: "int32", 7: "int16"}


def _opcode_index(model, schema, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = builtin
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_twin(model, schema, sub, index: int, suffix: str) -> int:
    src = sub.tensors[index]
    t = schema.TensorT()
    t.shape = np.array(src.shape, dtype=np.int32)
    t.type = schema.TensorType.FLOAT32
    t.name = (src.name.decode() if isinstance(src.name, bytes) else src.name) + suffix
    buf = schema.BufferT()
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1
    sub.tensors.append(t)
    return len(sub.tensors) - 1


def _op(schema, opcode: int, inp: int, out: int):
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.array([inp], dtype=np.int32)
    op.outputs = np.array([out], dtype=np.int32)
    return op


def float_io(path: Path) -> bool:
    """Rewrite ``path`` in place; returns False when its input and output were float already."""
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    flatbuffers = require("flatbuffers", "tflite")
    buf = Path(path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sub = model.subgraphs[0]
    integer = (schema.TensorType.INT8, schema.TensorType.UINT8)
    changed = False
    remap: dict[int, int] = {}
    for pos, idx in enumerate(list(sub.inputs)):
        if sub.tensors[idx].type in integer:
            new = _float_twin(model, schema, sub, idx, "_float")
            sub.operators.insert(
                0, _op(schema, _opcode_index(model, schema, schema.BuiltinOperator.QUANTIZE), new, idx)
            )
            sub.inputs[pos] = new
            remap[idx] = new
            changed = True
    for pos, idx in enumerate(list(sub.outputs)):
        if sub.tensors[idx].type in integer:
            new = _float_twin(model, schema, sub, idx, "_float")
            sub.operators.append(_op(schema, _opcode_index(model, schema, schema.BuiltinOperator.DEQUANTIZE), idx, new))
            sub.outputs[pos] = new
            remap[idx] = new
            changed = True
    if not changed:
        return False
    for sig in model.signatureDefs or []:
        for tmap in list(sig.inputs or []) + list(sig.outputs or []):
            tmap.tensorIndex = remap.get(tmap.tensorIndex, tmap.tensorIndex)
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(path).write_bytes(bytes(builder.Output()))
    return True


def io_dtypes(path: Path) -> dict[str, str]:
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    sub = model.subgraphs[0]
    return {
        "input": _TYPE_NAMES.get(sub.tensors[sub.inputs[0]].type, "?"),
        "output": _TYPE_NAMES.get(sub.tensors[sub.outputs[0]].type, "?"),
    }
