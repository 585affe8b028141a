"""LiteRT's ``benchmark_model`` on an Android device (tflite artifacts).

``job.profile`` turns on ``--enable_op_profiling``: the row's ``op_profile`` is the regular runs' per-node
table (``parsers.litert.op_profile``). The delegate's "Replacing N out of M node(s)" line becomes the row's
``delegate_coverage`` whether or not it profiles.

Delegates: ``cpu`` / ``xnnpack`` (XNNPACK, the LiteRT CPU default), ``cpu-builtin`` (the reference
kernels, ``--use_xnnpack=false``), ``gpu`` (``--use_gpu=true``), ``nnapi`` (``--use_nnapi=true``).

On-device parity (runner config ``outputs``, default on): the run is fed the first of the fixed parity inputs
the app path uses (raw little-endian float32 in the artifact's input layout, NHWC if the artifact is NHWC)
and dumps its output tensors; the row's ``parity`` is THE validator's report on them against PyTorch, as for
app rows. The flags, as ``tensorflow/lite/tools/benchmark/benchmark_tflite_model.cc`` (tensorflow/tensorflow)
defines them: ``--input_layer`` (comma-separated input names), ``--input_layer_shape`` (comma-separated dims,
':' between inputs), ``--input_layer_value_files`` (``name:path`` items, ``::`` escapes a ':' in a name; the
file holds exactly the tensor's bytes; the name must be in ``--input_layer``) and ``--output_filepath`` (the
OutputSaver listener writes every output tensor's raw bytes, in output order, when the benchmark ends).
``--input_layer_value_files`` is already in the 2020 source (commit 010f3edc, the one with ``allow_fp16``);
``--output_filepath`` is not there and only in the current source (the one with ``tensorflow/lite/core/``
includes and the OutputSaver), so older prebuilt binaries lack it. Such builds warn "Unconsumed cmdline
flags: --output_filepath=.." and measure anyway (``tools/benchmark/benchmark_model.cc``, ParseFlags): the
row keeps that run and its parity says "not available: benchmark_model has no --output_filepath"; a build
that stops on the flags is run again without them; one that writes no file gets the same parity.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..parsers import ParsedRun, litert
from ..types import BenchJob, ShellResult, Transport
from .android_tool import AndroidToolRunner

log = logging.getLogger(__name__)

DELEGATE_FLAGS: dict[str, list[str]] = {
    "cpu": ["--use_xnnpack=true"],
    "xnnpack": ["--use_xnnpack=true"],
    "cpu-builtin": ["--use_xnnpack=false"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}
NO_OUTPUT_FLAG = "not available: benchmark_model has no --output_filepath"
INPUT_FILE = "parity_input.bin"
OUTPUT_FILE = "parity_output.bin"
# how benchmark_model builds answer flags they do not know (util::Flags: "Unconsumed cmdline flags", and
# "unknown flag" / "Unknown command line flag" of other parsers), naming the flag
_REJECTED = re.compile(
    r"(unconsumed cmdline flags|unknown (?:command line )?flag|unrecognized (?:arguments|option))"
    r"[^\n]*(--output_filepath|--input_layer)",
    re.IGNORECASE,
)


@dataclass
class OutputCheck:
    """What one run's output check needs: the device paths, the input layout, PyTorch's outputs."""

    input_name: str
    input_shape: list[int]
    remote_input: str
    remote_output: str
    reference: np.ndarray  # PyTorch's outputs on the fed input, (1, ...)
    output_shape: list[int]
    precision: str
    delegate: str


class LiteRtBenchmarkRunner(AndroidToolRunner):
    name = "benchmark_model"
    tool = "benchmark_model"
    delegates: ClassVar[dict[str, str]] = {k: " ".join(v) for k, v in DELEGATE_FLAGS.items()}

    def command(self, job: BenchJob, tool_path: str, model_path: str, scratch: str) -> list[str]:
        return [
            tool_path,
            f"--graph={model_path}",
            f"--num_threads={job.threads}",
            f"--num_runs={job.iterations}",
            f"--warmup_runs={job.warmup}",
            f"--enable_op_profiling={'true' if job.profile else 'false'}",
            "--report_peak_memory_footprint=true",
            *DELEGATE_FLAGS[job.delegate],
        ]

    def parse(self, transport: Transport, result: ShellResult, model_path: str, scratch: str) -> ParsedRun:
        return litert.parse(result.stdout + ("\n" + result.stderr if result.stderr else ""))

    # on-device parity ---------------------------------------------------------------------------
    def prepare_outputs(
        self, transport: Transport, job: BenchJob, artifact: Any, scratch: str, notes: list[str]
    ) -> OutputCheck | None:
        if not self.config.outputs:
            return None
        try:
            check, data = _output_check(Path(artifact.path), job, self.config, scratch)
        except Exception as exc:  # no reference: the row is still measured, its parity says why
            notes.append(f"on-device parity not checked: {type(exc).__name__}: {exc}")
            return None
        from .. import shell

        with tempfile.TemporaryDirectory(prefix="edgevit-bm-") as tmp:
            local = Path(tmp) / INPUT_FILE
            local.write_bytes(data)
            transport.push(local, check.remote_input)
        # the scratch folder is per artifact: never read the outputs an earlier row left there
        transport.shell(f"rm -f {shell.quote(check.remote_output)}", timeout=60)
        return check

    def output_flags(self, state: OutputCheck) -> list[str]:
        name = state.input_name.replace(":", "::")  # the tool's escape for ':' in a layer name
        return [
            f"--input_layer={state.input_name}",
            f"--input_layer_shape={','.join(str(d) for d in state.input_shape)}",
            f"--input_layer_value_files={name}:{state.remote_input}",
            f"--output_filepath={state.remote_output}",
        ]

    def rejects_output_flags(self, state: OutputCheck, result: ShellResult) -> bool:
        return _REJECTED.search(result.stdout + "\n" + result.stderr) is not None

    def outputs_unavailable(self, state: OutputCheck) -> dict[str, Any]:
        from ...verify.report import ParityReport

        return {"parity": ParityReport.not_executed(NO_OUTPUT_FLAG, executor=_executor(state)).to_dict()}

    def check_outputs(self, transport: Transport, state: OutputCheck, notes: list[str]) -> dict[str, Any]:
        from ...verify.report import Thresholds
        from ...verify.validator import validate_outputs

        with tempfile.TemporaryDirectory(prefix="edgevit-bm-") as tmp:
            local = Path(tmp) / OUTPUT_FILE
            try:
                transport.pull(state.remote_output, local)
            except FileNotFoundError:  # a build that ignores the flag writes nothing
                return self.outputs_unavailable(state)
            raw = local.read_bytes()
        expected = int(np.prod(state.output_shape)) * 4
        if len(raw) != expected:
            reason = (
                f"benchmark_model wrote {len(raw)} output bytes, expected {expected} (float32 {state.output_shape})"
            )
            from ...verify.report import ParityReport

            notes.append(f"on-device parity not checked: {reason}")
            return {"parity": ParityReport.not_executed(reason, executor=_executor(state)).to_dict()}
        candidate = np.frombuffer(raw, dtype="<f4").reshape(state.output_shape)
        parity = validate_outputs(
            state.reference, candidate, Thresholds.for_precision(state.precision), executor=_executor(state)
        )
        if not parity.passed:
            notes.append(f"on-device outputs differ from PyTorch: {parity.reason}")
        return {"parity": parity.to_dict()}


def _executor(state: OutputCheck) -> str:
    return f"on-device benchmark_model (LiteRT, {state.delegate})"


_REFERENCES: dict[tuple[str, ...], tuple[dict[str, Any], np.ndarray, bytes]] = {}


def _output_check(artifact: Path, job: BenchJob, config: Any, scratch: str) -> tuple[OutputCheck, bytes]:
    """The check's state and the input file's bytes: the first fixed parity input in the artifact's layout.

    Built once per artifact (its rows run back to back) and under the app runner's lock: model construction
    draws from torch's global RNG, and device threads run in parallel."""
    from ..artifacts import sha256_of
    from .app import _REFERENCE_LOCK

    key = (str(artifact), sha256_of(artifact), job.model, str(job.img_size), str(config.checkpoint))
    with _REFERENCE_LOCK:
        if key not in _REFERENCES:
            _REFERENCES.clear()
            _REFERENCES[key] = _build_check(artifact, job, config)
        io, reference, data = _REFERENCES[key]
    check = OutputCheck(
        input_name=io["input_name"],
        input_shape=io["input_shape"],
        remote_input=f"{scratch}/{INPUT_FILE}",
        remote_output=f"{scratch}/{OUTPUT_FILE}",
        reference=reference,
        output_shape=io["output_shape"],
        precision=job.precision,
        delegate=job.delegate,
    )
    return check, data


def _build_check(artifact: Path, job: BenchJob, config: Any) -> tuple[dict[str, Any], np.ndarray, bytes]:
    from ..._lazy import require
    from ...converters._quiet import native_output_to_log
    from ...verify.artifact import model_for_artifact, read_artifact
    from ...verify.inputs import parity_inputs
    from ...verify.parity import reference_outputs

    with native_output_to_log():  # absl's banner: the library logs, the CLI prints
        interp = require("ai_edge_litert.interpreter", "tflite").Interpreter(model_path=str(artifact))
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; the check needs 1 and 1")
    if inputs[0]["dtype"] != np.float32 or outputs[0]["dtype"] != np.float32:
        raise ValueError("the model's input or output is not float32 (the check feeds and reads float32)")
    parsed = read_artifact(artifact)[3]
    model = model_for_artifact(job.model, parsed, config.checkpoint, job.img_size)
    model.eval()
    x = parity_inputs(model.deploy_cfg)[:1]
    reference = reference_outputs(model, x)
    if parsed is not None and parsed.layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    shape = [int(d) for d in inputs[0]["shape"]]
    if list(x.shape) != shape:
        raise ValueError(f"the model's input shape {shape} is not the parity input's {list(x.shape)}")
    out_shape = [int(d) for d in outputs[0]["shape"]]
    io = {"input_name": str(inputs[0]["name"]), "input_shape": shape, "output_shape": out_shape}
    return io, reference.reshape(out_shape), np.ascontiguousarray(x, dtype="<f4").tobytes()
