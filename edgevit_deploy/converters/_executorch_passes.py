"""Edge-dialect passes run before the XNNPACK partitioner: exact respellings of data-movement ops that
executorch 1.5.1's partitioner leaves to the portable kernels, into ops it delegates.

- ``expand_copy`` whose output has its input's shape and dtype: bypassed (ExecuTorch's own
  ``RemoveNoopExpandCopyPass``, shipped with the XNNPACK backend but not in its default pass list).
  ``torch.export`` spells every rank-4 ``matmul`` (attention's ``q @ k^T``, ``attn @ v``) as ``expand`` +
  ``view`` + ``bmm``; those identity copies stayed outside (44 in LeViT-128S, 49 in DeiT-Tiny).
- ``mean.dim`` over other axes than the last two of a rank-4 tensor with ``keepdim`` (the only mean it takes;
  ViT heads average tokens, ``x.mean(1)``) as a permute, a view to rank 4 and that mean; ``split_with_sizes_copy``
  as unit-stride ``slice_copy`` (it takes those).
- ``squeeze_copy`` and ``unsqueeze_copy`` (the partitioner takes ``unsqueeze`` on the trailing axis only, and
  no ``squeeze``) as ``view_copy`` to the same static shape; ``select_copy.int`` as a unit-stride
  ``slice_copy`` of length 1 and a ``view_copy``. ``qkv.unbind(0)`` in timm's attention is a split and three
  squeezes, the class token's ``x[:, 0]`` a select.
- ``_softmax`` over the last axis of a rank-4 tensor as a rank-2 softmax between two views: not for the
  partitioner, which takes it, but for the answer, which it got wrong on channels-last tensors (see
  :func:`_softmax_as_rank2`).

Imported only when an XNNPACK program is lowered (it imports executorch).
"""

from __future__ import annotations

import logging
import math
import operator
from typing import Any

import torch
from executorch.exir.dialects._ops import ops as exir_ops
from executorch.exir.pass_base import ExportPass, PassResult

log = logging.getLogger(__name__)

_ATEN = exir_ops.edge.aten
_RESHAPES = (
    _ATEN.squeeze_copy.dims,
    _ATEN.squeeze_copy.dim,
    _ATEN.squeeze_copy.default,
    _ATEN.unsqueeze_copy.default,
)


def _static_shape(node: torch.fx.Node) -> list[int] | None:
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    shape = list(val.shape)
    return shape if all(isinstance(d, int) for d in shape) else None


def _is_quantized(graph: torch.fx.Graph) -> bool:
    """A PT2E-quantized program: it has ``quantized_decomposed`` quantize / dequantize ops."""
    return any(n.op == "call_function" and "quantized_decomposed" in str(n.target) for n in graph.nodes)


def _split_as_slices(graph: torch.fx.Graph, node: torch.fx.Node, quantized: bool = False) -> bool:
    """``split_with_sizes_copy(x, sizes, dim)`` read through ``getitem``: each piece as a unit-stride slice.

    Not the channel axis of a rank-4 tensor in a quantized program: MobileViT-v2 075's int8 program, with its
    attention's ``split(qkv, [1, d, d], dim=1)`` as slices, stopped in the XNNPACK runtime ("Attempted to resize
    a static tensor. Expected shape (1, 192, 4, 1), but received (1, 0, 4, 1)", error 0x10) and ran with the
    split left to the portable kernels (050 / 100 and every fp32 program ran either way)."""
    args: Any = node.args  # fx's argument union: the op's schema fixes these
    src, sizes = args[0], [int(s) for s in args[1]]
    dim = int(args[2]) if len(args) > 2 else int(node.kwargs.get("dim", 0))  # type: ignore[arg-type]
    in_shape = _static_shape(src) if isinstance(src, torch.fx.Node) else None
    users = list(node.users)
    if in_shape is None or not all(u.op == "call_function" and u.target is operator.getitem for u in users):
        return False
    dim %= len(in_shape)
    if quantized and len(in_shape) == 4 and dim == 1:
        return False
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    for user in users:
        i = int(user.args[1])  # type: ignore[arg-type]
        with graph.inserting_before(user):
            piece = graph.call_function(_ATEN.slice_copy.Tensor, (src, dim, starts[i], starts[i] + sizes[i], 1))
        user.replace_all_uses_with(piece)
        graph.erase_node(user)
    graph.erase_node(node)
    return True


def _mean_as_spatial_mean(graph: torch.fx.Graph, node: torch.fx.Node) -> torch.fx.Node | None:
    """``mean.dim`` over any axes of a static tensor as the one mean the partitioner takes, over the last two
    axes of a rank-4 tensor with ``keepdim``: the reduced axes moved last (``permute_copy``), viewed
    ``(1, kept, reduced, 1)``, averaged, viewed to the output's shape. The same elements are averaged."""
    args: Any = node.args
    src = args[0]
    in_shape = _static_shape(src) if isinstance(src, torch.fx.Node) else None
    out_shape = _static_shape(node)
    if in_shape is None or out_shape is None or node.kwargs.get("dtype") is not None or len(args) < 2:
        return None
    rank = len(in_shape)
    dims = args[1]
    reduced = sorted({int(d) % rank for d in dims}) if dims else list(range(rank))
    keepdim = len(args) > 2 and bool(args[2])
    if rank == 4 and reduced == [2, 3] and keepdim:
        return None  # already the delegated form
    kept = [d for d in range(rank) if d not in reduced]
    with graph.inserting_before(node):
        x = src
        if rank == 4 and reduced == [2, 3]:
            pooled = graph.call_function(_ATEN.mean.dim, (x, [2, 3], True))
        else:
            order = kept + reduced
            if order != list(range(rank)):
                x = graph.call_function(_ATEN.permute_copy.default, (x, order))
            n_kept = math.prod(in_shape[d] for d in kept)
            n_reduced = math.prod(in_shape[d] for d in reduced)
            x = graph.call_function(_ATEN.view_copy.default, (x, [1, n_kept, n_reduced, 1]))
            pooled = graph.call_function(_ATEN.mean.dim, (x, [2, 3], True))
        return graph.call_function(_ATEN.view_copy.default, (pooled, out_shape))


def _softmax_as_rank2(graph: torch.fx.Graph, node: torch.fx.Node) -> torch.fx.Node | None:
    """``_softmax(x, -1)`` of a static rank-4 tensor as a view to ``(rows, last)``, that softmax, a view back.

    executorch 1.5.1's XNNPACK delegate computes the last-axis softmax of a rank-4 tensor it holds channels-last
    (any tensor made by a delegated conv) over the wrong axis, silently: ``conv2d -> softmax(-1)`` came back with
    max abs error 0.40 (MobileViT-v2's linear attention, 0.44-0.61 on the whole model). A view takes the tensor
    back to the contiguous order first, so the rank-2 softmax reads the rows PyTorch's does."""
    args: Any = node.args
    src, dim = args[0], int(args[1])
    in_shape = _static_shape(src) if isinstance(src, torch.fx.Node) else None
    if in_shape is None or len(in_shape) != 4 or dim % 4 != 3:
        return None
    with graph.inserting_before(node):
        x = graph.call_function(_ATEN.view_copy.default, (src, [math.prod(in_shape[:3]), in_shape[3]]))
        soft = graph.call_function(_ATEN._softmax.default, (x, 1, *args[2:]))
        return graph.call_function(_ATEN.view_copy.default, (soft, in_shape))


class ReshapeCopiesToViewPass(ExportPass):
    """``squeeze_copy`` / ``unsqueeze_copy`` / ``select_copy.int`` with static shapes as ``view_copy`` (and a
    length-1 ``slice_copy`` for the select), ``split_with_sizes_copy`` as slices, ``mean.dim`` as a rank-4
    spatial mean, a last-axis rank-4 ``_softmax`` as a rank-2 one: the same elements in the same order (the mean
    sums them in the runtime's order)."""

    #: rounds of rewrite + re-trace: a rewrite reads its input's shape from the trace's metadata, which the
    #: nodes made by another rewrite (a view for a squeeze, then a mean of it) get at the next re-trace
    max_rounds = 4

    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        changed = False
        for _ in range(self.max_rounds):
            if not self._rewrite(graph_module.graph):
                break
            changed = True
            graph_module.graph.lint()
            graph_module.recompile()
            # re-trace: the new nodes get their fake-tensor metadata, as the partitioner's checks read it
            graph_module = super().call(graph_module).graph_module
        return PassResult(graph_module, changed)

    def _rewrite(self, graph: torch.fx.Graph) -> bool:
        changed = False
        quantized = _is_quantized(graph)
        for node in list(graph.nodes):
            if getattr(node, "_erased", False) or node.op != "call_function":  # erased earlier in this round
                continue
            if node.target in _RESHAPES:
                shape = _static_shape(node)
                if shape is None:
                    continue
                with graph.inserting_before(node):
                    new = graph.call_function(_ATEN.view_copy.default, (node.args[0], shape))
            elif node.target == _ATEN.select_copy.int:
                args: Any = node.args
                src, dim, index = args[0], int(args[1]), int(args[2])
                in_shape = _static_shape(src) if isinstance(src, torch.fx.Node) else None
                shape = _static_shape(node)
                if in_shape is None or shape is None:
                    continue
                dim %= len(in_shape)
                index %= in_shape[dim]
                with graph.inserting_before(node):
                    piece = graph.call_function(_ATEN.slice_copy.Tensor, (src, dim, index, index + 1, 1))
                    new = graph.call_function(_ATEN.view_copy.default, (piece, shape))
            elif node.target == _ATEN.split_with_sizes_copy.default:
                changed |= _split_as_slices(graph, node, quantized)
                continue
            elif node.target == _ATEN._softmax.default:
                soft = _softmax_as_rank2(graph, node)
                if soft is None:
                    continue
                new = soft
            elif node.target == _ATEN.mean.dim:
                mean = _mean_as_spatial_mean(graph, node)
                if mean is None:
                    continue
                new = mean
            else:
                continue
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            changed = True
        return changed


def xnnpack_transform_passes() -> list[Any]:
    """The passes :func:`~edgevit_deploy.converters.executorch.lower_to_pte` runs before XNNPACK partitioning."""
    passes: list[Any] = [ReshapeCopiesToViewPass()]
    try:
        from executorch.backends.xnnpack._passes.remove_noop_expand_copy_pass import RemoveNoopExpandCopyPass
    except ImportError:  # another executorch release: the identity copies then stay outside, and are listed
        log.debug("executorch: no RemoveNoopExpandCopyPass in this release")
    else:
        passes.insert(0, RemoveNoopExpandCopyPass())
    return passes
