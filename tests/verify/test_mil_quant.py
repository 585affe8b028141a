"""Compressed and quantized programs: constexpr_affine_dequantize, constexpr_blockwise_shift_scale,
constexpr_lut_to_dense (iOS16 bit-packed and iOS18 grouped), quantize / dequantize."""
from __future__ import annotations

import coremltools as ct
import coremltools.optimize.coreml as cto
import numpy as np
import pytest
import torch
from helpers.mil_cases_quant import CASES
from helpers.mil_fixtures import assert_case, case_ids, run_cases, torch_logits

from edgevit_deploy.verify.metrics import cosine
from edgevit_deploy.verify.mil import ReferenceExecutor


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("mil_quant"), target="iOS17")


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_quant_op_matches_torch(results, case):
    assert_case(results, case)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


COMPRESSIONS = {
    "iOS16-w8-per-channel": ("iOS16", lambda m: cto.linear_quantize_weights(m, cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear", weight_threshold=100)))),
    "iOS16-palettize4": ("iOS16", lambda m: cto.palettize_weights(m, cto.OptimizationConfig(
        global_config=cto.OpPalettizerConfig(nbits=4, mode="uniform", weight_threshold=100)))),
    "iOS18-int4-per-block": ("iOS18", lambda m: cto.linear_quantize_weights(m, cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear", dtype="int4", granularity="per_block", block_size=4,
                                                  weight_threshold=100)))),
    "iOS18-palettize3-grouped": ("iOS18", lambda m: cto.palettize_weights(m, cto.OptimizationConfig(
        global_config=cto.OpPalettizerConfig(nbits=3, mode="uniform", granularity="per_grouped_channel", group_size=4,
                                             weight_threshold=100)))),
}


@pytest.mark.parametrize("kind", list(COMPRESSIONS))
def test_compressed_weights_match_coremltools_decompression(tmp_path, kind):
    target, compress = COMPRESSIONS[kind]
    model = Tiny().eval()
    x = torch.randn(1, 3, 16, 16)
    ep = torch.export.export(model, (x,)).run_decompositions({})
    mlmodel = ct.convert(ep, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
                         compute_precision=ct.precision.FLOAT32, minimum_deployment_target=getattr(ct.target, target),
                         skip_model_load=True)
    path = tmp_path / f"{kind}.mlpackage"
    compress(mlmodel).save(str(path))
    ex = ReferenceExecutor(path)
    constexprs = [op for op in ex.package.function.operations if op.op_type.startswith("constexpr_")]
    assert constexprs, f"{kind}: expected compressed weights, got {[op.op_type for op in ex.package.function.operations]}"
    for op in constexprs:
        expected = np.asarray(op.materialized_val_inference(), dtype=np.float32)
        np.testing.assert_allclose(ex.constant(op.outputs[0].name), expected, rtol=1e-6, atol=1e-7, err_msg=op.op_type)
    y = ex.run_normalised(x.numpy())
    assert cosine(torch_logits(model, x.numpy()), y) > 0.9
