"""The per-op cases of tests/verify/test_mil_ops_conv.py (conv / conv_transpose / pools / norms).

tests/verify/test_mil_coverage.py checks that together the case tables exercise every op the reference
executor implements."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb

from .mil_fixtures import Case, rng_inputs

R = np.random.default_rng(7)


def w(*shape):
    return R.standard_normal(shape).astype(np.float32)


def _conv(cid, x_shape, w_shape, torch_fn, groups=1, bias=True, **kw):
    weight = w(*w_shape)
    b = w(w_shape[0]) if bias else None
    extra = {"bias": b} if bias else {}
    return Case(cid, lambda x: mb.conv(x=x, weight=weight, groups=groups, **extra, **kw),
                lambda x: torch_fn(x, torch.from_numpy(weight), None if b is None else torch.from_numpy(b)),
                rng_inputs(x_shape, seed=len(cid)), atol=1e-4)


X = (1, 4, 9, 10)
CASES = [
    _conv("conv_valid", X, (6, 4, 3, 3), lambda x, w_, b: F.conv2d(x, w_, b), pad_type="valid"),
    _conv("conv_same_stride2", X, (6, 4, 3, 3),
          lambda x, w_, b: F.conv2d(F.pad(x, [0, 1, 1, 1]), w_, b, stride=2), pad_type="same", strides=[2, 2]),
    _conv("conv_same_lower", X, (6, 4, 2, 2),
          lambda x, w_, b: F.conv2d(F.pad(x, [1, 0, 1, 0]), w_, b), pad_type="same_lower"),
    _conv("conv_custom_asym", X, (6, 4, 3, 3),
          lambda x, w_, b: F.conv2d(F.pad(x, [2, 0, 1, 3]), w_, b), pad_type="custom", pad=[1, 3, 2, 0]),
    _conv("conv_groups_dilation", X, (8, 2, 3, 3),
          lambda x, w_, b: F.conv2d(x, w_, b, padding=2, dilation=2, groups=2), groups=2,
          pad_type="custom", pad=[2, 2, 2, 2], dilations=[2, 2]),
    _conv("conv_depthwise_nobias", X, (4, 1, 3, 3),
          lambda x, w_, b: F.conv2d(x, w_, None, padding=1, groups=4), groups=4, bias=False,
          pad_type="custom", pad=[1, 1, 1, 1]),
    _conv("conv1d_stride", (2, 3, 11), (5, 3, 3), lambda x, w_, b: F.conv1d(x, w_, b, stride=2), pad_type="valid", strides=[2]),
    _conv("conv3d", (1, 2, 4, 5, 6), (3, 2, 2, 2, 2), lambda x, w_, b: F.conv3d(x, w_, b, padding=1),
          pad_type="custom", pad=[1, 1, 1, 1, 1, 1]),
]

WT = w(4, 3, 3, 3)      # conv_transpose weight: (C_in, C_out / groups, kH, kW)
WT_G = w(4, 2, 2, 2)
CASES += [
    Case("conv_transpose_valid_s2", lambda x: mb.conv_transpose(x=x, weight=WT, strides=[2, 2], pad_type="valid"),
         lambda x: F.conv_transpose2d(x, torch.from_numpy(WT), stride=2), rng_inputs((1, 4, 5, 6)), atol=1e-4),
    Case("conv_transpose_custom_pad", lambda x: mb.conv_transpose(x=x, weight=WT, strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1]),
         lambda x: F.conv_transpose2d(x, torch.from_numpy(WT), stride=2, padding=1), rng_inputs((1, 4, 5, 6)), atol=1e-4),
    Case("conv_transpose_groups_k_eq_s", lambda x: mb.conv_transpose(x=x, weight=WT_G, strides=[2, 2], groups=2, pad_type="valid"),
         lambda x: F.conv_transpose2d(x, torch.from_numpy(WT_G), stride=2, groups=2), rng_inputs((1, 4, 3, 3)), atol=1e-4),
    Case("conv_transpose_output_shape", lambda x: mb.conv_transpose(
        x=x, weight=WT, strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1], output_shape=[1, 3, 10, 12]),
        lambda x: F.conv_transpose2d(x, torch.from_numpy(WT), stride=2, padding=1, output_padding=1),
        rng_inputs((1, 4, 5, 6)), atol=1e-4),
]

P = rng_inputs((1, 3, 7, 9), seed=11)
CASES += [
    Case("avg_pool_k1_s4", lambda x: mb.avg_pool(x=x, kernel_sizes=[1, 1], strides=[4, 4], pad_type="valid"),
         lambda x: F.avg_pool2d(x, 1, 4), P),
    Case("avg_pool_pad_include", lambda x: mb.avg_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                                       pad=[1, 1, 1, 1], exclude_padding_from_average=False),
         lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True), P),
    Case("avg_pool_pad_exclude", lambda x: mb.avg_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                                       pad=[1, 1, 1, 1], exclude_padding_from_average=True),
         lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), P),
    Case("avg_pool_ceil", lambda x: mb.avg_pool(x=x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid", ceil_mode=True),
         lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True), P),
    Case("max_pool_ceil_pad", lambda x: mb.max_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                                    pad=[1, 1, 1, 1], ceil_mode=True),
         lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), P),
    Case("max_pool_same", lambda x: mb.max_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="same"),
         lambda x: F.max_pool2d(F.pad(x, [1, 1, 1, 1], value=float("-inf")), 3, 2), P),
    Case("max_pool1d", lambda x: mb.max_pool(x=x, kernel_sizes=[2], strides=[2], pad_type="valid"),
         lambda x: F.max_pool1d(x, 2, 2), rng_inputs((2, 3, 9))),
    Case("batch_norm", lambda x: mb.batch_norm(x=x, mean=np.array([0.1, -0.2, 0.3], np.float32),
                                               variance=np.array([1.5, 0.5, 2.0], np.float32),
                                               gamma=np.array([1.0, 2.0, 0.5], np.float32),
                                               beta=np.array([0.0, 0.1, -0.1], np.float32), epsilon=1e-3),
         lambda x: F.batch_norm(x, torch.tensor([0.1, -0.2, 0.3]), torch.tensor([1.5, 0.5, 2.0]),
                                torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.0, 0.1, -0.1]), eps=1e-3), P),
    Case("layer_norm_last", lambda x: mb.layer_norm(x=x, axes=[-1], gamma=np.linspace(0.5, 1.5, 9).astype(np.float32),
                                                    beta=np.linspace(-1, 1, 9).astype(np.float32), epsilon=1e-6),
         lambda x: F.layer_norm(x, (9,), torch.linspace(0.5, 1.5, 9), torch.linspace(-1, 1, 9), 1e-6), P, atol=1e-4),
    Case("layer_norm_channels", lambda x: mb.layer_norm(x=x, axes=[1], epsilon=1e-5),
         lambda x: F.layer_norm(x.permute(0, 2, 3, 1), (3,), eps=1e-5).permute(0, 3, 1, 2), P, atol=1e-4),
    Case("instance_norm", lambda x: mb.instance_norm(x=x, epsilon=1e-5), lambda x: F.instance_norm(x, eps=1e-5), P, atol=1e-4),
    Case("l2_norm", lambda x: mb.l2_norm(x=x, epsilon=1e-6),
         lambda x: x / torch.sqrt((x * x).sum(dim=(1, 2, 3), keepdim=True) + 1e-6), P),
]
