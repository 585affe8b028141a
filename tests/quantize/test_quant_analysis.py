"""The ONNX per-layer analysis on a small conv -> ReLU6 network: onnxruntime folds the ReLU6 into the
conv's quantization range, and the analysis must measure that tensor against the clipped value (else the
clipping itself would count as quantization noise and every ReLU6 would rank as the worst layer)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions
from edgevit_deploy.quantize import onnx as qonnx
from edgevit_deploy.quantize.base import QuantSettings
from edgevit_deploy.quantize.calibration import CalibrationSet
from edgevit_deploy.quantize.onnx_analysis import analyze


class _ConvReLU6(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.act = nn.ReLU6()
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x) * 4.0))  # * 4: most of the conv output lies beyond 6


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> dict:
    torch.manual_seed(0)
    work = tmp_path_factory.mktemp("analysis")
    model = _ConvReLU6().eval()
    data = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    meta = ArtifactMetadata(model="conv_relu6", input_shape=(1, 3, 16, 16), layout="NCHW", mean=(0.5,) * 3,
                            std=(0.5,) * 3, toolkit_version="test", checkpoint_sha256="random-init",
                            precision="fp32", num_classes=8)
    float_path = qonnx.preprocess(qonnx.export_float(model, torch.from_numpy(data[:1]), work / "f.onnx",
                                                     ExportOptions(), meta), work / "f_pre.onnx")
    sq = qonnx.StaticQuantizer(float_path, CalibrationSet(data, "test"), QuantSettings(), work)
    qdq = sq.quantize(work / "q.onnx", [])
    return analyze(Path(float_path), qdq, data, work)


def test_fused_relu6_is_measured_against_the_clipped_value(analysed):
    relu6 = [r for r in analysed["layers"] if r["kind"] == "relu6"]
    assert len(relu6) == 1 and relu6[0]["fused_activation"]
    assert relu6[0]["min"] >= 0.0 and relu6[0]["max"] <= 6.0
    assert relu6[0]["sqnr_db"] > 30.0, relu6[0]  # an 8-bit grid over [0, 6]; unclipped it would be ~0 dB
    assert analysed["layers"][0]["kind"] != "relu6"


def test_one_sided_zero_point_at_the_limit_is_not_flagged(analysed):
    relu6 = next(r for r in analysed["layers"] if r["kind"] == "relu6")
    lowest = {"int8": -128, "uint8": 0}[QuantSettings().activation_dtype]   # the default activation type's limit
    assert relu6["zero_point"] == lowest and not relu6["zero_point_at_limit"]
    assert analysed["summary"]["zero_point_at_limit"] == []


def test_weights_quantized_to_uint8_are_measured_without_wraparound(analysed):
    """U8U8 (the default) stores weights as uint8 around a zero point of 128: dequantizing in uint8 wraps
    around (onnxruntime's own weight matching does, -13 dB on every weight); each conv weight keeps > 30 dB."""
    weights = {w["weight"]: w for w in analysed["weights"]}
    assert "conv2.weight" in weights and any("conv1.weight" in name for name in weights), sorted(weights)
    assert all(w["sqnr_db"] > 30.0 for w in weights.values()), weights
