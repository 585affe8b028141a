"""The reference ML Program executor: runs a saved ``.mlpackage`` op by op, in torch, on any OS.

Every float is held as float32; the output of every op whose declared dtype is fp16 is rounded to the
nearest float16 (and so are fp16 inputs and weights), so an fp16 program shows its real fp16 storage
error. Inside an op, arithmetic is float32 (like Core ML's CPU / GPU kernels, which accumulate in
higher precision). ``emulate_fp16=False`` computes fp16 programs in plain float32 instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import MilOpExecutionError, MilProgramError, UnsupportedMilOpError
from .ops import OpArgs, lookup
from .ops._args import as_tensor
from .ops.dtypes import finalise
from .program import MilPackage, load_package
from .session_io import denormalise_for_image, image_feed, mean_std_from_metadata

log = logging.getLogger(__name__)


def _dtype_name(var: Any) -> str:
    from coremltools.converters.mil.mil import types

    try:
        return types.builtin_to_string(var.dtype) or "unknown"
    except (ValueError, AttributeError):  # ListVar, tuples
        return "list"


@dataclass
class _Step:
    op_type: str
    name: str
    fn: Any
    inputs: dict[str, Any]  # input name -> var name, or tuple of var names
    outputs: tuple[str, ...]
    out_dtypes: tuple[str, ...]


def _input_names(op: Any) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for key, var in op.inputs.items():
        names[key] = tuple(v.name for v in var) if isinstance(var, (list, tuple)) else var.name
    return names


def _const_value(var: Any, dtype: str) -> Any:
    val = var.val
    if isinstance(val, (str, list, tuple)) or dtype in ("str", "list"):
        return val
    arr = np.asarray(val)
    if arr.dtype.kind == "f":
        return torch.from_numpy(np.array(arr, dtype=np.float32))
    return arr


class ReferenceExecutor:
    """``ReferenceExecutor(path)``: load an ML Program package; ``predict(feeds)`` runs it on named inputs,
    ``run_normalised(x)`` runs it on the model's normalised NCHW batch and returns ``(N, classes)`` scores.

    Raises :class:`UnsupportedMilOpError` at load, naming every op it does not implement.
    """

    def __init__(self, path: Path | str, emulate_fp16: bool = True, threads: int = 1):
        self.package: MilPackage = load_package(path)
        self.emulate_fp16 = emulate_fp16
        self.threads = threads
        self._consts: dict[str, Any] = {}
        self._steps: list[_Step] = []
        self._compile()
        fn = self.package.function
        self._inputs = {name: (_dtype_name(var), tuple(var.shape)) for name, var in fn.inputs.items()}
        self.has_fp16 = any("fp16" in s.out_dtypes for s in self._steps) or any(
            d == "fp16" for d, _ in self._inputs.values()
        )
        if not self.has_fp16:
            self.executor = "coreml-reference (fp32)"
        else:
            self.executor = (
                "coreml-reference (fp16 emulated)" if emulate_fp16 else "coreml-reference (fp16 computed as fp32)"
            )
        self.mean, self.std = mean_std_from_metadata(self.package.metadata)

    # ------------------------------------------------------------------------------------------ load
    def _compile(self) -> None:
        unsupported: dict[str, str] = {}
        for op in self.package.function.operations:
            outs = tuple(op.outputs)
            dtypes = tuple(_dtype_name(v) for v in outs)
            if op.op_type == "const":
                self._consts[outs[0].name] = _const_value(outs[0], dtypes[0])
                continue
            fn = lookup(op.op_type)
            if fn is None or getattr(op, "blocks", None):
                unsupported.setdefault(op.op_type, "control flow" if fn is not None else "")
                continue
            step = _Step(op.op_type, op.name, fn, _input_names(op), tuple(v.name for v in outs), dtypes)
            if op.op_type.startswith("constexpr_"):  # compile-time constants: evaluate once
                self._run_step(step, self._consts)
            else:
                self._steps.append(step)
        if unsupported:
            first = next(iter(unsupported))
            raise UnsupportedMilOpError(first, unsupported[first], ops=sorted(unsupported))
        log.debug("reference executor: %d ops, %d constants", len(self._steps), len(self._consts))

    @property
    def op_types(self) -> list[str]:
        """The op types executed at run time (constants and constexpr_* ops are folded at load)."""
        return sorted({s.op_type for s in self._steps})

    def constant(self, name: str) -> np.ndarray:
        """A constant of the program as the executor holds it (constexpr_* ops already decompressed)."""
        return self._to_numpy(self._consts[name])

    # ------------------------------------------------------------------------------------------- run
    def _run_step(self, step: _Step, env: dict[str, Any]) -> None:
        try:
            out = step.fn(OpArgs(step.op_type, step.name, step.inputs, env, step.out_dtypes))
        except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as exc:
            raise MilOpExecutionError(step.op_type, step.name, exc) from exc
        if len(step.outputs) == 1:
            env[step.outputs[0]] = finalise(out, step.out_dtypes[0], self.emulate_fp16)
            return
        for name, value, dtype in zip(step.outputs, out, step.out_dtypes):
            env[name] = finalise(value, dtype, self.emulate_fp16)

    def _feed(self, name: str, value: Any) -> torch.Tensor:
        dtype, shape = self._inputs[name]
        if name in self.package.image_inputs:
            value = image_feed(value, self.package.image_inputs[name])
        t = as_tensor(np.asarray(value))
        static = [d if isinstance(d, (int, np.integer)) else None for d in shape]
        if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(static, t.shape)):
            raise MilProgramError(
                f"input {name!r} has shape {tuple(t.shape)}; the program takes {tuple(static)} "
                "(None: any size). Resize / batch the input to match."
            )
        return finalise(t, dtype, self.emulate_fp16)

    def predict(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run the program on named inputs (numpy arrays; PIL images or HWC / CHW pixel arrays for image
        inputs). Returns every output as numpy; a classifier's scores output is the ``(N, classes)``
        score array in class-index order and its label output an array of class labels."""
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise MilProgramError(f"missing input(s) {', '.join(missing)}; the program takes {', '.join(self._inputs)}")
        env = dict(self._consts)
        for name in self._inputs:
            env[name] = self._feed(name, feeds[name])
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                for step in self._steps:
                    self._run_step(step, env)
        finally:
            torch.set_num_threads(previous)
        return {o.name: self._to_numpy(env[o.name]) for o in self.package.function.outputs}

    @staticmethod
    def _to_numpy(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.numpy()
        return np.asarray(value)

    def run_normalised(self, x: np.ndarray, uint8_pixels: bool = False) -> np.ndarray:
        """``x``: ``(N, 3, H, W)`` float32 normalised with the model's mean / std. Image inputs get 0..255
        pixels back (from the package's ``edgevit_deploy.mean`` / ``.std`` metadata; without it the batch
        is fed as is). Returns ``(N, classes)`` float32 scores (logits, or a classifier's scores in
        class-index order). ``uint8_pixels`` rounds and clips image pixels to 0..255 integers, as a
        camera frame (and ``MLModel.predict`` with a PIL image) would give."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise MilProgramError(f"run_normalised takes an (N, C, H, W) batch; got shape {x.shape}")
        name = self.package.input_names[0]
        if name in self.package.image_inputs and self.mean is not None:
            x = denormalise_for_image(x, self.mean, self.std, self.package.image_inputs[name])
        if name in self.package.image_inputs and uint8_pixels:
            x = np.clip(np.round(x), 0, 255)
        out_name = self.package.scores_output or self.package.output_names[0]
        batch = self._inputs[name][1][0]
        if isinstance(batch, (int, np.integer)) and batch != x.shape[0]:
            if batch != 1:
                raise MilProgramError(f"the program has a fixed batch of {batch}; got {x.shape[0]} inputs")
            outs = [self.predict({name: x[i : i + 1]})[out_name] for i in range(x.shape[0])]
            return np.concatenate([np.asarray(o, dtype=np.float32).reshape(1, -1) for o in outs])
        out = self.predict({name: x})[out_name]
        return np.asarray(out, dtype=np.float32).reshape(x.shape[0], -1)
