"""ONNX nodes as PyTorch modules, so that onnx speaks the module paths the PT2E targets speak: ``--exclude
conv_stem`` on onnx, the bias correction leaving the excluded layers alone, and the float-fallback search of
:mod:`.fallback` (blocks of the module tree, weighed by their latency cost) on the QDQ graph.

torch.onnx's TorchScript exporter names each node after the module scopes it was traced in:
``/blocks/blocks.0/blocks.0.0/conv_dw/Conv`` is the Conv of ``blocks.0.0.conv_dw`` (a container's child is
named after the container's scope and its index, a named child after its attribute). :func:`node_module`
reads that back and keeps only paths that are modules of the model; nodes it cannot place (another exporter's
names) belong to no module, and the callers fall back to node names.

A layer onnxruntime keeps in float must not keep a bias the correction made for its int8 weights
(:mod:`.bias_correction`): :func:`restore_float_biases` writes the uncorrected bias back into the float node,
and only over an initializer that holds exactly the corrected bias (nothing else is touched).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..verify.metrics import sqnr_db
from .base import match_names
from .bias_correction import uncorrected_biases

log = logging.getLogger(__name__)

NODE_PATTERN_PREFIX = "/"  # an --exclude pattern naming ONNX nodes starts with it; a module path never does


def node_module(node_name: str, modules: set[str] | frozenset[str]) -> str | None:
    """The deepest module of ``modules`` the TorchScript scope name ``node_name`` lies in, or ``None``."""
    parts = node_name.strip("/").split("/")[:-1]  # the last part is the op's own name
    path = previous = ""
    for part in parts:  # a container's child is named after the container's scope: blocks -> blocks.0
        path = path + part[len(previous) :] if previous and part.startswith(previous + ".") else f"{path}.{part}"
        previous = part
    path = path.lstrip(".")
    while path and path not in modules:
        path = path.rsplit(".", 1)[0] if "." in path else ""
    return path or None


def split_patterns(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """(``--exclude`` globs over ONNX node names, globs over module paths)."""
    pats = list(patterns)
    return [p for p in pats if p.startswith(NODE_PATTERN_PREFIX)], [
        p for p in pats if not p.startswith(NODE_PATTERN_PREFIX)
    ]


FUSED_ACTIVATIONS = ("Relu", "Clip")  # folded into the output range of the Conv / Gemm they follow
MATRIX_OPS = ("Conv", "Gemm", "MatMul")


class ModuleNodes:
    """Which ONNX nodes of the graph at ``path`` belong to which module of ``model``. A Relu / Clip that
    is the only reader of a Conv / Gemm / MatMul belongs to that layer's module (timm's ``BatchNormAct2d``
    puts EfficientNet-Lite's ReLU6 in the next module): onnxruntime folds it into the layer's output range,
    and a layer quantized without it has its output quantized on the unclipped range (Lite0's stem alone:
    5.6 dB)."""

    def __init__(self, model: nn.Module, path: Path):
        import onnx

        self.module_names = [n for n, _ in model.named_modules() if n]
        known = frozenset(self.module_names)
        graph = onnx.load(str(path)).graph
        self.nodes = [n.name for n in graph.node]
        self.module_of = {n.name: node_module(n.name, known) for n in graph.node}
        producer = {out: node for node in graph.node for out in node.output}
        readers: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                readers[name] = readers.get(name, 0) + 1
        for node in graph.node:
            layer = producer.get(node.input[0]) if node.op_type in FUSED_ACTIVATIONS and node.input else None
            if layer is not None and layer.op_type in MATRIX_OPS and readers.get(node.input[0]) == 1:
                self.module_of[node.name] = self.module_of[layer.name]

    def nodes_of(self, modules: Iterable[str]) -> list[str]:
        """The nodes inside any of ``modules`` (a module's own nodes and its submodules')."""
        mods = tuple(modules)
        inside = lambda m: m is not None and any(m == u or m.startswith(u + ".") for u in mods)
        return [n for n in self.nodes if inside(self.module_of[n])]

    def covers(self, units: Iterable[str]) -> bool:
        """Every unit owns at least one node (the exporter's names carry the module scopes)."""
        return all(self.nodes_of([u]) for u in units)

    def match(self, patterns: Iterable[str]) -> tuple[list[str], list[str]]:
        """(the outermost modules matching the module-path globs, the globs that matched nothing)."""
        matched, unmatched = match_names(self.module_names, patterns)
        return [m for m in matched if not any(m.startswith(o + ".") for o in matched if o != m)], unmatched


def restore_float_biases(path: Path, float_nodes: Iterable[str], model: nn.Module, mods: ModuleNodes) -> list[str]:
    """In the QDQ model at ``path``, give the float nodes of bias-corrected layers their uncorrected bias
    back (a Conv / Gemm's third input, or the Add of a linear exported as MatMul + Add). Returns the layers
    restored; rewrites ``path`` only when there is one."""
    import onnx
    from onnx import numpy_helper

    originals = uncorrected_biases(model)
    floats = set(float_nodes)
    if not originals or not floats:
        return []
    graph = onnx.load(str(path))
    inits = {i.name: i for i in graph.graph.initializer}
    users: dict[str, int] = {}
    for node in graph.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    restored: list[str] = []
    for node in graph.graph.node:
        layer = mods.module_of.get(node.name)
        if node.name not in floats or layer not in originals or node.op_type not in ("Conv", "Gemm", "Add"):
            continue
        corrected = _bias_of(model, layer)
        candidates = node.input[2:3] if node.op_type in ("Conv", "Gemm") else node.input
        for name in candidates:
            init = inits.get(name)
            if init is None:
                continue
            value = numpy_helper.to_array(init)
            if value.shape != corrected.shape or not np.allclose(value, corrected, rtol=0, atol=1e-6):
                continue
            original = originals[layer]
            new = np.zeros_like(value) if original is None else original.numpy().astype(value.dtype)
            if users.get(name, 0) > 1:  # shared: the float node gets a copy of its own
                init = graph.graph.initializer.add()
                init.name = f"{name}_uncorrected_{len(restored)}"
                node.input[list(node.input).index(name)] = init.name
            init.CopyFrom(numpy_helper.from_array(new, init.name))
            restored.append(layer)
            break
    if restored:
        onnx.save(graph, str(path))
        log.info("onnx int8: %d float layer(s) got their uncorrected bias back", len(restored))
    return restored


def _bias_of(model: nn.Module, layer: str) -> np.ndarray:
    bias = model.get_submodule(layer).bias
    return bias.detach().numpy() if isinstance(bias, torch.Tensor) else np.zeros(0, np.float32)


class OnnxMeasure:
    """:class:`.fallback.Measure` on the QDQ graph: re-quantized without re-calibrating with the nodes of the
    float modules excluded (their biases uncorrected), run by onnxruntime, against ``reference``."""

    def __init__(
        self,
        quantizer: Any,  # onnx.StaticQuantizer
        mods: ModuleNodes,
        base_nodes: list[str],
        model: nn.Module,
        x: np.ndarray,
        reference: np.ndarray | None,  # the float model's outputs on x; None: only quantize() is used
        work: Path,
    ):
        self.sq, self.mods, self.base, self.model = quantizer, mods, list(base_nodes), model
        self.x, self.ref, self.work = x, reference, work
        self.trials = 0

    def float_nodes(self, float_modules: Iterable[str] = (), only: list[str] | None = None) -> list[str]:
        if only is not None:
            kept = set(self.mods.nodes_of(only))
            return [n for n in self.mods.nodes if n not in kept]
        return list(dict.fromkeys(self.base + self.mods.nodes_of(float_modules)))

    def quantize(self, out_path: Path, nodes: list[str]) -> Path:
        self.sq.quantize(out_path, nodes)
        restore_float_biases(out_path, nodes, self.model, self.mods)
        return out_path

    def sqnr(self, float_modules: list[str] = (), only: list[str] | None = None) -> float:  # type: ignore[assignment]
        from .onnx import _run

        if self.ref is None:
            raise ValueError("OnnxMeasure.sqnr needs the float model's outputs (reference)")
        self.trials += 1
        trial = self.quantize(self.work / f"trial_{self.trials}.onnx", self.float_nodes(float_modules, only))
        try:
            return sqnr_db(self.ref, _run(trial, self.x))
        finally:
            trial.unlink(missing_ok=True)
