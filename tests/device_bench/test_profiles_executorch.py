"""Per-op profiles of ``.pte`` programs from ETDump (``device_bench/profiles_executorch.py``): a tiny model
with a delegated part (conv + permute -> XNNPACK) and ops outside the delegate (LayerNorm, cumsum), profiled in
ExecuTorch's Python runtime, with and without its ETRecord, and a program without a delegate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgevit_deploy.converters.base import EtBackend
from edgevit_deploy.converters.executorch import etrecord_path, lower_to_pte
from edgevit_deploy.device_bench.profiles_executorch import op_profile_from_etdump, profile_program

KEYS = {"node", "op", "ms", "count", "pct"}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.norm = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).relu().permute(0, 2, 3, 1)
        # LayerNorm and cumsum stay in the portable kernels (the converter delegates any mean)
        return self.norm(y).cumsum(1).mean(dim=(1, 2))


def _export(tmp_path, backend: EtBackend, etrecord: bool):
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(1, 3, 32, 32)
    program = torch.export.export(model, (x,))
    path = tmp_path / f"tiny-{backend}.pte"
    outside = lower_to_pte(program, path, backend, {}, etrecord=etrecord)
    return path, outside


@pytest.fixture(scope="module")
def xnnpack(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("prof"), EtBackend.XNNPACK, etrecord=True)


def _check_shape(rows):
    assert rows, "no rows"
    for r in rows:
        assert set(r) == KEYS
        assert isinstance(r["node"], str) and isinstance(r["op"], str) and r["op"]
        assert isinstance(r["count"], int) and r["count"] >= 1
        assert r["ms"] >= 0 and math.isfinite(r["ms"])
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)
    assert sum(r["pct"] for r in rows) == pytest.approx(100.0, abs=1e-6)
    assert sum(r["ms"] for r in rows) > 0


def test_etrecord_is_written_beside_the_program(xnnpack):
    path, outside = xnnpack
    assert etrecord_path(path).is_file() and etrecord_path(path).name == path.name + ".etrecord"
    assert outside == {"aten.native_layer_norm.default": 1, "aten.cumsum.default": 1}
    assert not list(path.parent.glob("*.tmp*")), "temporary files left behind"


def test_profile_names_aten_ops_and_the_xnnpack_operators(xnnpack, tmp_path):
    path, outside = xnnpack
    dump = tmp_path / "run.etdp"
    rows = profile_program(path, iterations=5, warmup=2, etdump_out=dump)  # finds NAME.pte.etrecord itself
    _check_shape(rows)
    assert dump.is_file() and dump.stat().st_size > 0
    ops = {r["op"] for r in rows}
    # the two ops left outside the delegate, by their aten names, each timed
    for op in outside:
        (row,) = [r for r in rows if r["op"] == op]
        assert row["ms"] > 0 and row["node"].startswith("aten_")
    # XNNPACK exposes its own per-operator events: the convolution is one of them, plus the call's remainder
    conv = [r for r in rows if r["op"].startswith("XNNPACK:Convolution")]
    assert conv and conv[0]["node"].endswith("#1")
    assert "XNNPACK delegate" in ops
    assert all(op.startswith(("aten.", "XNNPACK:")) or op == "XNNPACK delegate" for op in ops)
    # warm-up runs are left out: the same dump read with skip=0 includes the slow first execution
    with_first = op_profile_from_etdump(dump, etrecord_path(path), skip=0)
    assert sum(r["ms"] for r in with_first) > sum(r["ms"] for r in rows)


def test_group_by_op_sums_rows_of_one_op(xnnpack, tmp_path):
    path, _ = xnnpack
    dump = tmp_path / "run.etdp"
    rows = profile_program(path, iterations=3, warmup=1, etdump_out=dump)
    grouped = op_profile_from_etdump(dump, etrecord_path(path), skip=1, group_by_op=True)
    _check_shape(grouped)
    assert len({r["op"] for r in grouped}) == len(grouped) and all(r["node"] == "" for r in grouped)
    assert sum(r["count"] for r in grouped) == len(rows)
    assert sum(r["ms"] for r in grouped) == pytest.approx(sum(r["ms"] for r in rows), rel=1e-9)


def test_without_etrecord_rows_name_the_kernels(xnnpack, tmp_path):
    path, _ = xnnpack
    dump = tmp_path / "run.etdp"
    profile_program(path, iterations=2, warmup=1, etdump_out=dump)
    rows = op_profile_from_etdump(dump, None, skip=1)
    _check_shape(rows)
    ops = {r["op"] for r in rows}
    assert {"native_layer_norm.out", "cumsum.out"} <= ops
    assert not any(op.startswith("aten.") for op in ops)


def test_portable_program_has_one_row_per_op(tmp_path):
    path, outside = _export(tmp_path, EtBackend.PORTABLE, etrecord=True)
    assert outside == {}
    rows = profile_program(path, iterations=3, warmup=1)
    _check_shape(rows)
    ops = {r["op"] for r in rows}
    assert {"aten.convolution.default", "aten.native_layer_norm.default", "aten.cumsum.default"} <= ops
    assert not any("delegate" in op for op in ops)


def test_an_etdump_without_events_is_an_error(tmp_path, xnnpack):
    path, _ = xnnpack
    dump = tmp_path / "empty.etdp"
    # a program loaded with ETDump but never executed: only init events, no instruction
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path, enable_etdump=True, debug_buffer_size=0)
    program.load_method("forward")
    program.write_etdump_result_to_file(str(dump), str(tmp_path / "debug.bin"))
    with pytest.raises(ValueError, match="no executed instruction"):
        op_profile_from_etdump(dump, None)


def test_the_host_worker_profiles_a_pte_through_etdump(xnnpack):
    """`edgevit-bench run X.pte --profile` on the host: the worker's ExecuTorch hook fills the row's op table."""
    from edgevit_deploy.device_bench import host_worker

    pte, _ = xnnpack
    x = np.zeros((1, 3, 32, 32), np.float32)
    out = host_worker._executorch_profile(pte, x, threads=1, warmup=1, iterations=2)
    assert "op_profile" in out, out.get("notes")
    _check_shape(out["op_profile"])
    assert any("ETDump" in n for n in out["notes"])
