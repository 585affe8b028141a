"""Compressed and quantized programs: constexpr_affine_dequantize, constexpr_blockwise_shift_scale,
constexpr_lut_to_dense (iOS16 bit-packed and iOS18 grouped), quantize / dequantize."""
from __future__ import annotations

import coremltools as ct
import coremltools.optimize.coreml as cto
import numpy as np
import pytest
import torch
from coremltools.converters.mil import Builder as mb
from helpers.mil_fixtures import Case, assert_case, case_ids, rng_inputs, run_cases, torch_logits

from edgevit_deploy.verify.metrics import cosine
from edgevit_deploy.verify.mil import ReferenceExecutor

R = np.random.default_rng(5)
Q = R.integers(-128, 128, (4, 6)).astype(np.int8)
ZP = np.array([0, 3, -2, 1], dtype=np.int8)
SC = np.array([0.1, 0.02, 0.5, 1.0], dtype=np.float32)
LUT = np.linspace(-1, 1, 16).astype(np.float32)
IDX = R.integers(0, 16, 24)
PACKED = np.packbits(((IDX[:, None] >> np.arange(4)) & 1).astype(np.uint8).reshape(-1), bitorder="little")

MASK = R.integers(0, 2, (3, 8)).astype(bool)
NZ = R.standard_normal(int(MASK.sum())).astype(np.float32)
HALF = R.standard_normal((3, 8)).astype(np.float16)

CASES = [
    Case("sparse_to_dense_ios16", lambda x: mb.add(x=x, y=mb.constexpr_sparse_to_dense(
        nonzero_data=NZ, mask=np.packbits(MASK.reshape(-1), bitorder="little"), shape=np.array([3, 8], np.uint32))),
        lambda x: x + torch.zeros(3, 8).masked_scatter(torch.from_numpy(MASK), torch.from_numpy(NZ)), rng_inputs((3, 8))),
    Case("constexpr_cast_fp16_fp32", lambda x: mb.add(x=x, y=mb.constexpr_cast(source_val=HALF, output_dtype="fp32")),
         lambda x: x + torch.from_numpy(HALF.astype(np.float32)), rng_inputs((3, 8))),
    Case("affine_dequantize_per_channel",
         lambda x: mb.add(x=x, y=mb.constexpr_affine_dequantize(quantized_data=Q, zero_point=ZP, scale=SC, axis=0)),
         lambda x: x + (torch.from_numpy(Q).float() - torch.from_numpy(ZP).float()[:, None]) * torch.from_numpy(SC)[:, None],
         rng_inputs((4, 6))),
    Case("lut_to_dense_ios16_packed",
         lambda x: mb.add(x=x, y=mb.constexpr_lut_to_dense(lut=LUT, indices=PACKED, shape=np.array([4, 6], np.uint32))),
         lambda x: x + torch.from_numpy(LUT[IDX].reshape(4, 6)), rng_inputs((4, 6))),
    Case("quantize_dequantize_per_channel",
         lambda x: mb.dequantize(input=mb.quantize(input=x, scale=np.array([0.05, 0.1, 0.2], np.float32),
                                                    zero_point=np.array([0, 10, -5], np.int8), axis=1, output_dtype="int8"),
                                 scale=np.array([0.05, 0.1, 0.2], np.float32), zero_point=np.array([0, 10, -5], np.int8), axis=1),
         lambda x: torch.fake_quantize_per_channel_affine(x, torch.tensor([0.05, 0.1, 0.2]), torch.tensor([0, 10, -5], dtype=torch.int32),
                                                          1, -128, 127),
         [rng_inputs((2, 3, 4, 4))[0] * 10]),
    Case("quantize_uint8_per_tensor", lambda x: mb.quantize(input=x, scale=np.float32(0.1), zero_point=np.uint8(128), output_dtype="uint8"),
         lambda x: torch.clamp(torch.round(x / 0.1) + 128, 0, 255).to(torch.uint8), [np.array([-20.0, -0.05, 0.05, 0.15, 3.0, 20.0], np.float32)]),
]


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
