"""ExecuTorch export: ``torch.export`` -> ``to_edge_transform_and_lower`` (XNNPACK, Core ML or no delegate)
-> ``.to_executorch()`` -> a ``.pte`` program.

The ``.pte`` format has no free-form metadata table, so the toolkit's metadata travels in a sidecar JSON
``NAME.pte.json`` beside it. The sidecar records the SHA-256 of the program it describes; a sidecar that does
not match its ``.pte`` (stale, or the program was replaced) is ignored with a warning, and such a program still
verifies when the user gives ``--model`` / ``--img-size``.

Ops that stay outside the delegate (they run in ExecuTorch's portable kernels, which are much slower) are
listed by name: logged at export, written to the sidecar, and kept on :attr:`ExecutorchConverter.notes`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import atomic_path, write_bytes
from .._lazy import require
from ..errors import ConversionError, first_line
from ._errors import unsupported_op_from
from ._quiet import quiet_backends
from .base import ArtifactMetadata, EtBackend, ExportOptions, Precision

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
ETRECORD_SUFFIX = ".etrecord"  # the ETRecord a profiling export writes beside the program
BACKEND_KEY = "edgevit_deploy.et_backend"
OUTSIDE_KEY = "edgevit_deploy.et_non_delegated_ops"
SHA_KEY = "edgevit_deploy.pte_sha256"

# graph nodes that are plumbing, not kernels
_PLUMBING = {"executorch_call_delegate", "getitem"}


def sidecar_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SIDECAR_SUFFIX)


def etrecord_path(path: Path) -> Path:
    """``NAME.pte.etrecord``: the ETRecord that maps a program's ETDump events to the edge graph's aten ops."""
    return Path(path).with_name(Path(path).name + ETRECORD_SUFFIX)


def _partitioners(backend: EtBackend) -> list[Any]:
    if backend is EtBackend.XNNPACK:
        mod = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch")
        return [mod.XnnpackPartitioner()]
    if backend is EtBackend.COREML:
        ct = require("coremltools", "coreml")
        mod = require("executorch.backends.apple.coreml.partition", "executorch")
        compiler = require("executorch.backends.apple.coreml.compiler", "executorch")
        # fp32 compute: the delegate's default is fp16, which an fp32 artifact's parity bars would reject
        specs = compiler.CoreMLBackend.generate_compile_specs(compute_precision=ct.precision.FLOAT32)
        return [mod.CoreMLPartitioner(compile_specs=specs)]
    return []  # portable: no delegate, every op in the portable kernels


def _transform_passes(backend: EtBackend) -> list[Any]:
    """Edge passes run before partitioning: for XNNPACK, exact respellings of the data-movement ops its
    partitioner leaves outside (:mod:`._executorch_passes`)."""
    if backend is not EtBackend.XNNPACK:
        return []
    from ._executorch_passes import xnnpack_transform_passes

    return xnnpack_transform_passes()


def _op_name(target: Any) -> str:
    """``namespace.op.overload`` of a graph node's target. An edge op (``EdgeOpOverload``) wraps the aten
    ``OpOverload`` in ``_op``; an aten ``OpOverload`` left in the edge graph as is (``aten.scalar_tensor``) has an
    ``_op`` too, the pybind11 builtin under it, whose ``__name__`` is empty (it printed as ``<built-in method  of
    pybind11_builtins...>``): only the edge wrapper is unwrapped."""
    op = target if isinstance(target, torch._ops.OpOverload) else getattr(target, "_op", target)
    name = getattr(op, "__name__", None) or ""
    if not name or name.startswith("<"):
        name = str(getattr(target, "__name__", None) or target)
    ns = getattr(op, "namespace", None)
    return f"{ns}.{name}" if ns and not name.startswith(f"{ns}.") else name


def non_delegated_ops(edge_program: Any) -> dict[str, int]:
    """``{op name: count}`` of the kernels left outside every delegate in a lowered edge program."""
    graph = edge_program.exported_program().graph_module.graph
    counts: Counter[str] = Counter()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node.target)
        if name.split(".")[-1] in _PLUMBING or name in _PLUMBING:
            continue
        counts[name] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def lower_to_pte(
    program: torch.export.ExportedProgram,
    out_path: Path,
    backend: EtBackend,
    meta: dict[str, str],
    *,
    etrecord: bool = False,
) -> dict[str, int]:
    """Lower an exported program for ``backend``, write the ``.pte`` and its sidecar atomically; with
    ``etrecord`` also the ETRecord (:func:`etrecord_path`) that ``--profile`` maps ETDump events with.

    Returns the ops left outside the delegate (empty for a fully delegated program)."""
    exir = require("executorch.exir", "executorch")
    partitioner = _partitioners(backend)
    try:
        with quiet_backends():
            edge = exir.to_edge_transform_and_lower(
                program,
                partitioner=partitioner or None,
                transform_passes=_transform_passes(backend) or None,
                generate_etrecord=etrecord,
            )
            outside = non_delegated_ops(edge) if partitioner else {}
            et_program = edge.to_executorch()
            buffer = et_program.buffer
            if etrecord:
                with atomic_path(etrecord_path(out_path)) as tmp:
                    et_program.get_etrecord().save(str(tmp))
    except Exception as exc:
        raise ConversionError("executorch", first_line(exc), op=unsupported_op_from(str(exc))) from exc
    if outside:  # in the result's notes too: the CLI prints them under its table
        log.info(
            "executorch: %d op(s) run outside the %s delegate (portable kernels): %s",
            sum(outside.values()),
            backend,
            ", ".join(f"{k} x{v}" for k, v in outside.items()),
        )
    sidecar = {
        **meta,
        BACKEND_KEY: str(backend),
        OUTSIDE_KEY: _format_counts(outside),
        SHA_KEY: hashlib.sha256(buffer).hexdigest(),
    }
    write_bytes(out_path, bytes(buffer))
    write_bytes(sidecar_path(out_path), json.dumps(sidecar, indent=1, sort_keys=True).encode())
    return outside


def _format_counts(counts: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in counts.items())


class ExecutorchConverter:
    """``convert`` leaves ``notes`` = ``{"backend": ..., "non_delegated_ops": {op: count}}`` for the report.
    ``etrecord=True`` also writes the program's ETRecord beside it (for per-op profiles)."""

    def __init__(self, etrecord: bool = False) -> None:
        self.notes: dict[str, Any] = {}
        self.etrecord = etrecord

    def convert(
        self,
        model: nn.Module,
        example: torch.Tensor,
        out_path: Path,
        options: ExportOptions,
        metadata: ArtifactMetadata,
    ) -> Path:
        backend = EtBackend(options.et_backend or EtBackend.XNNPACK)
        module, sample = model.eval(), example
        if options.precision == Precision.FP16:  # a half model and input: XNNPACK lowers fp16 graphs to fp16 kernels
            module, sample = copy.deepcopy(model).half().eval(), example.half()
        try:
            with torch.no_grad(), quiet_backends():
                program = torch.export.export(module, (sample,))
        except Exception as exc:
            raise ConversionError(
                "executorch", f"torch.export failed: {first_line(exc)}", op=unsupported_op_from(str(exc))
            ) from exc
        outside = lower_to_pte(program, Path(out_path), backend, metadata.as_strings(), etrecord=self.etrecord)
        self.notes = {"backend": str(backend), "non_delegated_ops": outside}
        return Path(out_path)

    def read_metadata(self, path: Path) -> dict[str, str]:
        return read_metadata(path)


def read_metadata(path: Path) -> dict[str, str]:
    """The sidecar's metadata when it describes this very ``.pte``; else ``{}`` (with a warning)."""
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        log.warning(
            "%s has no metadata sidecar (%s); give --img-size if it is not the model's default", path.name, side.name
        )
        return {}
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable metadata sidecar %s: %s", side, exc)
        return {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        log.warning("ignoring metadata sidecar %s: not a JSON object of strings", side)
        return {}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if meta.get(SHA_KEY) != digest:
        log.warning("ignoring metadata sidecar %s: it describes another program (sha256 mismatch)", side)
        return {}
    return meta
