"""The smallest model of each paper family exports to ONNX (opset 17) and matches PyTorch in onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.zoo_papers_fixtures import SMALL, SMALLEST, small_model  # noqa: F401


@pytest.mark.parametrize("name", SMALLEST)
def test_onnx_export_parity(name, small_model, tmp_path):
    import onnx
    import onnxruntime as ort

    model = small_model(name)
    x = torch.randn(2, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(1))
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["logits"])
    graph = onnx.load(str(path)).graph
    assert not [n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")]  # standard ops only
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 0.1  # logits are not degenerate, so parity means something
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4


def test_mamba_mixer_with_several_chunks_onnx_parity(tmp_path):
    """At 224 the last VCMamba stage scans 49 steps: 4 chunks of 16, whose state passing must export too."""
    import onnxruntime as ort

    from edgevit_deploy.models.vcmamba import PlainMamba2D

    torch.manual_seed(0)
    mixer = PlainMamba2D(16, chunk_size=16).eval()
    x = torch.randn(1, 16, 7, 7)
    path = tmp_path / "mixer.onnx"
    torch.onnx.export(mixer, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    with torch.no_grad():
        expected = mixer(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4
