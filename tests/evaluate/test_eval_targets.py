"""edgevit-eval on the other targets, cheaply: a tiny user model (``file.py:factory``, 32 px) exported to
TFLite with NHWC input and to Core ML with an image input (0..255, mean/std folded in), evaluated on a
folder whose labels are, by construction, the fp32 model's own top-1 on half of the images.

The tool's figures are checked against the model (PyTorch) and against each artifact's host session run
here on the same preprocessed images; the input size comes from the artifacts' metadata (NHWC for TFLite).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgevit_deploy.cli.eval_cmd import main
from edgevit_deploy.converters.base import ExportOptions
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.models import create_model
from edgevit_deploy.preprocess import preprocess_image

SIZE = 32
TINY = '''from torch import nn


def tiny(num_classes: int = 1000, img_size: int = 32):
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, num_classes))
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model name, image folder, the images' names, the model's top-1 per image, tflite, mlpackage)."""
    import edgevit_deploy

    root = tmp_path_factory.mktemp("eval-tiny")
    (root / "tiny.py").write_text(TINY)
    name = f"{root / 'tiny.py'}:tiny"
    model = create_model(name, img_size=SIZE)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(6)]
    x = np.stack([preprocess_image(im, model.deploy_cfg) for im in images])
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(-1).numpy()
    names = []
    for i, (im, p) in enumerate(zip(images, pred)):
        label = int(p) if i % 2 == 0 else (int(p) + 1) % 1000   # right on the even images only
        (root / "set" / str(label)).mkdir(parents=True, exist_ok=True)
        im.save(root / "set" / str(label) / f"im{i}.png")
        names.append(f"{label}/im{i}.png")
    tfl = edgevit_deploy.export(name, ["tflite"], root / "out", img_size=SIZE, verify=False,
                                options=ExportOptions(nhwc=True)).artifacts[0].path
    mlp = edgevit_deploy.export(name, ["coreml"], root / "out", img_size=SIZE, verify=False,
                                options=ExportOptions(image_input=True)).artifacts[0].path
    return name, root / "set", names, pred, tfl, mlp


@pytest.mark.slow
def test_tflite_nhwc_and_coreml_image_input(tiny):
    name, folder, names, pred, tfl, mlp = tiny
    r = CliRunner().invoke(main, ["--data", str(folder), str(tfl), str(mlp), "--json", "--coreml-executor",
                                  "reference"])
    assert r.exit_code == 0, r.output
    ref, lite, ml = json.loads(r.output)["results"]
    assert ref["source"] == name and ref["is_reference"] and ref["n"] == 6
    assert ref["top1_correct"] == 3   # the labels are its own top-1 on the even images
    order = sorted(range(6), key=lambda i: names[i])
    cfg = create_model(name, img_size=SIZE).deploy_cfg
    x = np.stack([preprocess_image(Image.open(folder / names[i]), cfg) for i in order])
    labels = np.array([int(names[i].split("/")[0]) for i in order])
    for res, path, target, options in ((lite, tfl, "tflite", {}), (ml, mlp, "coreml", {"executor": "reference"})):
        assert res["target"] == target and res["img_size"] == SIZE and res["reference"] == name
        top1 = get_spec(target).load_host_runtime().load(path, **options).run(x).argmax(-1)
        assert res["top1_correct"] == int((top1 == labels).sum())
        assert res["agreement"] == pytest.approx(float(np.mean(top1 == pred[order])))
    assert lite["agreement"] == 1.0   # fp32


@pytest.mark.slow
def test_executorch_program(tiny, tmp_path):
    """The fourth target: a .pte evaluated in ExecuTorch's runtime, its figures recomputed from its own session."""
    import edgevit_deploy

    name, folder, names, pred, _, _ = tiny
    pte = edgevit_deploy.export(name, ["executorch"], tmp_path, img_size=SIZE, verify=False).artifacts[0].path
    r = CliRunner().invoke(main, ["--data", str(folder), str(pte), "--json"])
    assert r.exit_code == 0, r.output
    ref, et = json.loads(r.stdout)["results"]   # stderr may carry warnings
    assert ref["source"] == name and et["target"] == "executorch" and et["img_size"] == SIZE
    order = sorted(range(6), key=lambda i: names[i])
    cfg = create_model(name, img_size=SIZE).deploy_cfg
    x = np.stack([preprocess_image(Image.open(folder / names[i]), cfg) for i in order])
    labels = np.array([int(names[i].split("/")[0]) for i in order])
    top1 = get_spec("executorch").load_host_runtime().load(pte).run(x).argmax(-1)
    assert et["top1_correct"] == int((top1 == labels).sum()) == ref["top1_correct"]
    assert et["agreement"] == 1.0   # fp32
