"""ExecuTorch (``.pte``): the table row, fp32 export + parity in the Python runtime, the metadata sidecar,
``edgevit-verify`` on a ``.pte``, a tampered program failing parity, threads honoured, ``--et-backend``
validated by the table. EdgeViT-XXS at 64 px; one fp32 export per module (lowering takes ~40 s)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import edgevit_deploy
from edgevit_deploy.converters.base import EtBackend, ExportOptions, Precision, Target
from edgevit_deploy.converters.executorch import SHA_KEY, read_metadata, sidecar_path
from edgevit_deploy.converters.table import backend_names, get_spec, target_names
from edgevit_deploy.errors import UnsupportedOptionError
from edgevit_deploy.models import create_model
from edgevit_deploy.verify.artifact import verify_artifact

SIZE = 64


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    out = tmp_path_factory.mktemp("et")
    result = edgevit_deploy.export("edgevit_xxs", "executorch", out, img_size=SIZE)
    (art,) = result.artifacts
    return result, art


def test_fp32_export_passes_parity_in_the_executorch_runtime(fp32):
    result, art = fp32
    assert art.error is None and art.path.suffix == ".pte" and art.path.is_file()
    assert art.parity.executed, art.parity.reason
    assert art.parity.passed, art.parity.failures
    assert art.parity.executor.startswith("ExecuTorch ")
    assert art.parity.max_abs is not None and art.parity.max_abs < 1e-3
    # ops outside the XNNPACK delegate are reported by name, in the report and the sidecar alike
    outside = art.notes["non_delegated_ops"]
    assert art.notes["backend"] == "xnnpack"
    # the executorch formulation keeps the authors' pooling / transposed conv: no strided slice left outside;
    # LayerNorm and the attention are rewritten into delegated forms, the head pools with a keepdim spatial
    # mean: the whole graph is in the delegate
    assert "avgpool_k1_to_slice" not in art.formulation
    assert outside == {}
    d = json.loads((result.out_dir / "report.json").read_text())
    assert d["artifacts"][0]["notes"]["non_delegated_ops"] == outside


def test_sidecar_carries_the_metadata_and_matches_its_program(fp32):
    _, art = fp32
    side = sidecar_path(art.path)
    assert side.name == art.path.name + ".json" and side.is_file()
    meta = read_metadata(art.path)
    assert meta["edgevit_deploy.model"] == "edgevit_xxs"
    assert meta["edgevit_deploy.input_shape"] == f"1,3,{SIZE},{SIZE}"
    assert meta["edgevit_deploy.precision"] == "fp32"
    assert meta["edgevit_deploy.et_backend"] == "xnnpack"
    assert not list(art.path.parent.glob("*.tmp")), "temporary files left behind"


def test_stale_sidecar_is_ignored(fp32, tmp_path):
    _, art = fp32
    pte = tmp_path / art.path.name
    shutil.copy(art.path, pte)
    meta = json.loads(sidecar_path(art.path).read_text())
    meta[SHA_KEY] = "0" * 64
    sidecar_path(pte).write_text(json.dumps(meta))
    assert read_metadata(pte) == {}


def test_verify_cli_on_pte(fp32):
    from edgevit_deploy.cli.verify_cmd import main

    _, art = fp32
    res = CliRunner().invoke(main, [str(art.path), "--model", "edgevit_xxs", "--json", "--require-execution"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)["artifacts"][0]
    assert row["target"] == "executorch" and row["parity"]["passed"] and row["parity"]["executed"]


def test_a_sidecar_claiming_int8_cannot_relax_the_bar(fp32, tmp_path):
    """The sidecar is a plain JSON file beside the program: relabelling a float program int8 (sha256 kept valid)
    is caught by the weight size (float32-sized weights), the report fails, and the bars stay float."""
    _, art = fp32
    pte = tmp_path / art.path.name
    shutil.copy(art.path, pte)
    meta = json.loads(sidecar_path(art.path).read_text())
    meta["edgevit_deploy.precision"] = "int8"
    sidecar_path(pte).write_text(json.dumps(meta))
    v = verify_artifact(pte, "edgevit_xxs")
    assert v.precision == "fp32" and not v.parity.passed
    assert any("int8 claimed" in f and "float32 weights" in f for f in v.parity.failures), v.parity.failures
    ok = verify_artifact(pte, "edgevit_xxs", allow_metadata_mismatch=True)  # accepted when overridden, still listed
    assert ok.parity.metadata_mismatch


def test_pte_without_sidecar_verifies_with_img_size(fp32, tmp_path):
    _, art = fp32
    pte = tmp_path / "bare.pte"
    shutil.copy(art.path, pte)
    v = verify_artifact(pte, "edgevit_xxs", img_size=SIZE)
    assert v.metadata == {} and v.parity.executed and v.parity.passed, v.parity.failures


def test_tampered_weights_fail_parity(fp32, tmp_path):
    """The classifier's weights are found in the program and negated: the program still loads and runs,
    and parity fails (executed, not skipped)."""
    _, art = fp32
    torch.manual_seed(0)
    head = create_model("edgevit_xxs", img_size=SIZE).head.weight.detach().numpy().astype(np.float32)
    data = bytearray(art.path.read_bytes())
    raw = head.tobytes()
    at = data.find(raw[:256])
    assert at >= 0, "the classifier weights are not stored raw in the program"
    data[at : at + len(raw)] = (-head).tobytes()
    pte = tmp_path / art.path.name
    pte.write_bytes(bytes(data))
    v = verify_artifact(pte, "edgevit_xxs", img_size=SIZE)
    assert v.parity.executed and not v.parity.passed


def test_threads_size_the_xnnpack_threadpool(fp32):
    from executorch.extension.pybindings import portable_lib

    _, art = fp32
    host = get_spec("executorch").load_host_runtime()
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    for threads in (2, 1):
        session = host.load(art.path, threads=threads)
        assert portable_lib._threadpool_get_thread_count() == threads
        assert session.run(x).shape == (1, 1000)


def test_table_row_and_cli_choices_include_executorch():
    from edgevit_deploy.cli.export_cmd import main

    spec = get_spec("executorch")
    assert spec.target is Target.EXECUTORCH and spec.suffix == ".pte"
    assert "executorch" in target_names() and set(backend_names()) == {"xnnpack", "portable", "coreml"}
    res = CliRunner().invoke(main, ["--help"])
    assert "executorch" in res.output and "--et-backend" in res.output


@pytest.mark.parametrize("target", ["onnx", "tflite", "coreml"])
def test_et_backend_is_rejected_by_other_targets(target):
    with pytest.raises(UnsupportedOptionError, match="--et-backend portable"):
        get_spec(target).validate(ExportOptions(et_backend=EtBackend.PORTABLE))
    get_spec("executorch").validate(ExportOptions(et_backend=EtBackend.PORTABLE))  # its own option


def test_et_backend_on_another_target_exits_2_with_one_line(tmp_path):
    from edgevit_deploy.cli.export_cmd import main

    res = CliRunner().invoke(main, ["-m", "edgevit_xxs", "-t", "onnx", "--et-backend", "portable", "-o", str(tmp_path)])
    assert res.exit_code == 2
    assert "--et-backend portable" in res.output and "Traceback" not in res.output


def test_int8_needs_the_xnnpack_backend():
    from edgevit_deploy.converters.base import QuantMode

    with pytest.raises(UnsupportedOptionError, match="int8 needs --et-backend xnnpack"):
        get_spec("executorch").validate(ExportOptions(quantize=QuantMode.INT8, et_backend=EtBackend.PORTABLE))


def test_portable_program_runs_without_a_delegate(tmp_path):
    """No delegate: every op in the portable kernels (a small conv net: the path is the same for any model);
    the variant name says so."""
    from edgevit_deploy.converters.executorch import ExecutorchConverter
    from edgevit_deploy.export_api import build_metadata
    from edgevit_deploy.models import ModelConfig
    from edgevit_deploy.verify.runtimes import et_delegates

    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    opts = ExportOptions(et_backend=EtBackend.PORTABLE)
    assert opts.variant == "default-portable"
    cfg = ModelConfig(name="tiny", family="user", labels=None, input_size=(3, 16, 16), num_classes=10)
    path = tmp_path / "p.pte"
    conv = ExecutorchConverter()
    conv.convert(m, x[:1], path, opts, build_metadata("tiny", cfg, "x", opts, "fp32"))
    assert et_delegates(path) == set() and conv.notes == {"backend": "portable", "non_delegated_ops": {}}
    y = get_spec("executorch").load_host_runtime().load(path).run(x.numpy())  # batch 2 through a batch-1 program
    with torch.no_grad():
        assert y.shape == (2, 10) and np.abs(y - m(x).numpy()).max() < 1e-5


def test_executorch_formulation_is_exact_and_keeps_the_authors_sampler():
    from edgevit_deploy.formulations import apply_formulations
    from edgevit_deploy.formulations.rewrites import DepthwiseUpsampleConv

    m = create_model("edgevit_xxs", img_size=SIZE)
    rewritten, counts = apply_formulations(m, get_spec("executorch").formulation)
    assert counts.get("drop_path_off", 0) > 0 and "depthwise_convtranspose_to_upsample" not in counts
    # the attention is rewritten (3-D bmm) around the authors' sampler; its transposed conv is a broadcast product
    attn = rewritten.blocks1[0].SelfAttn.attn.attn
    assert isinstance(attn.sampler, torch.nn.AvgPool2d) and isinstance(attn.LocalProp, DepthwiseUpsampleConv)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), m(x), rtol=1e-5, atol=1e-5)


def test_host_worker_times_a_pte(fp32):
    """What ``edgevit-bench sweep --device local --targets executorch`` runs in its clean worker process."""
    from edgevit_deploy.device_bench.host_worker import measure

    _, art = fp32
    r = measure("executorch", art.path, (1, 3, SIZE, SIZE), threads=1, warmup=1, iterations=3)
    assert r["ok"] and r["executor"].startswith("ExecuTorch") and len(r["latencies_ms"]) == 3
    assert all(ms > 0 for ms in r["latencies_ms"])


def test_fp16_program_runs_in_half_and_passes_the_fp16_bars(tmp_path):
    """XNNPACK's fp16 kernels: the program takes a half input (the host session feeds it) and its logits stay
    within the fp16 bars; before the formulation kept LayerNorm / the attention in the delegate they were
    non-finite on this x86 host (docs/executorch.md)."""
    from executorch.runtime import Runtime

    assert "fp16" in [str(p) for p in get_spec("executorch").precisions]
    options = ExportOptions(precision=Precision.FP16)
    result = edgevit_deploy.export("edgevit_xxs", "executorch", tmp_path, options=options, img_size=SIZE)
    (art,) = result.artifacts
    assert art.error is None and art.parity.executed and art.parity.passed, art.parity.failures
    assert art.parity.cosine > 0.999 and np.isfinite(art.parity.max_abs)
    assert read_metadata(art.path)["edgevit_deploy.precision"] == "fp16"
    meta = Runtime.get().load_program(art.path).metadata("forward").input_tensor_meta(0)
    assert int(meta.dtype()) == 5  # ScalarType Half
    assert art.path.stat().st_size < 0.7 * 16.3e6  # half weights (the fp32 program: 16.4 MB; this one 10.1 MB)
    assert art.notes["non_delegated_ops"].get("aten.native_layer_norm.default") is None


def test_ops_outside_the_delegate_have_readable_names():
    """An aten ``OpOverload`` left in the edge graph as is (``scalar_tensor``, from ``tril``'s decomposition, as in
    VCMamba's scan mask) was listed as ``<built-in method  of pybind11_builtins...>``: its ``_op`` is the
    nameless pybind11 builtin."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.dialects._ops import ops as exir_ops

    from edgevit_deploy.converters.executorch import _op_name, non_delegated_ops

    assert _op_name(torch.ops.aten.scalar_tensor.default) == "aten.scalar_tensor.default"
    assert _op_name(exir_ops.edge.aten.mean.dim) == "aten.mean.dim"

    class Tril(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.tril()

    program = torch.export.export(Tril().eval(), (torch.randn(2, 8, 8),))
    outside = non_delegated_ops(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]))
    assert "aten.scalar_tensor.default" in outside
    assert all(name.count(".") >= 2 and "<" not in name and " " not in name for name in outside), outside
