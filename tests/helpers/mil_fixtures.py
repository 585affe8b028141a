"""Shared helpers of the reference ML Program executor tests (tests/verify/test_mil_*.py).

Per-op tests group many small cases into ONE program (one input set and one output per case), save it
as an .mlpackage, run it once with the executor and compare every output with torch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevit_deploy.verify.mil import ReferenceExecutor


@dataclass
class Case:
    """``build(*input_vars)`` makes the MIL ops; ``expected(*input_tensors)`` is torch's answer."""

    id: str
    build: Callable[..., Any]
    expected: Callable[..., Any]
    inputs: Sequence[np.ndarray]
    fp16: bool = False
    atol: float = 1e-5


def rng_inputs(*shapes: tuple[int, ...], seed: int = 0, low: float | None = None, high: float | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if low is not None:
        return [rng.uniform(low, high, s).astype(np.float32) for s in shapes]
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def save_program(program: Any, path: Path, target: str = "iOS16") -> Path:
    """Serialise a pymil Program as it is (no graph passes) into an .mlpackage."""
    import coremltools as ct

    model = ct.convert(program, convert_to="mlprogram", pass_pipeline=ct.PassPipeline.EMPTY,
                       minimum_deployment_target=getattr(ct.target, target),
                       compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    model.save(str(path))
    return path


def build_program(cases: Sequence[Case], target: str = "iOS16") -> tuple[Any, dict[str, list[str]]]:
    """One program holding every case; returns it and each case's output names."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import Function, Program, types

    specs = {}
    for c in cases:
        for j, arr in enumerate(c.inputs):
            dtype = types.fp16 if c.fp16 and arr.dtype.kind == "f" else types.numpy_type_to_builtin_type(arr.dtype)
            specs[f"{c.id}__in{j}"] = mb.placeholder(shape=arr.shape, dtype=dtype)
    outputs: dict[str, list[str]] = {}
    with Function(specs, opset_version=getattr(ct.target, target)) as func:
        all_vars = []
        for c in cases:
            ins = [func.inputs[f"{c.id}__in{j}"] for j in range(len(c.inputs))]
            out = c.build(*ins)
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            outputs[c.id] = [v.name for v in out]
            all_vars += out
        func.set_outputs(all_vars)
    prog = Program()
    prog.add_function("main", func)
    return prog, outputs


def run_cases(cases: Sequence[Case], tmp_dir: Path, target: str = "iOS16") -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """{case id: (executor outputs, torch outputs)} for every case, through a saved .mlpackage."""
    prog, outputs = build_program(cases, target)
    path = save_program(prog, Path(tmp_dir) / "cases.mlpackage", target)
    ex = ReferenceExecutor(path)
    feeds = {f"{c.id}__in{j}": arr for c in cases for j, arr in enumerate(c.inputs)}
    got = ex.predict(feeds)
    result = {}
    for c in cases:
        ins = [torch.from_numpy(fp16_round(a) if c.fp16 and a.dtype.kind == "f" else a) for a in c.inputs]
        with torch.no_grad():
            exp = c.expected(*ins)
        exp = list(exp) if isinstance(exp, (list, tuple)) else [exp]
        exp = [e.numpy() if isinstance(e, torch.Tensor) else np.asarray(e) for e in exp]
        if c.fp16:
            exp = [fp16_round(e) if e.dtype.kind == "f" else e for e in exp]
        result[c.id] = ([got[n] for n in outputs[c.id]], exp)
    return result


def fp16_round(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float32)


def assert_case(results: dict, case: Case) -> None:
    got, exp = results[case.id]
    assert len(got) == len(exp), f"{case.id}: {len(got)} outputs, torch has {len(exp)}"
    for g, e in zip(got, exp):
        assert g.shape == e.shape, f"{case.id}: shape {g.shape} != torch {e.shape}"
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(g, e, err_msg=case.id)
        else:
            np.testing.assert_allclose(g, e, atol=case.atol, rtol=1e-4, err_msg=case.id)


def case_ids(cases: Sequence[Case]) -> list[str]:
    return [c.id for c in cases]


# ------------------------------------------------------------------------------- converted models
def export_coreml(model: torch.nn.Module, out_dir: Path, precision: str = "fp32", image_input: bool = False,
                  img_size: int | None = None) -> Path:
    """The toolkit's own Core ML export of ``model`` (no parity check)."""
    import edgevit_deploy
    from edgevit_deploy.converters.base import ExportOptions, Precision

    res = edgevit_deploy.export(model, "coreml", out_dir, options=ExportOptions(
        precision=Precision(precision), image_input=image_input), img_size=img_size, verify=False)
    art = res.artifacts[0]
    assert art.path is not None, f"Core ML export failed: {art.error}"
    return Path(art.path)


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).float().numpy()
