"""Host runtimes behind one interface: load an artifact, run a float NCHW batch, get logits.

Every session takes the *normalised* NCHW float32 batch PyTorch takes, and returns ``(N, classes)``
float32 logits; layout changes (NHWC), int8 input/output quantization, image inputs (mean/std folded
into the model) and fixed batch sizes are handled inside the session, from the artifact itself.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .._lazy import require
from ..converters._quiet import native_output_to_log
from ..converters.table import COREML_EXECUTORS
from ..errors import RuntimeUnavailableError
from .contents import ArtifactContents, coreml_contents, executorch_contents, onnx_contents, tflite_contents


@runtime_checkable
class HostSession(Protocol):
    executor: str  # what runs it: "onnxruntime 1.x", "LiteRT 2.x", "coreml-native", "coreml-reference"

    def run(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class HostRuntime(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """None when artifacts can execute on this host; otherwise a plain sentence why not."""

    def load(self, path: Path, threads: int = 1, **options: str) -> HostSession: ...

    def inspect(self, path: Path) -> ArtifactContents:
        """Parse the whole artifact: the variants its contents are consistent with. Raises ArtifactReadError
        (bad input) for a missing, empty, truncated or foreign file."""


def _per_sample(run_one, x: np.ndarray, batch: int) -> np.ndarray:
    """Run a fixed-batch model over any batch size, ``batch`` samples at a time."""
    if x.shape[0] == batch:
        return run_one(x)
    if batch == 1:
        return np.concatenate([run_one(x[i : i + 1]) for i in range(x.shape[0])], axis=0)
    raise ValueError(f"the artifact has a fixed batch of {batch}; got {x.shape[0]} inputs")


# ----------------------------------------------------------------------------------------------- ONNX
def x86_without_vnni() -> bool:
    """An x86 CPU without VNNI (or one whose flags cannot be read): onnxruntime's u8s8 kernels there multiply
    with VPMADDUBSW, which saturates with 8-bit int8 weights (quantize/onnx.py, ``REDUCE_RANGE``)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: cannot tell, so the non-saturating kernels
    return not any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni"))


class _OnnxSession:
    def __init__(self, path: Path, threads: int):
        ort = require("onnxruntime", "onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if x86_without_vnni():  # onnxruntime's non-saturating int8 kernels (U8S8 int8 artifacts keep 8-bit weights)
            so.add_session_config_entry("session.x64quantprecision", "1")
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.executor = f"onnxruntime {ort.__version__}"

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        one = lambda b: self.sess.run(None, {self.input_name: b})[0]
        if self.batch is None:
            return np.asarray(one(x), dtype=np.float32)
        return np.asarray(_per_sample(one, x, self.batch), dtype=np.float32)


class _ImportableHost:
    """A host runtime that can run wherever its Python module imports."""

    name: str
    module: str
    extra: str

    def unavailable_reason(self) -> str | None:
        try:
            require(self.module, self.extra)
        except ImportError as exc:
            return str(exc)
        return None


class OnnxRuntimeHost(_ImportableHost):
    name, module, extra = "onnxruntime", "onnxruntime", "onnx"

    def load(self, path: Path, threads: int = 1, **options: str) -> HostSession:
        return _OnnxSession(Path(path), threads)

    def inspect(self, path: Path) -> ArtifactContents:
        return onnx_contents(Path(path))


# ---------------------------------------------------------------------------------------------- LiteRT
class _LiteRtSession:
    def __init__(self, path: Path, threads: int):
        with native_output_to_log():  # absl's banner, LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
            interp_mod = require("ai_edge_litert.interpreter", "tflite")
            self.interp = interp_mod.Interpreter(model_path=str(path), num_threads=threads)
            self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        shape = tuple(self.inp["shape"])
        self.nhwc = len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3)
        self.batch = int(shape[0])
        try:
            from ai_edge_litert import __version__ as v
        except ImportError:
            v = "?"
        self.executor = f"LiteRT {v}"

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        if self.nhwc:
            x = x.transpose(0, 2, 3, 1)
        dtype = self.inp["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self.inp["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interp.set_tensor(self.inp["index"], np.ascontiguousarray(x, dtype=dtype))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        return _per_sample(self._run_one, np.asarray(x, dtype=np.float32), self.batch)


class LiteRtHost(_ImportableHost):
    name, module, extra = "litert", "ai_edge_litert.interpreter", "tflite"

    def load(self, path: Path, threads: int = 1, **options: str) -> HostSession:
        return _LiteRtSession(Path(path), threads)

    def inspect(self, path: Path) -> ArtifactContents:
        return tflite_contents(Path(path))


# --------------------------------------------------------------------------------------------- Core ML
def coreml_native_available() -> bool:
    return platform.system() == "Darwin"


class CoremlHost(_ImportableHost):
    """``executor``: ``auto`` (native on macOS, else the reference ML Program executor), ``native``
    (macOS), ``reference`` (any OS), ``both`` (macOS: native numbers, checked against the reference).
    The session's ``executor`` attribute says which one produced the numbers."""

    name, module, extra = "coreml", "coremltools", "coreml"
    executors = COREML_EXECUTORS  # the target table's list (its coreml row)

    def load(self, path: Path, threads: int = 1, executor: str = "auto", **options: str) -> HostSession:
        from .coreml_session import CoremlBothSession, CoremlNativeSession, CoremlReferenceSession

        if executor not in self.executors:
            raise ValueError(f"unknown Core ML executor {executor!r}; choose one of {', '.join(self.executors)}")
        path = Path(path)
        if executor in ("native", "both") and not coreml_native_available():
            raise RuntimeUnavailableError(
                f"--coreml-executor {executor} needs macOS (MLModel.predict); on {platform.system()} use "
                "--coreml-executor reference (or auto)."
            )
        if executor == "both":
            return CoremlBothSession(path, threads)
        if executor == "native" or (executor == "auto" and coreml_native_available()):
            return CoremlNativeSession(path)
        return CoremlReferenceSession(path, threads)

    def inspect(self, path: Path) -> ArtifactContents:
        return coreml_contents(Path(path))


# ------------------------------------------------------------------------------------------- ExecuTorch
_ET_FLOAT_DTYPES = {6: np.float32, 5: np.float16}  # ExecuTorch ScalarType codes of the inputs we feed


def _et_set_threads(threads: int) -> int:
    """Size the process-wide threadpool (XNNPACK's delegate and the portable kernels use it) to ``threads``
    and return the size it reports back. ``_unsafe_reset_threadpool`` must not run while a method executes;
    the sessions here run one method at a time."""
    with native_output_to_log():  # cpuinfo's probe of /sys and the threadpool's "Resetting" line
        pl = require("executorch.extension.pybindings.portable_lib", "executorch")
        if pl._threadpool_get_thread_count() != threads:
            pl._unsafe_reset_threadpool(int(threads))
        return int(pl._threadpool_get_thread_count())


def et_delegates(path: Path) -> set[str]:
    """The backend ids of the delegates a ``.pte`` program calls (parsed from the program itself)."""
    ser = require("executorch.exir._serialize._program", "executorch")
    program = ser.deserialize_pte_binary(Path(path).read_bytes()).program
    return {d.id for plan in program.execution_plan for d in plan.delegates}


class _ExecuTorchSession:
    def __init__(self, path: Path, threads: int):
        with native_output_to_log():
            rt_mod = require("executorch.runtime", "executorch")
        import torch

        self._torch = torch
        runtime = rt_mod.Runtime.get()
        self.threads = _et_set_threads(threads)
        if self.threads != threads:
            raise RuntimeUnavailableError(f"ExecuTorch threadpool has {self.threads} threads, {threads} requested")
        try:
            program = runtime.load_program(Path(path))
            self.method = program.load_method("forward")
        except Exception as exc:
            try:
                missing = sorted(et_delegates(path) - set(runtime.backend_registry.registered_backend_names))
            except Exception:  # not even a parsable program: the load error is the failure
                missing = []
            if missing:
                raise RuntimeUnavailableError(
                    f"the program is delegated to {', '.join(missing)}, which this ExecuTorch runtime "
                    f"({platform.system()}) does not have; Core ML-delegated programs run on macOS / iOS"
                ) from exc
            raise
        meta = program.metadata("forward")
        info = meta.input_tensor_meta(0)
        self.batch = int(info.sizes()[0])
        self.dtype = _ET_FLOAT_DTYPES.get(int(info.dtype()), np.float32)
        from executorch.version import __version__ as v

        self.executor = f"ExecuTorch {v}"

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        t = self._torch.from_numpy(np.ascontiguousarray(x, dtype=self.dtype))
        y = self.method.execute([t])[0]
        return y.float().numpy().astype(np.float32, copy=False)

    def run(self, x: np.ndarray) -> np.ndarray:
        return _per_sample(self._run_one, np.asarray(x, dtype=np.float32), self.batch)


class ExecuTorchHost(_ImportableHost):
    """``.pte`` programs in ExecuTorch's Python runtime (``executorch.runtime``). ``threads`` sizes the
    threadpool the XNNPACK delegate runs on (checked after the reset). A program delegated to a backend this
    runtime lacks (Core ML off macOS) raises :class:`RuntimeUnavailableError`: "not executed" with the reason."""

    name, module, extra = "executorch", "executorch.runtime", "executorch"

    def load(self, path: Path, threads: int = 1, **options: str) -> HostSession:
        return _ExecuTorchSession(Path(path), threads)

    def inspect(self, path: Path) -> ArtifactContents:
        return executorch_contents(Path(path))
