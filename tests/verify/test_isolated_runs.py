"""Checks that run a runtime in a child process (``TargetSpec.isolated_runs``, ExecuTorch's row): the same
outputs as in this process, and a native crash of the runtime is a failure that names the signal, not the end
of the export / verify process (XNNPACK-in-ExecuTorch 1.5.1 segfaults on vcmamba_s at 64 px)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.verify.run import run_artifact, run_in_child


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def pte(tmp_path_factory):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    model = _Tiny().eval()
    program = torch.export.export(model, (torch.zeros(1, 3, 16, 16),))
    et = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    path = tmp_path_factory.mktemp("iso") / "tiny.pte"
    path.write_bytes(et.buffer)
    return path


def test_the_executorch_row_runs_isolated_and_gives_the_in_process_outputs(pte):
    spec = get_spec("executorch")
    assert spec.isolated_runs  # checks of .pte files survive a crash of the runtime
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    here = run_artifact(spec, pte, x, isolate=False)
    child = run_artifact(spec, pte, x)  # the row's default: a child process
    assert here.ok and child.ok, (here.reason, child.reason)
    assert child.session is None and here.session is not None
    assert child.executor == here.executor and child.executor.startswith("ExecuTorch ")
    np.testing.assert_array_equal(child.outputs, here.outputs)


def test_a_file_the_runtime_rejects_is_a_failure_with_its_reason_from_the_child(tmp_path):
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program" * 10)
    out = run_artifact(get_spec("executorch"), bad, np.zeros((1, 3, 16, 16), np.float32))
    assert not out.ok and out.executed
    assert out.reason and "failed to run the artifact" in out.reason


def test_a_runtime_that_segfaults_is_a_failure_naming_the_signal(pte):
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    out = run_in_child("x:Y", "ExecuTorch", pte, np.zeros((1, 3, 16, 16), np.float32), 1, {}, command=crash)
    assert not out.ok and out.executed
    assert out.reason == "the ExecuTorch runtime crashed (SIGSEGV) running the artifact"


def test_a_child_that_dies_without_a_verdict_reports_its_last_error_line(pte):
    dies = [sys.executable, "-c", "import sys; print('first', file=sys.stderr); sys.exit('MemoryError: out of memory')"]
    out = run_in_child("x:Y", "LiteRT", pte, np.zeros((1, 3, 16, 16), np.float32), 1, {}, command=dies)
    assert not out.ok and out.executed
    assert out.reason == "the LiteRT runtime's process exited with code 1: MemoryError: out of memory"


def test_the_int8_latency_probe_runs_each_program_in_a_child_first(pte, tmp_path):
    """The fidelity report's latency timing loads both programs in this process: for an isolated target each
    one runs once in a child first, so a program that crashes the runtime is a reason, not a dead export."""
    from edgevit_deploy.quantize.fidelity import measure_latency

    bad = tmp_path / "float.pte"
    bad.write_bytes(b"\0" * 64)
    x = np.zeros((1, 3, 16, 16), np.float32)
    lat = measure_latency(get_spec("executorch"), bad, pte, x, runs=2, warmup=0)
    assert lat.quant_ms is None and lat.reason and lat.reason.startswith("float.pte: the runtime failed")
    ok = measure_latency(get_spec("executorch"), pte, pte, x, runs=2, warmup=0)
    assert ok.reason is None and ok.quant_ms is not None and ok.quant_ms > 0
