"""``--calib-method reconstruct`` (quantize/reconstruct.py) on a small seeded hybrid model (conv / BN residual
blocks, a token-MLP block with LayerNorm + GELU, a linear head; 32 px): batch norms are folded exactly, blocks
are found from the module tree, the learned integers are what the .onnx and the .tflite store, and the
reconstruction beats min/max rounding (nearest rounding, bias correction turned off) on onnx and on one PT2E
target (TFLite) by a stated margin.

Budget here (reduced; the full one is in benchmarks/quant_fidelity.py): 32 calibration images, 60 iterations
per block, batch 8.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions, QuantMode
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.errors import QuantizationError
from edgevit_deploy.models._config import ModelConfig
from edgevit_deploy.quantize.calibration import load_calibration
from edgevit_deploy.quantize.pipeline import check_request, run_quantizer
from edgevit_deploy.quantize.reconstruct import (
    ONNX_QMAX,
    ONNX_S8S8_QMAX,
    PT2E_QMAX,
    ReconstructBudget,
    channel_scale,
    find_blocks,
    fold_batchnorms,
    learned_integers,
    reconstruct,
)
from edgevit_deploy.verify.metrics import sqnr_db
from edgevit_deploy.verify.run import run_artifact

ITERS = 60
IMAGES = 32
# reconstruction must beat min/max rounding by this much (output SQNR on held-out photos, dB); measured here:
# see test_reconstruction_beats_minmax_rounding's message
MARGIN_DB = 0.5
CFG = ModelConfig(name="tiny_hybrid", family="test", input_size=(3, 32, 32), num_classes=10)


def _conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(cout))


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a, self.dw, self.b = _conv_bn(c, c), _conv_bn(c, c, groups=c), _conv_bn(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.b(torch.relu(self.dw(torch.relu(self.a(x))))))


class TokenMlp(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(c), nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.fc2(nn.functional.gelu(self.fc1(self.norm(t))))
        return t.transpose(1, 2).reshape(b, c, h, w)


class TinyHybrid(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16, 2), nn.ReLU())
        self.res1, self.res2 = Residual(16), Residual(16)
        self.down = nn.Sequential(*_conv_bn(16, 32, 2), nn.ReLU())
        self.mix = TokenMlp(32)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(self.down(self.res2(self.res1(self.stem(x)))))
        return self.head(x.mean((2, 3)))


@cache
def tiny() -> nn.Module:
    torch.manual_seed(0)
    m = TinyHybrid().eval()
    with torch.no_grad():  # batch norms with non-trivial statistics, so that folding them matters
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return m


@cache
def data():
    return load_calibration(CFG, None, IMAGES, 0)


@cache
def reconstructed(qmax: int):
    return reconstruct(tiny(), data()[0].data, qmax, ReconstructBudget(iters=ITERS, images=IMAGES))


def _meta() -> ArtifactMetadata:
    return ArtifactMetadata(
        model=CFG.name,
        input_shape=(1, *CFG.input_size),
        layout="NCHW",
        mean=CFG.mean,
        std=CFG.std,
        toolkit_version="test",
        checkpoint_sha256="random-init",
        precision="int8",
        num_classes=10,
    )


@cache
def artifact(target: str, method: str, out: str) -> Path:
    spec = get_spec(target)
    quant: dict = {"calib_method": method, "reconstruct_iters": ITERS}
    if method != "reconstruct":  # the baseline is plain nearest rounding: no bias correction either
        quant["bias_correction"] = False
    options = ExportOptions(quantize=QuantMode.INT8, precision=spec.default_precision, quant=quant)
    calib = data()[0]
    example = torch.from_numpy(calib.data[:1].copy())
    path = Path(out) / f"{target}-{method}{'.onnx' if target == 'onnx' else '.tflite'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = run_quantizer(spec, tiny(), example, path, options, _meta(), calib)
    if method == "reconstruct":
        rec = result.details["reconstruction"]
        assert rec["iters_per_block"] == ITERS and rec["folded_batchnorms"] == 8
    return result.path


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("reconstruct"))


def _sqnr(target: str, path: Path) -> float:
    held = data()[1].data
    with torch.no_grad():
        ref = tiny()(torch.from_numpy(held)).numpy()
    run = run_artifact(get_spec(target), path, held)
    assert run.ok, run.reason
    return sqnr_db(ref, run.outputs)


def test_batchnorms_fold_exactly_and_blocks_come_from_the_module_tree():
    import copy

    m = copy.deepcopy(tiny())
    x = torch.from_numpy(data()[1].data)
    with torch.no_grad():
        before = m(x)
        assert fold_batchnorms(m, x[:1]) == 8
        after = m(x)
    assert not any(isinstance(b, nn.BatchNorm2d) for b in m.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert find_blocks(m, x[:1]) == ["stem", "res1", "res2", "down", "mix", "head"]
    assert find_blocks(m, x[:1], max_layers=1) == [
        "stem",
        "res1.a",
        "res1.dw",
        "res1.b",
        "res2.a",
        "res2.dw",
        "res2.b",
        "down",
        "mix.fc1",
        "mix.fc2",
        "head",
    ]


@pytest.mark.parametrize("qmax", [PT2E_QMAX, ONNX_S8S8_QMAX])
def test_weights_are_written_on_the_grid_the_observers_compute(qmax):
    model, report = reconstructed(qmax)
    assert [b.name for b in report.blocks] == ["stem", "res1", "res2", "down", "mix", "head"]
    assert any(b.kept == "learned" for b in report.blocks)
    for b in report.blocks:  # the kept rounding never does worse than nearest rounding on the block
        assert min(b.mse_learned, b.mse_chosen_clip) <= b.mse_nearest * (1 + 1e-6)
    ints = learned_integers(model, qmax)
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            s = channel_scale(w, qmax)  # what a min/max per-channel observer computes from the written weights
            q = ints[name]
            assert np.abs(q).max() <= qmax and (np.abs(q).reshape(len(q), -1).max(1) == qmax).all()
            torch.testing.assert_close(w, torch.from_numpy(q).float() * s, rtol=0, atol=1e-6)
    # the rounding moved away from nearest rounding of the folded float weights somewhere
    ref = tiny()
    folded = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert set(folded) >= {"head", "mix.fc1"}
    w_ref = ref.head.weight.detach()
    nearest = torch.round(w_ref / channel_scale(w_ref, qmax)).int().numpy()
    assert (nearest != ints["head"]).any() or report.blocks[-1].kept == "nearest"


def _int8_onnx(path: Path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return [
        numpy_helper.to_array(t)
        for t in onnx.load(str(path)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2
    ]


def _int8_tflite(path: Path) -> list[np.ndarray]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    out = []
    for t in model.subgraphs[0].tensors:
        data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if t.type == schema.TensorType.INT8 and data is not None and len(t.shape) >= 2:
            out.append(np.frombuffer(bytes(bytearray(data)), np.int8).reshape(t.shape))
    return out


def _layouts(q: np.ndarray) -> list[np.ndarray]:
    """The learned integers (PyTorch layout) in the layouts a runtime may store them in."""
    if q.ndim == 2:
        return [q, q.T]
    return [q, q.transpose(0, 2, 3, 1), q.transpose(1, 2, 3, 0)]  # OIHW, OHWI, depthwise 1HWO


def _stored(q: np.ndarray, tensors: list[np.ndarray]) -> bool:
    return any(t.shape == v.shape and (t.astype(np.int32) == v).all() for v in _layouts(q) for t in tensors)


@pytest.mark.parametrize(
    ("target", "qmax", "read"), [("onnx", ONNX_QMAX, _int8_onnx), ("tflite", PT2E_QMAX, _int8_tflite)]
)
def test_the_learned_integers_are_what_the_artifact_stores(target, qmax, read, out):
    ints = learned_integers(reconstructed(qmax)[0], qmax)
    stored = read(artifact(target, "reconstruct", out))
    missing = [name for name, q in ints.items() if not _stored(q, stored)]
    assert not missing, f"{target}: learned integers not found for {missing} among {[t.shape for t in stored]}"
    # and the min/max artifact stores other integers (the test can fail)
    plain = read(artifact(target, "minmax", out))
    assert any(not _stored(q, plain) for q in ints.values())


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_reconstruction_beats_minmax_rounding(target, out):
    # reconstruction vs nearest rounding: the min/max baseline runs with bias correction turned off (static
    # int8 corrects the biases by default, which also recovers part of the rounding error)
    base = _sqnr(target, artifact(target, "minmax", out))
    rec = _sqnr(target, artifact(target, "reconstruct", out))
    assert rec >= base + MARGIN_DB, f"{target}: reconstruct {rec:.2f} dB vs minmax {base:.2f} dB"


def test_reconstruct_is_an_int8_method():
    spec = get_spec("tflite")
    bad = ExportOptions(quantize=QuantMode.INT8_DYNAMIC, quant={"calib_method": "reconstruct"})
    with pytest.raises(QuantizationError, match="reconstruct learns int8"):
        check_request(spec, bad, 8)
    with pytest.raises(QuantizationError, match="reconstruct_iters"):
        ExportOptions(quantize=QuantMode.INT8, quant={"calib_method": "reconstruct", "reconstruct_iters": 0})


# ------------------------------------------------------------------ PT2E analysis and float fallback (TFLite)
def _tflite_weights(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    out = []
    for t in model.subgraphs[0].tensors:
        data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if data is not None and len(t.shape) == 2:
            out.append((names[t.type], tuple(int(d) for d in t.shape)))
    return out


def test_an_excluded_module_stays_float_in_the_tflite(tmp_path):
    spec = get_spec("tflite")
    options = ExportOptions(quantize=QuantMode.INT8, precision=spec.default_precision, quant={"exclude": ("mix",)})
    check_request(spec, options, 8)  # tflite takes --exclude now
    calib = data()[0]
    result = run_quantizer(
        spec, tiny(), torch.from_numpy(calib.data[:1].copy()), tmp_path / "x.tflite", options, _meta(), calib
    )
    assert result.details["excluded_modules"] == ["mix"] and result.details["kept_in_float_layers"] == ["mix"]
    weights = _tflite_weights(result.path)
    assert ("FLOAT32", (64, 32)) in weights and ("FLOAT32", (32, 64)) in weights  # mix.fc1 / mix.fc2 in float
    assert ("INT8", (10, 32)) in weights  # the head stays int8
    assert not any(t == "INT8" and s in ((64, 32), (32, 64)) for t, s in weights)
    assert _sqnr("tflite", result.path) > 10


def test_pt2e_analysis_ranks_blocks_and_the_search_meets_a_target():
    from edgevit_deploy.converters.base import QuantSettings
    from edgevit_deploy.quantize.pt2e import litert_quantizer
    from edgevit_deploy.quantize.pt2e_analysis import float_plan

    calib = data()[0]
    example = torch.from_numpy(calib.data[:1].copy())
    make = lambda: litert_quantizer(False)
    plan = float_plan(tiny(), example, make, calib, QuantSettings(analyze=True))
    rows = plan.details["analysis"]["layers"]
    assert {r["layer"] for r in rows} == {"stem", "res1", "res2", "down", "mix", "head"} and not plan.float_modules
    assert [r["sqnr_db"] for r in rows] == sorted(r["sqnr_db"] for r in rows)
    assert abs(sum(r["macs_share"] for r in rows) - 1) < 1e-6 and all(r["island_cost"] > r["macs_share"] for r in rows)
    plain = float_plan(tiny(), example, make, calib, QuantSettings(target_sqnr=99.0, max_float_layers=1))
    start = plain.details["target_sqnr"]["steps"][0]["sqnr_db"]
    goal = start + 1.0
    found = float_plan(tiny(), example, make, calib, QuantSettings(target_sqnr=goal, max_float_layers=6))
    search = found.details["target_sqnr"]
    assert search["met"] and search["search_sqnr_db"] >= goal, search
    assert found.float_modules and found.float_modules == search["kept_in_float_layers"]
    # the first pick is the block with the best noise-share / island-cost ratio
    best = max(rows, key=lambda r: r["noise_share"] / (r["macs_share"] + 0.02))
    assert search["steps"][1]["picked"] == best["layer"]


def test_the_search_measures_against_the_float_model_and_floats_layers_with_their_uncorrected_bias(monkeypatch):
    """On a bias-corrected model the search's reference is the float model (not the corrected one: its biases
    are made for int8 weights) and a candidate's float layers have their bias from before the correction."""
    from types import SimpleNamespace

    from edgevit_deploy.quantize import pt2e_analysis
    from edgevit_deploy.quantize.bias_correction import bias_correct, uncorrected_biases

    calib = data()[0]
    x = calib.data[:4]
    model = tiny()
    corrected, _ = bias_correct(model, calib.data, 15)  # a coarse grid: large corrections
    seen: list[nn.Module] = []

    def calibrate(m, example, quantizer, data, fold_quantize=True):  # the float model, recorded
        seen.append(m)
        return m

    monkeypatch.setattr(pt2e_analysis, "calibrate_pt2e", calibrate)
    measure = pt2e_analysis._Measure(corrected, torch.from_numpy(x[:1].copy()), lambda: SimpleNamespace(), x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(measure.ref, want, rtol=1e-4, atol=1e-4)
    assert measure.sqnr(float_modules=["stem", "res1", "res2", "down", "mix", "head"]) > 80  # all float: fp32
    measure.sqnr(float_modules=["mix"])
    original = uncorrected_biases(corrected)["mix.fc1"]
    assert original is not None and not torch.equal(original, corrected.mix.fc1.bias)
    assert torch.equal(seen[-1].get_submodule("mix.fc1").bias, original)
    assert torch.equal(seen[-1].get_submodule("head").bias, corrected.head.bias)
    measure.sqnr(only=["mix"])  # the analysis: everything but `mix` is float
    assert torch.equal(seen[-1].get_submodule("mix.fc1").bias, corrected.mix.fc1.bias)
    assert not torch.equal(seen[-1].get_submodule("head").bias, corrected.head.bias)


def test_the_layers_the_search_keeps_in_float_lose_their_bias_correction(tmp_path):
    """``--target-sqnr`` runs after the bias correction: the layers it keeps in float must not keep biases
    corrected for a rounding they no longer get. The plan is quantized again as an exclusion."""
    spec = get_spec("tflite")
    calib = data()[0]
    example = torch.from_numpy(calib.data[:1].copy())
    options = ExportOptions(quantize=QuantMode.INT8, precision=spec.default_precision,
                            quant={"target_sqnr": 99.0, "max_float_layers": 2})
    result = run_quantizer(spec, tiny(), example, tmp_path / "x.tflite", options, _meta(), calib)
    details = result.details
    plan = details["kept_in_float_layers"]
    assert len(plan) == 2 and details["target_sqnr"]["kept_in_float_layers"] == plan
    assert details["bias_correction_redone_for_the_plan"] and details["excluded_modules"] == []
    skipped = details["bias_correction"]["skipped_layers"]
    floated = [n for n, m in tiny().named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               and any(n == p or n.startswith(p + ".") for p in plan)]
    assert floated and set(floated) <= set(skipped)
    assert _sqnr("tflite", result.path) > 10


def test_a_norm_act_layer_keeps_its_activation_when_folded():
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), BatchNormAct2d(8, act_layer=nn.ReLU6)).eval()
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
        m[1].bias.fill_(4.0)  # outputs above 6: the ReLU6 must still clip them
    x = torch.randn(2, 3, 8, 8) * 3
    with torch.no_grad():
        before = m(x)
        assert fold_batchnorms(m, x[:1]) == 1
        after = m(x)
    assert before.max() == 6.0
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
