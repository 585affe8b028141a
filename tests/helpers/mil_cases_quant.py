"""The per-op cases of tests/verify/test_mil_quant.py (quantization / compression ops).

tests/verify/test_mil_coverage.py checks that together the case tables exercise every op the reference
executor implements."""
from __future__ import annotations

import numpy as np
import torch
from coremltools.converters.mil import Builder as mb

from .mil_fixtures import Case, rng_inputs

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
