"""edgevit-eval with real weights: EfficientNet-Lite0 (packaged ImageNet weights) in PyTorch fp32, as an
fp32 ONNX file and as an int8 ONNX file, on the labelled photographs of
:mod:`edgevit_deploy.evaluate.sample_set` (5 photos with an unambiguous ImageNet class, each whole and
mirrored: 10 images).

The fp32 figures are what this model measured once on these images (no randomness: exact); the fp32 ONNX
file must agree with PyTorch on every image; the int8 file's figures (change in top-1, agreement, flips)
are recomputed here from its own onnxruntime session.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgevit_deploy.cli.eval_cmd import main
from edgevit_deploy.evaluate.dataset import imagenet_synsets
from edgevit_deploy.evaluate.sample_set import SAMPLE_LABELS, write_sample_set
from edgevit_deploy.preprocess import preprocess_image
from edgevit_deploy.verify.runtimes import OnnxRuntimeHost
from helpers.quant_fixtures import model, quantized

# measured once (docs/accuracy.md): fp32 Lite0 gets the espresso and the palace right, whole and mirrored,
# and one of the clocks / cats / uniforms; every label is in its top-5
FP32_TOP1_CORRECT = 5
FP32_TOP5_CORRECT = 10


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_sample_set(tmp_path_factory.mktemp("eval-photos") / "pypi-photos")


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    import edgevit_deploy

    out = tmp_path_factory.mktemp("lite0-onnx")
    return edgevit_deploy.export("efficientnet_lite0", ["onnx"], out, verify=False).artifacts[0].path


def test_the_labelled_photos_are_all_there(photos):
    files = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpeg"))
    assert len(files) == 2 * len(SAMPLE_LABELS) == 10
    assert {f.split("/")[0] for f in files} == set(SAMPLE_LABELS.values())


@pytest.mark.slow
def test_lite0_fp32_onnx_and_int8_on_the_labelled_photos(photos, fp32_onnx):
    int8_path, _ = quantized("efficientnet_lite0", "onnx")
    r = CliRunner().invoke(main, ["--data", str(photos), "efficientnet_lite0", str(fp32_onnx), str(int8_path),
                                  "--json", "--batch", "4"])
    assert r.exit_code == 0, r.output
    ref, fp32, int8 = json.loads(r.output)["results"]
    assert ref["is_reference"] and ref["n"] == 10 and ref["model"] == "efficientnet_lite0"
    assert (ref["top1_correct"], ref["top5_correct"]) == (FP32_TOP1_CORRECT, FP32_TOP5_CORRECT)
    assert fp32["agreement"] == 1.0 and fp32["flips"] == [] and fp32["top1_correct"] == FP32_TOP1_CORRECT
    assert int8["precision"] == "int8" and int8["reference"] == "efficientnet_lite0"

    # int8: recompute from its own session on the same preprocessed images
    cfg = model("efficientnet_lite0").deploy_cfg
    names = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpeg"))
    x = np.stack([preprocess_image(Image.open(photos / n), cfg) for n in names])
    labels = np.array([imagenet_synsets()[n.split("/")[0]] for n in names])
    q = OnnxRuntimeHost().load(int8_path).run(x).argmax(-1)
    f = OnnxRuntimeHost().load(fp32_onnx).run(x).argmax(-1)
    assert int8["top1_correct"] == int((q == labels).sum())
    assert int8["agreement"] == pytest.approx(float(np.mean(q == f)))
    assert int8["delta_top1"] == pytest.approx((int((q == labels).sum()) - FP32_TOP1_CORRECT) / 10)
    assert [fl["image"] for fl in int8["flips"]] == [n for n, a, b in zip(names, q, f) if a != b]
