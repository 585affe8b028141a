"""EfficientNet-Lite0 with real ImageNet weights: fp32 and every target's int8 artifact classify real
photographs correctly, and top-1 agreement with fp32 is measured on every natural image there is offline.

"Natural images" are :data:`~edgevit_deploy.images.NATURAL_PHOTOS`: the 12 photographs of everyday scenes
and objects bundled in scikit-image, matplotlib and scikit-learn, each whole plus 7 seeded crops / flips
(96 images). The floor there is 90 % (README). The 8 scientific images (textures, microscopy, the Hubble deep
field, document scans: no ImageNet object, fp32 top-2 within a few % of each other) are measured too, with
a lower floor: there int8 flips near-ties (measured in docs/quantization.md).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.images import NATURAL_PHOTOS, SCIENTIFIC_IMAGES
from edgevit_deploy.labels import imagenet_labels
from edgevit_deploy.verify.run import run_artifact
from helpers.quant_fixtures import model, photo_views, quantized

CAT = {281, 282, 285}           # tabby, tiger cat, Egyptian cat
COFFEE = {967, 968, 504}        # espresso, cup, coffee mug
EXPECTED = {"chelsea": CAT, "coffee": COFFEE}
NATURAL_FLOOR = 0.90     # the floor; measured 0.92-0.95 (docs/quantization.md)
# ONNX int8 measured 0.823 on the natural photos in its U8U8 days; issue #15's bias correction of the weight
# rounding (quantize/bias_correction.py, on by default) brought it to the common floor: 0.9375 with this
# test's 16 calibration views (docs/quantization.md, "Bias correction")
NATURAL_FLOOR_BY_TARGET: dict[str, float] = {}
SCIENTIFIC_FLOOR = 0.40  # measured 0.50-0.62 on whole images and views of them
VIEWS = 8


def _index(label: str) -> int:
    return imagenet_labels().index(label)


def _top1(m, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([m(torch.from_numpy(x[i:i + 32])).argmax(-1).numpy() for i in range(0, len(x), 32)])


def _run(target: str, path, x: np.ndarray) -> np.ndarray:
    outs = []
    for i in range(0, len(x), 32):
        run = run_artifact(get_spec(target), path, x[i:i + 32], coreml_executor="reference")
        assert run.ok, run.reason
        outs.append(run.outputs.argmax(-1))
    return np.concatenate(outs)


def test_the_natural_photos_are_all_available_offline():
    m = model("efficientnet_lite0")
    names, x = photo_views(m.deploy_cfg, NATURAL_PHOTOS)
    assert names == list(NATURAL_PHOTOS) and x.shape == (len(NATURAL_PHOTOS), *m.deploy_cfg.input_size)
    assert not set(NATURAL_PHOTOS) & set(SCIENTIFIC_IMAGES)


def test_fp32_lite0_classifies_the_cat_and_the_coffee():
    m = model("efficientnet_lite0")
    assert m.checkpoint_sha256 != "random-init"
    names, x = photo_views(m.deploy_cfg, tuple(EXPECTED))
    top1 = _top1(m, x)
    for name, classes in EXPECTED.items():
        assert top1[names.index(name)] in classes, (name, imagenet_labels()[top1[names.index(name)]])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite", "coreml"])
def test_int8_lite0_classifies_photos_and_agrees_with_fp32(target):
    m = model("efficientnet_lite0")
    path, report = quantized("efficientnet_lite0", target)
    assert report.parity.executed, report.parity.reason
    assert report.parity.passed, report.parity.failures  # includes the held-out top-1 agreement floor
    assert report.size_quant_bytes < report.size_float_bytes
    for ex in report.examples:
        if ex["image"] in EXPECTED:
            assert _index(ex["quantized"]) in EXPECTED[ex["image"]], ex
    natural_floor = NATURAL_FLOOR_BY_TARGET.get(target, NATURAL_FLOOR)
    for group, floor in ((NATURAL_PHOTOS, natural_floor), (SCIENTIFIC_IMAGES, SCIENTIFIC_FLOOR)):
        names, x = photo_views(m.deploy_cfg, group, VIEWS)
        agree = _top1(m, x) == _run(target, path, x)
        flips = sorted({n for n, a in zip(names, agree) if not a})
        assert float(np.mean(agree)) >= floor, (float(np.mean(agree)), flips)
        if group is NATURAL_PHOTOS:  # the photos with an unmistakable ImageNet object keep their class
            whole = dict(zip(names[:len(group)], agree[:len(group)]))
            assert all(whole[n] for n in EXPECTED), flips


@pytest.mark.slow
@pytest.mark.parametrize("target, settings", [
    ("tflite", ()),
    ("onnx", (("calib_method", "percentile"),)),  # minmax: 24.5 dB on the search's images, one more block
])
def test_target_sqnr_25_keeps_only_the_stem_in_float_and_stays_small(target, settings):
    """Issue #15's Lite0 goal in one artifact: >= 25 dB against fp32 at int8 size and speed. The search
    (quantize/fallback.py, the same on both targets) measures its candidates with the float layers'
    uncorrected biases against the float model: it keeps the stem and the first block in float (measured with
    128 calibration views: tflite 25.2 dB, 0.28x the size, 0.52x the latency of fp32; onnx 25.8 dB, 0.28x,
    0.50x). Before, it measured against the bias-corrected float model and floated six blocks on tflite (0.56x
    size, 0.70x latency), and onnx searched by activation (22.3 dB, 12 layers in float, 1.07x latency)."""
    path, report = quantized("efficientnet_lite0", target, "int8", (("target_sqnr", 25.0), *settings))
    kept = report.quantization["kept_in_float_layers"]
    assert set(kept) <= {"conv_stem", "blocks.0", "blocks.1"} and "blocks.0" in kept, kept
    assert report.quantization["target_sqnr"]["met"], report.quantization["target_sqnr"]["steps"]
    assert report.parity.passed, report.parity.failures
    assert report.parity.sqnr_db >= 25.0, report.parity.sqnr_db
    assert report.size_quant_bytes < 0.32 * report.size_float_bytes
