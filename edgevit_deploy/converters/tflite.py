"""TFLite (LiteRT) export through litert-torch: fp32, fp16 weights (float casting), optional NHWC input."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

from .._atomic import atomic_path
from .._atomic import write_bytes as atomic_write_bytes
from .._lazy import require
from ..errors import ConversionError, first_line
from ._errors import unsupported_op_from
from ._quiet import native_output_to_log, quiet_backends
from .base import ArtifactMetadata, ExportOptions, Precision

log = logging.getLogger(__name__)

METADATA_NAME = "edgevit_deploy"

# ai-edge-quantizer recipe: every weight cast to float16, compute stays float (dequantized at load)
_FP16_WEIGHTS_RECIPE = [
    {
        "regex": ".*",
        "operation": "*",
        "algorithm_key": "float_casting",
        "op_config": {
            "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
            "skip_checks": False,
            "min_weight_elements": 0,
        },
    }
]


class TfliteConverter:
    def convert(
        self,
        model: nn.Module,
        example: torch.Tensor,
        out_path: Path,
        options: ExportOptions,
        metadata: ArtifactMetadata,
    ) -> Path:
        with native_output_to_log():  # TensorFlow's import: absl's banner, oneDNN's notice
            litert_torch = require("litert_torch", "tflite")
        from ._litert_passes import install_layout_rewrites

        install_layout_rewrites()
        module, sample = model, example
        if options.nhwc:
            module = litert_torch.to_channel_last_io(model, args=[0]).eval()  # a new wrapper starts in training mode
            sample = example.permute(0, 2, 3, 1).contiguous()
        # converted, cast and stamped under a temporary name, then renamed: never half a file under out_path
        with atomic_path(out_path) as tmp:
            try:
                with quiet_backends():
                    edge = litert_torch.convert(module, (sample,))
                    edge.export(str(tmp))
            except Exception as exc:
                raise ConversionError("tflite", first_line(exc), op=unsupported_op_from(str(exc))) from exc
            if options.precision == Precision.FP16:
                cast_weights_to_fp16(tmp)
            write_metadata(tmp, metadata.as_strings())
        return out_path

    def read_metadata(self, path: Path) -> dict[str, str]:
        return read_metadata(path)


def cast_weights_to_fp16(path: Path) -> None:
    """Rewrite ``path`` with float16 weights (dequantized to float32 at load), via ai-edge-quantizer."""
    aeq = require("ai_edge_quantizer", "tflite")
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "fp16.json"
        recipe.write_text(json.dumps(_FP16_WEIGHTS_RECIPE))
        qt = aeq.Quantizer(str(path))
        qt.load_quantization_recipe(str(recipe))
        try:
            with quiet_backends(), atomic_path(path) as out:
                result = qt.quantize()
                result.export_model(str(out), overwrite=True)
        except Exception as exc:
            raise ConversionError("tflite", f"fp16 weight casting failed: {first_line(exc)}") from exc


def _schema():
    return require("ai_edge_litert.schema_py_generated", "tflite")


def write_metadata(path: Path, meta: dict[str, str]) -> None:
    """Store ``meta`` as a JSON buffer in the model's metadata table under ``edgevit_deploy``."""
    schema = _schema()
    flatbuffers = require("flatbuffers", "tflite")
    buf = Path(path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    for b in model.buffers or []:
        # large models keep weights after the flatbuffer (offset/size): fold them back in before re-packing
        if getattr(b, "offset", 0) and b.offset > 1:
            b.data = list(buf[b.offset : b.offset + b.size])
            b.offset, b.size = 0, 0
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(meta, sort_keys=True).encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    atomic_write_bytes(path, bytes(builder.Output()))


def read_metadata(path: Path) -> dict[str, str]:
    schema = _schema()
    model = schema.Model.GetRootAs(bytearray(Path(path).read_bytes()), 0)
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        if md.Name() in (METADATA_NAME.encode(), METADATA_NAME):
            data = model.Buffers(md.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode())
    return {}
