"""The channels-last rewrite of ``constant_pad_nd`` added to litert-torch's layout pass
(``converters/_litert_passes.py``): exact for every pad length, and an int8 .tflite of a TensorFlow-"same"
strided conv (EfficientNet-Lite's ``Conv2dSame``: ``F.pad`` then an unpadded conv) has no TRANSPOSE left
around its pads (litert-torch 0.10 without the rewrite: two per pad), and a float one stays exact."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgevit_deploy.converters._litert_passes import constant_pad_nd_nhwc, install_layout_rewrites
from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions, Precision, QuantMode
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.models import create_model
from edgevit_deploy.quantize.calibration import CalibrationSet
from edgevit_deploy.quantize.pipeline import run_quantizer

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

IMG = 32


@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 0, 1), (1, 2, 0, 3, 1, 0), (1, 0, 2, 1, 0, 1, 1, 0), (-1, 2, 1, -2)])
def test_the_nhwc_pad_is_the_nchw_pad_on_permuted_axes(pad):
    x = torch.randn(2, 3, 5, 6)
    want = F.pad(x, pad, value=0.5).permute(0, 2, 3, 1)
    got = constant_pad_nd_nhwc(x.permute(0, 2, 3, 1).contiguous(), list(pad), 0.5)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_installed_once():
    install_layout_rewrites()
    assert install_layout_rewrites() is False


class SameStrided(nn.Module):
    """conv -> ReLU6 -> TF "same" pad (right / bottom only at an even size) -> strided depthwise -> 1x1 -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, groups=16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem(x))
        x = F.relu6(self.dw(F.pad(x, (0, 1, 0, 1))))
        return self.head(F.adaptive_avg_pool2d(self.pw(x), 1).flatten(1))


def _ops(path: Path) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), experimental_disable_delegate_node_fusion=True)
    return Counter(o["op_name"] for o in it._get_ops_details() if o["op_name"] != "DELEGATE")


def _meta(precision: str) -> ArtifactMetadata:
    return ArtifactMetadata(
        model="same_strided", input_shape=(1, 3, IMG, IMG), layout="NCHW", mean=(0.0,) * 3, std=(1.0,) * 3,
        toolkit_version="test", checkpoint_sha256="random-init", precision=precision, num_classes=5,
    )


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def test_a_float_same_padded_strided_conv_stays_exact(tmp_path):
    torch.manual_seed(0)
    model = SameStrided().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, IMG, IMG)).astype(np.float32)
    path = get_spec("tflite").load_converter().convert(
        model, torch.from_numpy(x), tmp_path / "m.tflite", ExportOptions(), _meta("fp32"))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(path, x), want, rtol=1e-4, atol=1e-5)


def test_int8_efficientnet_lite_has_no_transposes_around_its_same_pads(tmp_path):
    """EfficientNet-Lite0 at 64 px (its 4 strided depthwise convs and its stem are timm ``Conv2dSame``):
    without the rewrite the int8 .tflite has 9 TRANSPOSE and 5 PAD ops; with it, the input's transpose and
    the stem's pad, as the fp32 one."""
    model = create_model("efficientnet_lite0", img_size=64).eval()
    data = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    options = ExportOptions(quantize=QuantMode.INT8, precision=Precision.FP32, quant={"bias_correction": False})
    res = run_quantizer(get_spec("tflite"), model, torch.from_numpy(data[:1]), tmp_path / "q.tflite", options,
                        _meta("int8"), CalibrationSet(data, "test"))
    ops = _ops(res.path)
    assert ops["CONV_2D"] == 33 and ops["DEPTHWISE_CONV_2D"] == 16, ops
    assert ops["TRANSPOSE"] <= 1 and ops["PAD"] <= 1, ops
