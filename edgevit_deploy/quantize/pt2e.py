"""PT2E calibration shared by the TFLite and Core ML W8A8 routes (torchao's prepare / convert)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, TypeGuard

import numpy as np
import torch
from torch import nn

from .._lazy import require

log = logging.getLogger(__name__)


def calibrate_pt2e(
    model: nn.Module, example: torch.Tensor, quantizer, data: np.ndarray, fold_quantize: bool = True
) -> torch.fx.GraphModule:
    """Export ``model``, insert the quantizer's observers, run ``data`` one image at a time, convert."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "quant")
    graph = torch.export.export(model.eval(), (example,)).module()
    prepared = pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i in range(len(data)):
            prepared(torch.from_numpy(np.ascontiguousarray(data[i : i + 1], dtype=np.float32)))
    log.info("PT2E: calibrated on %d images", len(data))
    return pt2e.convert_pt2e(prepared, fold_quantize=fold_quantize)


def activation_eps(quantizer: Any) -> float | None:
    """The ``eps`` a PT2E quantizer's activation observers floor their scale at, read from its global
    config (the XNNPACK and litert-torch quantizers both use 2**-12), or ``None`` when it sets none."""
    config = getattr(quantizer, "global_config", None)
    spec = getattr(config, "output_activation", None)
    ctr = getattr(spec, "observer_or_fake_quant_ctr", None)
    keywords = getattr(getattr(ctr, "p", None), "keywords", None) or getattr(ctr, "keywords", None) or {}
    eps = keywords.get("eps")
    return float(eps) if eps is not None else None


def _aten_ops(*names: str) -> set:
    return {getattr(getattr(torch.ops.aten, op), overload) for op, overload in (n.split(".") for n in names)}


def _is(node: object, ops: set) -> TypeGuard[torch.fx.Node]:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in ops


def quantize_after_clamp(model: torch.fx.GraphModule, output_qspec) -> int:
    """conv -> ReLU6: quantize the clipped output, not the conv's.

    litert-torch's quantizer makes hardtanh share its input's observer, so a ReLU6 output is quantized on
    the conv output's unclipped range (EfficientNet-Lite lost ~10 dB of SQNR to it). Here the conv keeps
    its input / weight / bias annotation, its output is left to the clamp, and the clamp gets its own
    observer: the dq -> conv -> relu6 -> q pattern that TFLite fuses into one int8 conv with RELU6.
    Returns the number of rewritten pairs.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    clamps = _aten_ops("hardtanh.default", "hardtanh_.default", "clamp.default")
    convs = _aten_ops("conv1d.default", "conv2d.default", "convolution.default", "linear.default")
    changed = 0
    for node in model.graph.nodes:
        src = node.args[0] if _is(node, clamps) else None
        if not _is(src, convs) or len(src.users) != 1:
            continue
        conv_ann = src.meta.get("quantization_annotation")
        if conv_ann is None or conv_ann.output_qspec is None:
            continue
        conv_ann.output_qspec = None
        node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=output_qspec, _annotated=True)
        changed += 1
    return changed


def _module_paths(node: torch.fx.Node) -> list[str]:
    """The module paths a node of an exported graph comes from (``nn_module_stack`` fully qualified names)."""
    return [str(v[0]) for v in (node.meta.get("nn_module_stack") or {}).values()]


def _inside(paths: list[str], names: Iterable[str]) -> bool:
    return any(p == n or p.startswith(n + ".") for p in paths for n in names if n)


def _shared_with(spec: Any) -> list[torch.fx.Node]:
    """The nodes a (shared / derived) quantization spec depends on."""
    edges = getattr(spec, "edge_or_node", None)
    deps = list(getattr(spec, "derived_from", None) or [])
    if edges is not None:
        deps.append(edges)
    out: list[torch.fx.Node] = []
    for e in deps:
        out.extend(x for x in (e if isinstance(e, tuple) else (e,)) if isinstance(x, torch.fx.Node))
    return out


def restrict_annotations(
    model: torch.fx.GraphModule,
    float_modules: Iterable[str] = (),
    only_modules: Iterable[str] | None = None,
    float_nodes: Iterable[torch.fx.Node] = (),
    float_inputs: bool = False,
) -> int:
    """Keep in float every op of ``float_modules`` (module paths; their submodules too) and, when
    ``only_modules`` is given, every op outside them: their quantization annotations are removed, and so are
    the annotations that share an observer with a removed one. Works for any PT2E quantizer's annotation
    (litert-torch's ``set_module_name`` takes no ``None`` and misreads paths with underscores). Returns the
    number of ops left in float. ``float_nodes``: single ops kept in float as well. ``float_inputs``: the
    tensors the removed ops read are taken out of int8 too, where nothing quantized reads them (see
    :func:`_float_input_tensors`)."""
    float_modules, only = list(float_modules), None if only_modules is None else list(only_modules)
    key = "quantization_annotation"
    removed: set[torch.fx.Node] = set()
    extra = set(float_nodes)
    for node in model.graph.nodes:
        if key not in node.meta:
            continue
        paths = _module_paths(node)
        if node in extra or _inside(paths, float_modules) or (only is not None and not _inside(paths, only)):
            del node.meta[key]
            removed.add(node)
    changed = bool(removed)
    while changed:  # shared observers of a removed op: keep those ops in float as well
        changed = False
        for node in model.graph.nodes:
            ann = node.meta.get(key)
            if ann is None:
                continue
            specs = [*ann.input_qspec_map.values(), ann.output_qspec]
            if any(dep in removed for spec in specs for dep in _shared_with(spec)):
                del node.meta[key]
                removed.add(node)
                changed = True
    if float_inputs:
        _float_input_tensors(removed)
    return len(removed)


def _reads_int8(node: torch.fx.Node, removed: set[torch.fx.Node], depth: int = 0) -> bool:
    """Whether a consumer of ``node``'s output, directly or through unannotated one-input ops (a pad, a view),
    is an annotated op (which quantizes what it reads); ops left in float and other float ops do not."""
    for user in node.users:
        if user in removed or user.op != "call_function":
            continue
        if "quantization_annotation" in user.meta:
            return True
        if len(user.all_input_nodes) == 1 and (depth >= 8 or _reads_int8(user, removed, depth + 1)):
            return True
    return False


def _float_input_tensors(removed: set[torch.fx.Node]) -> int:
    """Drop the output quantization of the producers of what the ``removed`` ops read (looking back through
    unannotated one-input ops), unless another quantized op reads it or an annotation shares its observer.

    Removing an op's annotation drops the quantization of its inputs on its side only: the producer's own
    output observer (a conv's, or the one ``quantize_after_clamp`` put on its ReLU6) still rounds the tensor to
    int8. A module kept in float then still reads an int8 tensor (EfficientNet-Lite2: the stem's ReLU6 output,
    which its strided depthwise conv amplifies, costs 16.9 dB on its own and stayed int8 with the depthwise
    conv in float). With the producer's output in float, the producer runs in float too (an int8 conv has an
    int8 output): the float island grows by that op."""
    key = "quantization_annotation"
    kept = [n for n in (next(iter(removed)).graph.nodes if removed else ()) if key in n.meta]
    shared = {
        dep
        for n in kept
        for spec in (*n.meta[key].input_qspec_map.values(), n.meta[key].output_qspec)
        for dep in _shared_with(spec)
    }
    dropped = 0
    for node in removed:
        for src in node.all_input_nodes:
            producer = src
            while key not in producer.meta and producer.op == "call_function" and len(producer.all_input_nodes) == 1:
                producer = producer.all_input_nodes[0]
            ann = producer.meta.get(key)
            if ann is None or ann.output_qspec is None or producer in shared or _reads_int8(producer, removed):
                continue
            ann.output_qspec = None
            dropped += 1
    if dropped:
        log.info("PT2E: %d tensor(s) read by ops kept in float taken out of int8", dropped)
    return dropped


def module_paths_of_type(model: torch.fx.GraphModule, type_names: Iterable[str]) -> list[str]:
    """The paths of the modules whose class is named one of ``type_names``, read from the exported graph's
    ``nn_module_stack`` (whose entries are ``(path, class or qualified class name)``)."""
    wanted = set(type_names)
    found: dict[str, None] = {}
    for node in model.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            name = kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
            if name in wanted:
                found[str(path)] = None
    return list(found)


_ADDS = ("aten.add.Tensor", "aten.add_.Tensor")
_NORMS = ("aten.layer_norm.default", "aten.group_norm.default")
_PASS_THROUGH = (
    "aten.view.default",
    "aten.reshape.default",
    "aten.permute.default",
    "aten.transpose.int",
    "aten.flatten.using_ints",
    "aten.contiguous.default",
    "aten.clone.default",
    "aten.cat.default",
    "aten.slice.Tensor",
)


def residual_stream_adds(model: torch.fx.GraphModule, norm_module_types: Iterable[str] = ()) -> list[torch.fx.Node]:
    """The ``add`` ops whose output reaches a normalisation (``layer_norm`` / ``group_norm``, or an op of a
    module whose class is named in ``norm_module_types``) through reshapes, slices and concatenations only,
    with those ops (TNT concatenates the class token to the sum before the norm): a pre-norm transformer's
    residual stream (``x = x + attn(norm1(x)); x = x + mlp(norm2(x))``, every sum read by the next norm).
    Its range grows block by block and is dominated by a few channels, so an int8 stream loses the small
    ones (Q-HyViT's "highly dynamic activation ranges"): litert-torch's quantizer leaves it in float,
    ExecuTorch's ``XNNPACKQuantizer`` quantizes every add (DeiT-Tiny int8 9.7 dB SQNR)."""
    norm_paths = set(module_paths_of_type(model, norm_module_types)) if norm_module_types else set()

    def is_norm(node: torch.fx.Node) -> bool:
        return str(node.target) in _NORMS or bool(norm_paths and _inside(_module_paths(node), norm_paths))

    def path_to_norm(node: torch.fx.Node, depth: int = 0) -> list[torch.fx.Node] | None:
        """The pass-through ops from ``node`` to a norm (empty: a norm reads it directly); None: no norm."""
        for user in node.users:
            if user.op != "call_function":
                continue
            if is_norm(user):
                return []
            if depth < 4 and str(user.target) in _PASS_THROUGH:
                rest = path_to_norm(user, depth + 1)
                if rest is not None:
                    return [user, *rest]
        return None

    out: dict[torch.fx.Node, None] = {}
    for node in model.graph.nodes:
        if node.op == "call_function" and str(node.target) in _ADDS:
            path = path_to_norm(node)
            if path is not None:  # the add and the reshapes / concatenations that carry it to the norm
                out.update(dict.fromkeys([node, *path]))
    return list(out)


def every_add(model: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """Every ``add`` op: the residual stream's (:func:`residual_stream_adds`) and a CNN's or a local block's
    residual sums. litert-torch's quantizer annotates none of them; ExecuTorch's ``XNNPACKQuantizer`` quantizes
    each, and in float they cost nothing on XNNPACK (its float add runs inside the delegate between its own
    converts): EdgeViT-XXS int8 23.6 -> 26.5 dB at 7.55 -> 7.39 ms, EfficientNet-Lite0 22.44 -> 22.48 dB at
    6.25 -> 6.24 ms (one interleaved run each, 224 px, docs/executorch.md "Int8")."""
    return [n for n in model.graph.nodes if n.op == "call_function" and str(n.target) in _ADDS]


class FloatModulesMixin:
    """A PT2E quantizer's ``annotate`` followed by :func:`restrict_annotations` (``float_modules`` /
    ``only_modules`` set on the instance; by default everything is quantized). ``float_module_types``: class
    names of modules a target always keeps in float (a formulation's rewrite that int8 would break)."""

    float_modules: tuple[str, ...] = ()
    only_modules: tuple[str, ...] | None = None
    float_module_types: tuple[str, ...] = ()
    #: keep the residual stream's adds in float (:func:`residual_stream_adds`)
    float_residual_stream: bool = False
    #: keep every add in float, as litert-torch's quantizer leaves them (:func:`every_add`)
    float_every_add: bool = False

    def restrict(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        by_type = module_paths_of_type(model, self.float_module_types) if self.float_module_types else []
        if by_type:
            log.info("PT2E: %d %s module(s) kept in float", len(by_type), "/".join(self.float_module_types))
        if self.float_every_add:
            adds = every_add(model)
        else:
            adds = residual_stream_adds(model, self.float_module_types) if self.float_residual_stream else []
        if adds:
            log.info("PT2E: %d adds kept in float", len(adds))
        n = 0
        if by_type or adds or self.only_modules is not None:
            n += restrict_annotations(model, by_type, self.only_modules, adds)
        if self.float_modules:  # asked for (--exclude, --target-sqnr): what they read goes float with them
            n += restrict_annotations(model, self.float_modules, float_inputs=True)
        if n:
            log.info("PT2E: %d ops left in float (modules kept in float / outside the quantized set)", n)
        return model


def litert_quantizer(dynamic: bool):
    """litert-torch's ``PT2EQuantizer`` (symmetric per-channel weights; static or dynamic activations),
    whose annotation ends with :func:`quantize_after_clamp`."""
    pq = require("litert_torch.quantize.pt2e_quantizer", "tflite")
    utils = require("litert_torch.quantize.pt2e_quantizer_utils", "tflite")

    base: Any = pq.PT2EQuantizer  # a class of an optional backend, only known at run time

    class ClampAwareQuantizer(FloatModulesMixin, base):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            config = self.global_config
            if config is not None and config.input_activation is not None:  # static activations only
                n = quantize_after_clamp(model, utils.get_output_act_qspec(config))
                log.info("PT2E: %d conv -> clamp pairs quantized after the clamp", n)
            return self.restrict(model)

    return ClampAwareQuantizer().set_global(
        pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    )
