"""The Core ML host sessions around the reference executor: executor choice, image inputs (BGR,
with and without the toolkit's mean / std metadata), batching, and clear errors (unknown op -> the
parity report fails naming the op)."""
from __future__ import annotations

import coremltools as ct
import numpy as np
import pytest
import torch
from PIL import Image

from edgevit_deploy.converters.table import TARGETS
from edgevit_deploy.errors import EdgeVitDeployError, RuntimeUnavailableError
from edgevit_deploy.models import ModelConfig
from edgevit_deploy.verify.mil import MilProgramError, ReferenceExecutor, UnsupportedMilOpError
from edgevit_deploy.verify.mil.ops import _registry
from edgevit_deploy.verify.parity import check_parity
from edgevit_deploy.verify.runtimes import CoremlHost, coreml_native_available

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 16


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class FromPixels(torch.nn.Module):
    """0..255 pixels in ``order`` (RGB / BGR) -> the model's normalised RGB input."""

    def __init__(self, model, order: str, mean=(0, 0, 0), std=(1, 1, 1)):
        super().__init__()
        self.model, self.flip = model, order == "BGR"
        self.register_buffer("mean", torch.tensor(mean).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, 3, 1, 1))

    def forward(self, px):
        rgb = px.flip(1) if self.flip else px
        return self.model((rgb / 255.0 - self.mean) / self.std)


def _convert(module, path, image: str | None = None, metadata: dict | None = None):
    x = torch.rand(1, 3, SIZE, SIZE) * 255
    ep = torch.export.export(module.eval(), (x,)).run_decompositions({})
    inputs = ([ct.ImageType(name="image", shape=x.shape, color_layout=getattr(ct.colorlayout, image))] if image
              else [ct.TensorType(name="image", shape=x.shape)])
    m = ct.convert(ep, inputs=inputs, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                   minimum_deployment_target=ct.target.iOS16, skip_model_load=True)
    m.user_defined_metadata.update(metadata or {})
    m.save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny():
    return Tiny().eval()


@pytest.fixture(scope="module")
def plain_pkg(tiny, tmp_path_factory):
    return _convert(tiny, tmp_path_factory.mktemp("plain") / "tiny.mlpackage")


def _normalised(n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_reference_session_through_host(tiny, plain_pkg):
    session = CoremlHost().load(plain_pkg, executor="reference")
    assert session.executor == "coreml-reference (fp32)"
    x = _normalised()
    np.testing.assert_allclose(session.run(x), tiny(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_auto_picks_reference_off_macos(plain_pkg):
    session = CoremlHost().load(plain_pkg, executor="auto")
    assert session.executor.startswith("coreml-native" if coreml_native_available() else "coreml-reference")


@pytest.mark.skipif(coreml_native_available(), reason="checks the Linux error; on macOS native runs")
@pytest.mark.parametrize("executor", ["native", "both"])
def test_native_needs_macos(plain_pkg, executor):
    with pytest.raises(RuntimeUnavailableError, match="macOS"):
        CoremlHost().load(plain_pkg, executor=executor)


def test_unknown_executor_name(plain_pkg):
    with pytest.raises(ValueError, match="reference"):
        CoremlHost().load(plain_pkg, executor="fast")


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_image_input_with_metadata_denormalises(tiny, tmp_path, order):
    path = _convert(FromPixels(tiny, order, MEAN, STD), tmp_path / "img.mlpackage", image=order,
                    metadata={"edgevit_deploy.mean": ",".join(map(str, MEAN)), "edgevit_deploy.std": ",".join(map(str, STD))})
    ex = ReferenceExecutor(path)
    x = _normalised()
    assert ex.package.image_inputs == {"image": order}
    np.testing.assert_allclose(ex.run_normalised(x), tiny(torch.from_numpy(x)).detach().numpy(), atol=1e-4)


def test_image_input_without_metadata_is_fed_as_is(tiny, tmp_path):
    module = FromPixels(tiny, "RGB")
    path = _convert(module, tmp_path / "img.mlpackage", image="RGB")
    x = np.random.default_rng(1).uniform(0, 255, (2, 3, SIZE, SIZE)).astype(np.float32)
    ex = ReferenceExecutor(path)
    assert ex.mean is None
    np.testing.assert_allclose(ex.run_normalised(x), module(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
    # a PIL image goes through predict() as RGB pixels
    pixels = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    out = ex.predict({"image": Image.fromarray(pixels)})
    expected = module(torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32))).detach().numpy()
    np.testing.assert_allclose(list(out.values())[0], expected, atol=1e-4)


def test_wrong_input_shape_is_a_clear_error(plain_pkg):
    with pytest.raises(MilProgramError, match=r"shape \(1, 3, 8, 8\).*\(1, 3, 16, 16\)"):
        ReferenceExecutor(plain_pkg).predict({"image": np.zeros((1, 3, 8, 8), np.float32)})


def test_missing_package_is_a_clear_error(tmp_path):
    with pytest.raises(MilProgramError, match="does not exist"):
        ReferenceExecutor(tmp_path / "nope.mlpackage")


def test_unknown_op_is_named_and_parity_fails(tiny, plain_pkg, monkeypatch):
    monkeypatch.delitem(_registry._OPS, "relu")
    with pytest.raises(UnsupportedMilOpError, match="'relu'") as info:
        ReferenceExecutor(plain_pkg)
    assert isinstance(info.value, EdgeVitDeployError) and info.value.op_type == "relu"
    cfg = ModelConfig(name="tiny", family="user", input_size=(3, SIZE, SIZE), num_classes=5, labels=None)
    report = check_parity(tiny, cfg, plain_pkg, TARGETS["coreml"], "fp32", coreml_executor="reference",
                          inputs=_normalised())
    # the runtime exists here and cannot run the file: a failure naming the op, never a skip or a pass
    assert report.executed is True and report.passed is False
    assert "relu" in report.reason
