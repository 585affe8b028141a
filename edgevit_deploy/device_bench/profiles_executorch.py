"""Per-op timings of an ExecuTorch program from its ETDump (``--profile`` for ``.pte`` artifacts).

ExecuTorch's runtime records one profiling event per instruction when its event tracer is on (the pip wheel's
Python runtime has it: ``Runtime.load_program(path, enable_etdump=True)``, then
``Program.write_etdump_result_to_file``); ``executorch.devtools.Inspector`` reads the ETDump, and with an
ETRecord (written at export, :func:`edgevit_deploy.converters.executorch.etrecord_path`) maps every event back
to the aten ops of the edge graph.

What the rows are (the shared ``op_profile`` shape: ``node``, ``op``, ``ms``, ``count``, ``pct``):

- an op left outside the delegate (an ``OPERATOR_CALL`` of the portable kernels): ``op`` is its aten op
  (``aten.native_layer_norm.default``) with an ETRecord, else the kernel's name (``native_layer_norm.out``);
  ``node`` the edge graph's node name (ETRecord) or ``kernel #instruction``.
- a delegated segment: the XNNPACK delegate exposes its own per-operator events (XNNPACK's runtime profiler,
  microsecond resolution), one row each with ``op`` = ``"XNNPACK:<XNNPACK operator>"``
  (``XNNPACK:Convolution (NHWC, F32) IGEMM``), ``node`` the event name (``... #3``); what the
  ``DELEGATE_CALL`` took beyond its per-operator events is one more row with ``op`` = ``"XNNPACK delegate"``.
  A delegate that exposes no per-op events (Core ML, others) gives only that one row per call, holding the
  whole call.

``ms`` is the mean over the profiled executions (the first ``skip`` executions, warm-up, are left out), ``pct``
the share of the sum of the rows, so the percentages add up to 100; the interpreter's own overhead between
instructions is not a row. Sorted by ``ms`` descending.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._lazy import require
from ..converters._quiet import native_output_to_log

log = logging.getLogger(__name__)

#: event names of the runtime itself (not instructions)
_RUNTIME_EVENTS = {"Method::init", "Program::load_method", "Method::execute"}
_OPERATOR_CALL = "OPERATOR_CALL"
_DELEGATE_CALL = "DELEGATE_CALL"
_KERNEL_PREFIX = "native_call_"
_SERIAL = re.compile(r"\s+#\d+$")
#: ExecuTorch backend ids -> the label used in the rows' ``op``
BACKEND_LABELS = {"XnnpackBackend": "XNNPACK", "CoreMLBackend": "Core ML", "VulkanBackend": "Vulkan"}


@dataclass
class _Row:
    node: str
    op: str
    ms: float
    count: int = 1


def _mean(raw: Sequence[float] | None, skip: int) -> float | None:
    if not raw:
        return None
    values = [float(v) for v in raw]
    kept = values[skip:] if len(values) > skip else values[-1:]
    return float(np.mean(kept))


def _label(backend: str | None) -> str:
    if not backend:
        return "delegate"
    return BACKEND_LABELS.get(backend, backend.removesuffix("Backend") or backend)


def _node_names(etrecord: Any) -> dict[int, str]:
    """debug handle -> the first edge-graph node carrying it (the op itself, not its getitem outputs)."""
    names: dict[int, str] = {}
    program = getattr(etrecord, "edge_dialect_program", None)
    if program is None:
        return names
    graph = program.graph if hasattr(program, "graph") else program.graph_module.graph
    for node in graph.nodes:
        handle = node.meta.get("debug_handle")
        if node.op == "call_function" and isinstance(handle, int) and handle not in names:
            names[handle] = node.name
    return names


def _first_handle(handles: Any) -> int | None:
    if isinstance(handles, int):
        return handles
    if isinstance(handles, (list, tuple)) and len(handles) == 1 and isinstance(handles[0], int):
        return int(handles[0])
    return None


def op_profile_from_etdump(
    etdump_path: str | Path,
    etrecord_path: str | Path | None = None,
    *,
    skip: int = 0,
    group_by_op: bool = False,
) -> list[dict[str, Any]]:
    """The ``op_profile`` rows of an ETDump (see the module docstring); ``skip`` drops the first executions.

    ``group_by_op`` sums the rows of one ``op`` into one row (``node`` ``""``, ``count`` = how many ran).
    Raises ``ValueError`` when the ETDump holds no executed instruction (event tracer off, nothing run)."""
    devtools = require("executorch.devtools", "executorch")
    etrecord = None
    if etrecord_path is not None:
        etrecord = require("executorch.devtools.etrecord", "executorch").parse_etrecord(str(etrecord_path))
    import warnings

    with warnings.catch_warnings():  # "Output Buffer not found": no debug buffer asked for, timings only
        warnings.simplefilter("ignore", UserWarning)
        inspector = devtools.Inspector(etdump_path=str(etdump_path), etrecord=etrecord)
    names = _node_names(etrecord) if etrecord is not None else {}
    rows: list[_Row] = []
    for block in inspector.event_blocks:
        inner: list[_Row] = []  # the delegate's own per-op events, logged before their DELEGATE_CALL
        kernel = ""
        calls = 0
        for event in block.events:
            name = str(event.name)
            ms = _mean(event.perf_data.raw if event.perf_data is not None else None, skip)
            if name in _RUNTIME_EVENTS or ms is None:
                continue
            if event.is_delegated_op:
                inner.append(
                    _Row(node=name, op=f"{_label(event.delegate_backend_name)}:{_SERIAL.sub('', name)}", ms=ms)
                )
            elif name == _DELEGATE_CALL:
                calls += 1
                label = _label(event.delegate_backend_name or _backend_of(inner, event))
                covered = sum(r.ms for r in inner)
                rows.extend(inner)
                node = f"{_DELEGATE_CALL} #{calls}" + (" (outside its per-op events)" if inner else "")
                rows.append(_Row(node=node, op=f"{label} delegate", ms=max(ms - covered, 0.0)))
                inner = []
            elif name.startswith(_KERNEL_PREFIX):
                kernel = name.removeprefix(_KERNEL_PREFIX)  # named by the OPERATOR_CALL that follows it
            elif name == _OPERATOR_CALL:
                op = str(event.op_types[0]) if event.op_types else (kernel or "operator")
                handle = _first_handle(event.debug_handles)
                named = names.get(handle) if handle is not None else None
                rows.append(_Row(node=named or f"{kernel or 'operator'} #{event._instruction_id}", op=op, ms=ms))
                kernel = ""
        rows.extend(inner)  # per-op events without a DELEGATE_CALL after them (should not happen)
    if not rows:
        raise ValueError(f"{Path(etdump_path).name} holds no executed instruction (was the event tracer on?)")
    if group_by_op:
        grouped: dict[str, _Row] = {}
        for r in rows:
            g = grouped.setdefault(r.op, _Row(node="", op=r.op, ms=0.0, count=0))
            g.ms += r.ms
            g.count += r.count
        rows = list(grouped.values())
    total = sum(r.ms for r in rows)
    rows.sort(key=lambda r: (-r.ms, r.op, r.node))
    return [
        {"node": r.node, "op": r.op, "ms": r.ms, "count": r.count, "pct": 100.0 * r.ms / total if total > 0 else 0.0}
        for r in rows
    ]


def _backend_of(inner: list[_Row], event: Any) -> str | None:
    if inner:
        return next((k for k, v in BACKEND_LABELS.items() if inner[0].op.startswith(v + ":")), None)
    return None


def profile_program(
    pte_path: str | Path,
    *,
    iterations: int = 10,
    warmup: int = 1,
    threads: int = 1,
    etrecord_path: str | Path | None = None,
    inputs: np.ndarray | None = None,
    etdump_out: str | Path | None = None,
    group_by_op: bool = False,
) -> list[dict[str, Any]]:
    """Run a ``.pte`` in ExecuTorch's Python runtime with ETDump on, ``warmup`` + ``iterations`` times, and
    return its :func:`op_profile_from_etdump` table (warm-up runs left out).

    ``etrecord_path`` defaults to the program's ``NAME.pte.etrecord`` when it exists (written by an export
    asked to profile); without one the rows name kernels instead of aten ops. ``inputs`` defaults to zeros in
    the program's input shape and dtype. ``threads`` sizes the XNNPACK threadpool (checked, like the host
    sessions). ``etdump_out`` keeps the ETDump file (else a temporary one)."""
    if iterations < 1 or warmup < 0:
        raise ValueError(f"iterations must be >= 1 and warmup >= 0, got {iterations} / {warmup}")
    from ..converters.executorch import etrecord_path as default_etrecord
    from ..verify.runtimes import _et_set_threads

    pte_path = Path(pte_path)
    if etrecord_path is None and default_etrecord(pte_path).is_file():
        etrecord_path = default_etrecord(pte_path)
    with native_output_to_log():
        rt_mod = require("executorch.runtime", "executorch")
    import torch

    got = _et_set_threads(threads)
    if got != threads:
        raise RuntimeError(f"ExecuTorch threadpool has {got} threads, {threads} requested")
    program = rt_mod.Runtime.get().load_program(pte_path, enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    meta = program.metadata("forward").input_tensor_meta(0)
    dtype = {5: torch.float16}.get(int(meta.dtype()), torch.float32)
    x = (
        torch.zeros(tuple(int(s) for s in meta.sizes()), dtype=dtype)
        if inputs is None
        else torch.from_numpy(np.ascontiguousarray(inputs)).to(dtype)
    )
    for _ in range(warmup + iterations):
        method.execute([x])
    with tempfile.TemporaryDirectory(prefix="edgevit-etdump-") as tmp:
        dump = Path(etdump_out) if etdump_out is not None else Path(tmp) / "program.etdp"
        program.write_etdump_result_to_file(str(dump), str(Path(tmp) / "debug.bin"))
        log.debug("ETDump of %s (%d runs) written to %s", pte_path.name, warmup + iterations, dump)
        return op_profile_from_etdump(dump, etrecord_path, skip=warmup, group_by_op=group_by_op)
