"""ONNX export: ``torch.onnx.export`` (TorchScript exporter by default, dynamo on request), ``onnx.checker``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .._atomic import atomic_path
from .._lazy import require
from ..errors import ConversionError, first_line
from ._errors import unsupported_op_from
from .base import ArtifactMetadata, ExportOptions

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class OnnxConverter:
    def convert(
        self,
        model: nn.Module,
        example: torch.Tensor,
        out_path: Path,
        options: ExportOptions,
        metadata: ArtifactMetadata,
    ) -> Path:
        onnx = require("onnx", "onnx")
        if options.onnx_opset < 17:
            raise ConversionError("onnx", f"opset {options.onnx_opset} is too old; use 17 or newer")
        dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if options.dynamic_batch else None
        # written under a temporary name, checked, stamped, then renamed: never half a file under out_path
        with atomic_path(out_path) as tmp:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if options.onnx_exporter == "dynamo":
                        require("onnxscript", "onnx")
                        dyn = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if options.dynamic_batch else None
                        prog = torch.onnx.export(
                            model,
                            (example,),
                            dynamo=True,
                            opset_version=max(options.onnx_opset, 18),
                            input_names=[INPUT_NAME],
                            output_names=[OUTPUT_NAME],
                            dynamic_shapes=_dynamo_shapes(model, dyn),
                            verbose=False,
                        )
                        if prog is None:
                            raise ConversionError("onnx", "the dynamo exporter returned no program")
                        prog.save(str(tmp))
                    else:
                        torch.onnx.export(
                            model,
                            (example,),
                            str(tmp),
                            dynamo=False,
                            opset_version=options.onnx_opset,
                            input_names=[INPUT_NAME],
                            output_names=[OUTPUT_NAME],
                            dynamic_axes=dynamic,
                            do_constant_folding=True,
                        )
            except Exception as exc:
                raise ConversionError("onnx", first_line(exc), op=unsupported_op_from(str(exc))) from exc
            proto = onnx.load(str(tmp))
            try:
                onnx.checker.check_model(proto, full_check=True)
            except Exception as exc:
                raise ConversionError("onnx", f"onnx.checker rejected the graph: {exc}") from exc
            _stamp(proto, metadata.as_strings())
            onnx.save(proto, str(tmp))
        return out_path

    def read_metadata(self, path: Path) -> dict[str, str]:
        onnx = require("onnx", "onnx")
        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}


def _dynamo_shapes(model: nn.Module, dyn: dict | None):
    if dyn is None:
        return None
    import inspect

    first = next(iter(inspect.signature(model.forward).parameters))
    return {first: dyn["x"]}


def _stamp(proto, meta: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for k, v in meta.items():
        if k in existing:
            existing[k].value = v
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
    proto.producer_name = "edgevit-deploy"
    proto.producer_version = meta.get("edgevit_deploy.version", "")


def write_metadata(path: Path, meta: dict[str, str], proto=None) -> None:
    """Set ``metadata_props`` (and producer) of an ONNX file, replacing it atomically."""
    onnx = require("onnx", "onnx")
    proto = proto if proto is not None else onnx.load(str(path))
    _stamp(proto, meta)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
