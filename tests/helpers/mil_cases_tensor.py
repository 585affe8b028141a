"""The per-op cases of tests/verify/test_mil_ops_tensor.py (tensor ops, reductions, matmul, resampling).

tests/verify/test_mil_coverage.py checks that together the case tables exercise every op the reference
executor implements."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb

from .mil_fixtures import Case, rng_inputs

X = rng_inputs((2, 3, 4, 5), seed=21)
IDX = np.array([[2, -1], [0, 1]], dtype=np.int32)
W = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
BIAS = np.linspace(-1, 1, 6).astype(np.float32)

CASES = [
    Case("reshape_infer", lambda x: mb.reshape(x=x, shape=[2, -1, 5]), lambda x: x.reshape(2, -1, 5), X),
    Case("transpose", lambda x: mb.transpose(x=x, perm=[0, 2, 3, 1]), lambda x: x.permute(0, 2, 3, 1), X),
    Case("slice_by_index_masks", lambda x: mb.slice_by_index(
        x=x, begin=[0, 1, 0, 1], end=[0, 3, 4, 5], stride=[1, 1, 2, 2], begin_mask=[True, False, False, False],
        end_mask=[True, False, True, False]), lambda x: x[:, 1:3, ::2, 1:5:2], X),
    Case("slice_by_index_squeeze_neg", lambda x: mb.slice_by_index(
        x=x, begin=[0, -1, 0, 0], end=[0, 0, 4, 5], squeeze_mask=[False, True, False, False],
        begin_mask=[True, False, True, True], end_mask=[True, False, True, True]), lambda x: x[:, -1], X),
    Case("slice_by_index_neg_stride", lambda x: mb.slice_by_index(
        x=x, begin=[0, 0, 3, 0], end=[0, 0, 0, 0], stride=[1, 1, -1, 1], begin_mask=[True, True, False, True],
        end_mask=[True, True, True, True]), lambda x: torch.flip(x, [2]), X),
    Case("slice_by_size", lambda x: mb.slice_by_size(x=x, begin=[0, 1, 1, 0], size=[-1, 2, 2, -1]),
         lambda x: x[:, 1:3, 1:3, :], X),
    Case("concat_neg_axis", lambda x, y: mb.concat(values=[x, y, x], axis=-1), lambda x, y: torch.cat([x, y, x], -1),
         rng_inputs((2, 3), (2, 4))),
    Case("concat_interleave", lambda x, y: mb.concat(values=[x, y], axis=1, interleave=True),
         lambda x, y: torch.stack([x, y], 2).reshape(2, 6), rng_inputs((2, 3), (2, 3))),
    Case("split_sizes", lambda x: mb.split(x=x, split_sizes=[1, 3], axis=-2), lambda x: torch.split(x, [1, 3], -2), X),
    Case("split_num", lambda x: mb.split(x=x, num_splits=3, axis=1), lambda x: torch.split(x, 1, 1), X),
    Case("stack", lambda x, y: mb.stack(values=[x, y], axis=-1), lambda x, y: torch.stack([x, y], -1), rng_inputs((2, 3), (2, 3))),
    Case("squeeze_expand", lambda x: mb.expand_dims(x=mb.squeeze(x=x, axes=[1]), axes=[-1, 0]),
         lambda x: x.squeeze(1).unsqueeze(-1).unsqueeze(0), rng_inputs((2, 1, 3))),
    Case("pad_constant", lambda x: mb.pad(x=x, pad=[1, 2, 0, 3], mode="constant", constant_val=1.5),
         lambda x: F.pad(x, [0, 3, 1, 2], value=1.5), X),
    Case("pad_reflect", lambda x: mb.pad(x=x, pad=[0, 0, 0, 0, 2, 1, 1, 3], mode="reflect"),
         lambda x: F.pad(x, [1, 3, 2, 1], mode="reflect"), X),
    Case("pad_replicate", lambda x: mb.pad(x=x, pad=[2, 1, 1, 3], mode="replicate"),
         lambda x: F.pad(x, [1, 3, 2, 1], mode="replicate"), X),
    Case("tile", lambda x: mb.tile(x=x, reps=[2, 1, 3]), lambda x: x.repeat(2, 1, 3), rng_inputs((2, 3, 1))),
    Case("gather_neg_idx", lambda x: mb.gather(x=x, indices=IDX, axis=2), lambda x: x[:, :, [[2, 3], [0, 1]]], X),
    Case("gather_along_axis", lambda x: mb.gather_along_axis(x=x, indices=np.array([[0, 2], [1, 0]], np.int32), axis=1),
         lambda x: torch.gather(x, 1, torch.tensor([[0, 2], [1, 0]])), rng_inputs((2, 3))),
    Case("depth_to_space", lambda x: mb.depth_to_space(x=x, block_size=2),
         lambda x: x.reshape(1, 2, 2, 2, 3, 3).permute(0, 3, 4, 1, 5, 2).reshape(1, 2, 6, 6), rng_inputs((1, 8, 3, 3))),
    Case("pixel_shuffle", lambda x: mb.pixel_shuffle(x=x, upscale_factor=2), lambda x: F.pixel_shuffle(x, 2), rng_inputs((1, 8, 3, 3))),
    Case("topk", lambda x: mb.topk(x=x, k=2, axis=-1), lambda x: (torch.topk(x, 2, -1)[0], torch.topk(x, 2, -1)[1].int()),
         rng_inputs((3, 6))),
    Case("pixel_unshuffle", lambda x: mb.pixel_unshuffle(x=x, downscale_factor=np.uint32(2)),
         lambda x: F.pixel_unshuffle(x, 2), rng_inputs((1, 2, 4, 6))),
    Case("space_to_depth", lambda x: mb.space_to_depth(x=x, block_size=2),
         lambda x: x.reshape(1, 2, 2, 2, 3, 2).permute(0, 3, 5, 1, 2, 4).reshape(1, 8, 2, 3), rng_inputs((1, 2, 4, 6))),
    Case("flatten2d", lambda x: mb.flatten2d(x=x, axis=2), lambda x: x.reshape(6, 20), X),
    Case("reverse", lambda x: mb.reverse(x=x, axes=[1, -1]), lambda x: torch.flip(x, [1, 3]), X),
    Case("shape_fill_like", lambda x: [mb.shape(x=x), mb.fill_like(ref_tensor=x, value=2.5)],
         lambda x: [torch.tensor(x.shape, dtype=torch.int32), torch.full(x.shape, 2.5)], X),
    Case("fill_range", lambda x: [mb.add(x=x, y=mb.fill(shape=[2, 3], value=1.5)), mb.range_1d(start=1, end=9, step=3)],
         lambda x: [x + 1.5, torch.arange(1, 9, 3, dtype=torch.int32)], rng_inputs((2, 3))),
    Case("reshape_like", lambda x, r: mb.reshape_like(x=x, ref_tensors=(r,), begins=(0,), ends=(2,), end_masks=(False,)),
         lambda x, r: x.reshape(4, 6), rng_inputs((2, 12), (4, 6, 5))),
    Case("gather_nd", lambda x: mb.gather_nd(x=x, indices=np.array([[0, 1], [1, 2]], np.int32)),
         lambda x: x[[0, 1], [1, 2]], X),
    Case("gather_batch_dims", lambda x: mb.gather(x=x, indices=np.array([[1, 0], [2, 2]], np.int32), axis=1, batch_dims=1),
         lambda x: torch.stack([x[0, [1, 0]], x[1, [2, 2]]]), rng_inputs((2, 3, 4))),
    Case("one_hot", lambda i: mb.one_hot(indices=i, one_hot_vector_size=4, axis=-1, on_value=1.0, off_value=0.0),
         lambda i: F.one_hot(i.long(), 4).float(), [np.array([0, 3, 1], np.int32)]),
    Case("cumsum_exclusive_reverse", lambda x: mb.cumsum(x=x, axis=1, exclusive=True, reverse=True),
         lambda x: torch.flip(torch.cumsum(torch.flip(x, [1]), 1), [1]) - x, rng_inputs((2, 5))),
    Case("argsort", lambda x: mb.argsort(x=x, axis=-1, ascending=True), lambda x: torch.argsort(x, -1).int(), rng_inputs((3, 6))),
    Case("band_part", lambda x: mb.band_part(x=x, lower=1, upper=0), lambda x: torch.tril(x) - torch.tril(x, -2), rng_inputs((4, 4))),
    Case("reduce_more", lambda x: [mb.reduce_prod(x=x, axes=[1]), mb.reduce_l1_norm(x=x, axes=[1]),
                                   mb.reduce_sum_square(x=x, axes=[0, 1]), mb.reduce_log_sum(x=mb.abs(x=x), axes=[1]),
                                   mb.reduce_argmin(x=x, axis=0)],
         lambda x: [x.prod(1), x.abs().sum(1), (x * x).sum((0, 1)), torch.log(x.abs().sum(1)), x.argmin(0).int()],
         rng_inputs((3, 4)), atol=1e-4),
    Case("sdpa", lambda q, k, v: mb.scaled_dot_product_attention(query=q, key=k, value=v),
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v), rng_inputs((1, 2, 5, 4), (1, 2, 6, 4), (1, 2, 6, 3)), atol=1e-5),
    Case("l2_pool", lambda x: mb.l2_pool(x=x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid"),
         lambda x: F.lp_pool2d(x, 2, 2, 2), X),
    Case("local_response_norm", lambda x: mb.local_response_norm(x=x, size=3, alpha=1e-2, beta=0.75, k=1.0),
         lambda x: F.local_response_norm(x, 3, 1e-2, 0.75, 1.0), X),
    Case("reduce_mean_keep", lambda x: mb.reduce_mean(x=x, axes=[2, -1], keep_dims=True), lambda x: x.mean((2, 3), keepdim=True), X),
    Case("reduce_sum_all", lambda x: mb.reduce_sum(x=x, keep_dims=False), lambda x: x.sum(), X, atol=1e-4),
    Case("reduce_max", lambda x: mb.reduce_max(x=x, axes=[1]), lambda x: x.amax(1), X),
    Case("reduce_min", lambda x: mb.reduce_min(x=x, axes=[-2]), lambda x: x.amin(-2), X),
    Case("reduce_l2_norm", lambda x: mb.reduce_l2_norm(x=x, axes=[3]), lambda x: x.norm(dim=3), X),
    Case("reduce_log_sum_exp", lambda x: mb.reduce_log_sum_exp(x=x, axes=[1]), lambda x: torch.logsumexp(x, 1), X),
    Case("reduce_argmax", lambda x: mb.reduce_argmax(x=x, axis=-1), lambda x: x.argmax(-1).int(), X),
    Case("linear", lambda x: mb.linear(x=x, weight=W, bias=BIAS), lambda x: F.linear(x, torch.from_numpy(W), torch.from_numpy(BIAS)), X, atol=1e-4),
    Case("matmul_transpose_broadcast", lambda x, y: mb.matmul(x=x, y=y, transpose_y=True),
         lambda x, y: x @ y.transpose(-1, -2), rng_inputs((2, 3, 4, 5), (1, 6, 5)), atol=1e-4),
    Case("einsum", lambda x, y: mb.einsum(values=(x, y), equation="nchw,nwhu->nchu"),
         lambda x, y: torch.einsum("nchw,nwhu->nchu", x, y), rng_inputs((1, 2, 3, 4), (1, 4, 3, 5)), atol=1e-4),
    Case("upsample_nearest_x2", lambda x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=3),
         lambda x: F.interpolate(x, scale_factor=(2, 3), mode="nearest"), X),
    Case("upsample_bilinear_half_pixel", lambda x: mb.upsample_bilinear(x=x, scale_factor_height=2, scale_factor_width=2,
                                                                       align_corners=False, half_pixel_centers=True),
         lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), X),
    Case("upsample_bilinear_align", lambda x: mb.upsample_bilinear(x=x, scale_factor_height=2, scale_factor_width=2,
                                                                  align_corners=True),
         lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True), X),
    Case("resize_bilinear_align", lambda x: mb.resize_bilinear(x=x, target_size_height=7, target_size_width=9,
                                                              sampling_mode="STRICT_ALIGN_CORNERS"),
         lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True), X),
    Case("resize_bilinear_unalign", lambda x: mb.resize_bilinear(x=x, target_size_height=6, target_size_width=8,
                                                                sampling_mode="UNALIGN_CORNERS"),
         lambda x: F.interpolate(x, size=(6, 8), mode="bilinear", align_corners=False), X),
    Case("resize_nearest", lambda x: mb.resize_nearest_neighbor(x=x, target_size_height=8, target_size_width=10),
         lambda x: F.interpolate(x, size=(8, 10), mode="nearest"), X),
]
