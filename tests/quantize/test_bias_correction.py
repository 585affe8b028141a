"""Bias correction of int8 weight rounding (quantize/bias_correction.py) on a small seeded conv / BN /
depthwise / linear model at 16 px: the expected output shift of a layer's rounded weights is removed, the
correction is sequential and changes only biases (after folding), and ``run_quantizer`` applies it for static
int8, not when turned off and not for ``--calib-method reconstruct``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions, QuantMode
from edgevit_deploy.converters.table import TargetSpec, get_spec
from edgevit_deploy.errors import QuantizationError, UnsupportedOptionError
from edgevit_deploy.quantize.base import QuantResult
from edgevit_deploy.quantize.bias_correction import (
    bias_correct,
    output_shift,
    quantized_weight,
    uncorrected_biases,
    with_uncorrected_biases,
)
from edgevit_deploy.quantize.calibration import CalibrationSet
from edgevit_deploy.quantize.pipeline import check_request, run_quantizer
from edgevit_deploy.quantize.reconstruct import fold_batchnorms

QMAX = 15  # a coarse grid: the rounding shift is large, so an ineffective correction cannot pass by chance


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False)  # no bias: the correction creates one
        self.pw = nn.Conv2d(8, 16, 1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.pw(torch.relu(self.dw(self.stem(x)))))
        return self.head(x.mean((2, 3)))


def small() -> nn.Module:
    torch.manual_seed(0)
    m = Small().eval()
    with torch.no_grad():
        bn = m.stem[1]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(0.0, 0.5)
    return m


def images(n: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    return (g.standard_normal((n, 3, 16, 16)) * 0.8 + 0.3).astype(np.float32)


def _weights_quantized(model: nn.Module, qmax: int, skip: tuple[str, ...] = ()) -> nn.Module:
    """``model`` with its conv / linear weights rounded to the grid (but those of ``skip``)."""
    q = copy.deepcopy(model)
    with torch.no_grad():
        for name, m in q.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and name not in skip:
                m.weight.copy_(quantized_weight(m.weight, qmax))
    return q


def _folded(model: nn.Module) -> nn.Module:
    f = copy.deepcopy(model)
    fold_batchnorms(f, torch.from_numpy(images(1, 9)))
    return f


def test_one_layer_the_mean_output_error_of_its_rounded_weights_is_removed():
    torch.manual_seed(1)
    # a grouped 3x3 conv after a 1x1 one that stays float (excluded): only the second is corrected
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.Conv2d(4, 6, 3, 1, 1, groups=2)).eval()
    calib, held = images(32, 1), images(32, 2)
    corrected, report = bias_correct(model, calib, QMAX, exclude=("0",))
    assert report.corrected_layers == 1 and report.skipped_layers == ["0"]
    for data, tol in ((calib, 1e-5), (held, None)):
        x = torch.from_numpy(data)
        with torch.no_grad():
            ref = model(x)
            plain = _weights_quantized(model, QMAX, skip=("0",))(x)
            fixed = _weights_quantized(corrected, QMAX, skip=("0",))(x)
        # per output channel, the mean error (what the correction targets)
        before = (plain - ref).mean((0, 2, 3)).abs()
        after = (fixed - ref).mean((0, 2, 3)).abs()
        assert before.max() > 1e-3  # the rounding does shift the outputs at this grid
        if tol is not None:  # on the calibration images, exactly removed
            assert after.max() < tol * max(1.0, float(ref.abs().max()))
        else:  # on other images, reduced
            assert after.mean() < 0.5 * before.mean()
        assert float(((fixed - ref) ** 2).mean()) < float(((plain - ref) ** 2).mean())


def test_output_shift_is_the_mean_of_the_rounding_error_through_the_layer():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, 2, 1)
    x = torch.randn(5, 3, 9, 9)
    delta = quantized_weight(conv.weight.detach(), 7) - conv.weight.detach()
    with torch.no_grad():
        want = (
            nn.functional.conv2d(x, conv.weight + delta, None, 2, 1) - nn.functional.conv2d(x, conv.weight, None, 2, 1)
        ).mean((0, 2, 3))
        torch.testing.assert_close(output_shift(conv, x, delta), want, rtol=1e-4, atol=1e-6)
        lin = nn.Linear(6, 3)
        t = torch.randn(4, 7, 6)
        d = quantized_weight(lin.weight.detach(), 7) - lin.weight.detach()
        torch.testing.assert_close(output_shift(lin, t, d), (t @ d.T).reshape(-1, 3).mean(0), rtol=1e-4, atol=1e-6)


def test_output_shift_keeps_the_padding_a_conv_subclass_does_in_forward():
    """timm's ``Conv2dSame`` (EfficientNet-Lite's strided 5x5 convs) pads in ``forward``: the shift is taken
    through it (a 4x4 map with a 5x5 kernel raised before; at 224 px the positions were silently other ones)."""
    from timm.layers import Conv2dSame

    torch.manual_seed(3)
    conv = Conv2dSame(3, 4, 5, stride=2, bias=True)
    x = torch.randn(2, 3, 4, 4)
    delta = quantized_weight(conv.weight.detach(), 7) - conv.weight.detach()
    with torch.no_grad():
        plus = Conv2dSame(3, 4, 5, stride=2, bias=True)
        plus.load_state_dict(conv.state_dict())
        plus.weight += delta
        want = (plus(x) - conv(x)).mean((0, 2, 3))
        torch.testing.assert_close(output_shift(conv, x, delta), want, rtol=1e-4, atol=1e-6)


def test_the_whole_model_only_biases_change_and_the_output_error_drops():
    model = small()
    calib, held = images(48, 3), torch.from_numpy(images(48, 4))
    corrected, report = bias_correct(model, calib, QMAX)
    assert report.applied and report.folded_batchnorms == 1
    assert report.corrected_layers == 4 and report.created_biases == 1  # dw had no bias
    assert isinstance(corrected.dw.bias, torch.Tensor) and model.dw.bias is None  # the input is not modified
    folded = _folded(model)
    for name in ("stem.0", "dw", "pw", "head"):  # the float weights are the folded ones: the target rounds them
        torch.testing.assert_close(corrected.get_submodule(name).weight, folded.get_submodule(name).weight)
    assert not torch.equal(corrected.pw.bias, folded.pw.bias)
    with torch.no_grad():
        ref = model(held)
        plain = _weights_quantized(folded, QMAX)(held)
        fixed = _weights_quantized(corrected, QMAX)(held)
    assert float(((fixed - ref) ** 2).mean()) < 0.7 * float(((plain - ref) ** 2).mean())


def test_the_correction_is_sequential_upstream_layers_already_rounded():
    """The pw layer's correction is measured on the input the rounded (and corrected) stem / dw give it:
    recomputing it on the float input gives another value."""
    model = small()
    calib = images(32, 5)
    corrected, _ = bias_correct(model, calib, QMAX)
    folded = _folded(model)
    x = torch.from_numpy(calib)
    sim = _weights_quantized(corrected, QMAX)
    with torch.no_grad():
        seq_in = torch.relu(sim.dw(sim.stem(x)))
        float_in = torch.relu(folded.dw(folded.stem(x)))
        w = folded.pw.weight
        delta = quantized_weight(w, QMAX) - w
        seq = folded.pw.bias - output_shift(folded.pw, seq_in, delta)
        flt = folded.pw.bias - output_shift(folded.pw, float_in, delta)
    torch.testing.assert_close(corrected.pw.bias, seq, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(corrected.pw.bias, flt, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------- the pipeline
def _meta() -> ArtifactMetadata:
    return ArtifactMetadata(
        model="small",
        input_shape=(1, 3, 16, 16),
        layout="NCHW",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        toolkit_version="test",
        checkpoint_sha256="random-init",
        precision="int8",
        num_classes=5,
    )


class _Capture:
    """A quantizer that keeps the model it is handed."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def quantize(self, model: nn.Module, example: Any, out_path: Path, *args: Any) -> QuantResult:
        self.model = model
        return QuantResult(Path(out_path), "int8", {})

    def activation_floor(self) -> None:
        return None


@pytest.fixture
def capture(monkeypatch) -> _Capture:
    cap = _Capture()
    monkeypatch.setattr(TargetSpec, "load_quantizer", lambda self: cap)
    return cap


def _run(target: str, quant: dict, model: nn.Module, tmp_path: Path, mode: QuantMode = QuantMode.INT8) -> dict:
    spec = get_spec(target)
    options = ExportOptions(quantize=mode, precision=spec.default_precision, quant=quant)
    calib = CalibrationSet(images(24, 6), "test")
    example = torch.from_numpy(calib.data[:1].copy())
    return run_quantizer(spec, model, example, tmp_path / "x", options, _meta(), calib).details


@pytest.mark.parametrize(("target", "activation_dtype", "qmax"), [("tflite", None, 127), ("onnx", "int8", 64)])
def test_static_int8_hands_the_quantizer_the_corrected_model(capture, tmp_path, target, activation_dtype, qmax):
    model = small()
    quant = {"activation_dtype": activation_dtype} if activation_dtype else {}
    details = _run(target, quant, model, tmp_path)
    bc = details["bias_correction"]
    assert bc["applied"] and bc["corrected_layers"] == 4 and bc["created_biases"] == 1
    assert bc["weight_grid"] == f"symmetric per-channel [-{qmax}, {qmax}]"  # the target's grid
    assert capture.model is not model
    want, _ = bias_correct(model, CalibrationSet(images(24, 6), "test").data, qmax)
    torch.testing.assert_close(capture.model.pw.bias, want.pw.bias)


def test_the_off_switch_hands_over_the_model_itself(capture, tmp_path):
    model = small()
    details = _run("executorch", {"bias_correction": False}, model, tmp_path)
    assert capture.model is model
    assert details["bias_correction"] == {"applied": False, "reason": "turned off (--no-bias-correction)"}


def test_reconstruct_skips_the_correction(capture, tmp_path):
    model = small()
    details = _run("tflite", {"calib_method": "reconstruct", "reconstruct_iters": 2}, model, tmp_path)
    assert details["bias_correction"]["applied"] is False
    assert "reconstruct" in details["bias_correction"]["reason"] and "reconstruction" in details
    assert capture.model is not None and capture.model.dw.bias is None  # folded and rounded, not corrected


def test_other_modes_are_not_corrected(capture, tmp_path):
    model = small()
    details = _run("tflite", {}, model, tmp_path, QuantMode.INT8_DYNAMIC)
    assert capture.model is model and "bias_correction" not in details


def test_excluded_modules_of_a_pt2e_target_are_left_alone():
    model = small()
    corrected, report = bias_correct(model, images(16, 7), 127, exclude=("head",))
    assert report.skipped_layers == ["head"] and report.corrected_layers == 3
    torch.testing.assert_close(corrected.head.bias, model.head.bias)


def test_the_setting_is_checked_and_the_cli_flag_maps_to_it():
    from edgevit_deploy.cli.export_cmd import quant_settings
    from edgevit_deploy.export_api import validate_request

    assert ExportOptions(quantize=QuantMode.INT8).quant.bias_correction is True  # on by default
    assert quant_settings(None, None, False, False, (), None, True) == {"bias_correction": False}
    assert "bias_correction" not in quant_settings(None, None, False, False, (), None, False)
    with pytest.raises(QuantizationError, match="static int8"):
        check_request(
            get_spec("tflite"), ExportOptions(quantize=QuantMode.INT8_DYNAMIC, quant={"bias_correction": False}), 8
        )
    with pytest.raises(UnsupportedOptionError, match="--no-bias-correction"):
        validate_request([get_spec("onnx")], ExportOptions(quant={"bias_correction": False}))


def test_a_corrected_model_gives_the_layers_kept_in_float_their_uncorrected_biases_back():
    """A layer kept in float has no rounding to correct: the search measures it with its bias from before the
    correction (folded), the others keep theirs; with every layer restored the model is the float model."""
    model = small()
    corrected, _ = bias_correct(model, images(16, 7), QMAX)
    folded = _folded(model)
    originals = uncorrected_biases(corrected)
    assert set(originals) == {"stem.0", "dw", "pw", "head"} and originals["dw"] is None  # dw had no bias
    assert uncorrected_biases(copy.deepcopy(corrected)).keys() == originals.keys()  # survives the copies made
    part = with_uncorrected_biases(corrected, ["pw", "dw"])
    assert part is not corrected
    torch.testing.assert_close(part.pw.bias, folded.pw.bias)
    assert torch.equal(part.dw.bias, torch.zeros(8))
    assert torch.equal(part.head.bias, corrected.head.bias) and torch.equal(part.stem[0].bias, corrected.stem[0].bias)
    assert not torch.equal(corrected.pw.bias, folded.pw.bias)  # the corrected model itself is untouched
    assert with_uncorrected_biases(corrected, ["no_such_module"]) is corrected
    assert with_uncorrected_biases(corrected, ["stem"]).stem[0].bias.equal(folded.stem[0].bias)  # inside a module
    x = torch.from_numpy(images(4, 5))
    with torch.no_grad():
        torch.testing.assert_close(with_uncorrected_biases(corrected, list(originals))(x), model(x))
    assert uncorrected_biases(model) == {}
