"""EfficientNet-Lite0 with real ImageNet weights: fp32 and every target's int8 artifact classify real
photographs correctly; top-1 agreement with fp32 is measured on every natural photo scikit-image has.

Agreement is >= 90 % on the photos fp32 classifies with some confidence (top softmax >= 0.3: the cat, the
coffee, the clock, the rocket, the cameraman, the moon). On the others (textures, microscopy, the Hubble deep
field: no ImageNet object, fp32 top softmax <= 0.15) int8 flips near-ties: measured 64-71 % over all 14.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.labels import imagenet_labels
from edgevit_deploy.quantize.fidelity import run_artifact
from quant_fixtures import model, natural_photos, quantized

CAT = {281, 282, 285}           # tabby, tiger cat, Egyptian cat
COFFEE = {967, 968, 504}        # espresso, cup, coffee mug
EXPECTED = {"chelsea": CAT, "coffee": COFFEE}
CONFIDENT = 0.3        # fp32 top softmax above which a photo "has an ImageNet object"
ALL_PHOTOS_FLOOR = 0.6  # measured 0.64 (tflite) - 0.71 (onnx, coreml) over all 14 photos


def _index(label: str) -> int:
    return imagenet_labels().index(label)


def test_fp32_lite0_classifies_the_cat_and_the_coffee():
    m = model("efficientnet_lite0")
    assert m.checkpoint_sha256 != "random-init"
    names, x = natural_photos(m.deploy_cfg)
    with torch.no_grad():
        top1 = m(torch.from_numpy(x)).argmax(-1).tolist()
    for name, classes in EXPECTED.items():
        assert top1[names.index(name)] in classes, (name, imagenet_labels()[top1[names.index(name)]])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite", "coreml"])
def test_int8_lite0_classifies_photos_and_agrees_with_fp32(target):
    m = model("efficientnet_lite0")
    path, report = quantized("efficientnet_lite0", target)
    assert report.parity.executed, report.parity.reason
    assert report.parity.passed, report.parity.failures  # includes top-1 agreement >= 90 % (held out)
    assert report.size_quant_bytes < report.size_float_bytes
    for ex in report.examples:
        if ex["image"] in EXPECTED:
            assert _index(ex["quantized"]) in EXPECTED[ex["image"]], ex
    names, x = natural_photos(m.deploy_cfg)
    out, _, reason = run_artifact(get_spec(target), path, x, coreml_executor="reference")
    assert out is not None, reason
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).softmax(-1).numpy()
    agree = ref.argmax(-1) == out.argmax(-1)
    confident = ref.max(-1) >= CONFIDENT
    assert confident.sum() >= 5, [n for n, c in zip(names, confident) if c]
    disagree = [n for n, a in zip(names, agree) if not a]
    assert float(np.mean(agree[confident])) >= 0.9, disagree
    assert float(np.mean(agree)) >= ALL_PHOTOS_FLOOR, disagree
