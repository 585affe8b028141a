"""The per-op cases of tests/verify/test_mil_ops_elementwise.py (element-wise ops).

tests/verify/test_mil_coverage.py checks that together the case tables exercise every op the reference
executor implements."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb

from .mil_fixtures import Case, rng_inputs

A, B = (2, 3, 4, 5), (3, 1, 5)          # broadcasting shapes
P = rng_inputs(A, seed=1, low=0.1, high=2.0)[0]      # positive inputs for log / sqrt / pow
U = rng_inputs(A, seed=2, low=-0.9, high=0.9)[0]     # inside (-1, 1) for asin / atanh


def _binary(name, fn, x=None, y=None):
    x, y = (rng_inputs(A, B, seed=3) if x is None else (x, y))
    return Case(f"{name}", lambda a, b: getattr(mb, name)(x=a, y=b), fn, [x, y])


def _unary(name, fn, x=None, **kw):
    x = rng_inputs(A, seed=4)[0] if x is None else x
    return Case(f"{name}", lambda a: getattr(mb, name)(x=a, **kw), fn, [x], atol=2e-5)


INT_X = np.array([[7, -7, 9, -9]], dtype=np.int32)
INT_Y = np.array([[2, 2, -4, -4]], dtype=np.int32)

CASES = [
    _binary("add", torch.add), _binary("sub", torch.sub), _binary("mul", torch.mul),
    _binary("real_div", torch.div), _binary("maximum", torch.maximum), _binary("minimum", torch.minimum),
    _binary("pow", torch.pow, P, rng_inputs(B, seed=5)[0]),
    _binary("greater", torch.gt), _binary("less_equal", torch.le), _binary("equal", torch.eq),
    Case("floor_div_int", lambda a, b: mb.floor_div(x=a, y=b), lambda a, b: torch.div(a, b, rounding_mode="floor"), [INT_X, INT_Y]),
    Case("mod_int", lambda a, b: mb.mod(x=a, y=b), torch.remainder, [INT_X, INT_Y]),
    Case("add_scalar_const", lambda a: mb.add(x=a, y=np.float32(0.5)), lambda a: a + 0.5, rng_inputs(A)),
    _unary("abs", torch.abs), _unary("exp", torch.exp), _unary("tanh", torch.tanh), _unary("erf", torch.erf),
    _unary("sqrt", torch.sqrt, P), _unary("floor", torch.floor), _unary("ceil", torch.ceil),
    _unary("sign", torch.sign), _unary("sin", torch.sin), _unary("cos", torch.cos), _unary("square", torch.square),
    _unary("asin", torch.asin, U), _unary("atanh", torch.atanh, U),
    _unary("round", torch.round, np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49], dtype=np.float32)),
    _unary("log", lambda a: torch.log(a + 1e-3), P, epsilon=1e-3),
    _unary("rsqrt", lambda a: torch.rsqrt(a + 1e-6), P, epsilon=1e-6),
    _unary("inverse", lambda a: 1 / (a + 1e-4), P),
    _unary("clip", lambda a: torch.clamp(a, -0.5, 0.7), alpha=-0.5, beta=0.7),
    _unary("relu", torch.relu), _unary("relu6", F.relu6, rng_inputs(A, seed=6)[0] * 5),
    _unary("sigmoid", torch.sigmoid), _unary("silu", F.silu),
    _unary("sigmoid_hard", lambda a: torch.clamp(a / 6 + 0.5, 0, 1), alpha=1 / 6, beta=0.5),
    _unary("gelu", F.gelu, mode="EXACT"),
    Case("gelu_tanh", lambda a: mb.gelu(x=a, mode="TANH_APPROXIMATION"), lambda a: F.gelu(a, approximate="tanh"), rng_inputs(A)),
    Case("gelu_sigmoid", lambda a: mb.gelu(x=a, mode="SIGMOID_APPROXIMATION"), lambda a: a * torch.sigmoid(1.702 * a), rng_inputs(A)),
    _unary("leaky_relu", lambda a: F.leaky_relu(a, 0.1), alpha=0.1),
    _unary("elu", lambda a: F.elu(a, 0.7), alpha=0.7),
    _unary("softplus", F.softplus), _unary("softsign", F.softsign),
    _unary("thresholded_relu", lambda a: torch.where(a >= 0.3, a, torch.zeros_like(a)), alpha=0.3),
    Case("prelu", lambda a: mb.prelu(x=a, alpha=np.array([0.1, 0.2, 0.3], dtype=np.float32)),
         lambda a: F.prelu(a, torch.tensor([0.1, 0.2, 0.3])), rng_inputs((2, 3, 4, 4))),
    Case("softmax_axis1", lambda a: mb.softmax(x=a, axis=1), lambda a: torch.softmax(a, 1), rng_inputs(A)),
    Case("softmax_neg_axis", lambda a: mb.softmax(x=a, axis=-1), lambda a: torch.softmax(a, -1), rng_inputs(A)),
    Case("cast_fp32_int32", lambda a: mb.cast(x=a, dtype="int32"), lambda a: a.to(torch.int32),
         [np.array([1.7, -1.7, 2.5, -0.2], dtype=np.float32)]),
    Case("select", lambda c, a, b: mb.select(cond=c, a=a, b=b), lambda c, a, b: torch.where(c, a, b),
         [np.array([[True, False, True]]), *rng_inputs((2, 3), (2, 3))]),
    _unary("atan", torch.atan), _unary("acos", torch.acos, U), _unary("tan", torch.tan, U), _unary("sinh", torch.sinh),
    _unary("cosh", torch.cosh), _unary("exp2", torch.exp2), _unary("identity", lambda a: a),
    _unary("threshold", lambda a: torch.clamp(a, min=0.2), alpha=0.2),
    _unary("scaled_tanh", lambda a: 1.5 * torch.tanh(0.5 * a), alpha=1.5, beta=0.5),
    _unary("linear_activation", lambda a: 2 * a - 1, alpha=2.0, beta=-1.0),
    _unary("clamped_relu", lambda a: torch.clamp(torch.where(a >= 0, a, 0.1 * a), max=0.8), alpha=0.1, beta=0.8),
    Case("softplus_parametric", lambda a: mb.softplus_parametric(x=a, alpha=np.array([1.0, 2.0, 0.5], np.float32),
                                                                 beta=np.array([0.5, 1.0, 2.0], np.float32)),
         lambda a: torch.tensor([1.0, 2.0, 0.5]).reshape(1, 3, 1, 1) * F.softplus(torch.tensor([0.5, 1.0, 2.0]).reshape(1, 3, 1, 1) * a),
         rng_inputs((2, 3, 4, 4))),
    _binary("not_equal", torch.ne), _binary("greater_equal", torch.ge), _binary("less", torch.lt),
    Case("logical_ops", lambda a, b: [mb.logical_and(x=a, y=b), mb.logical_or(x=a, y=b), mb.logical_xor(x=a, y=b),
                                      mb.logical_not(x=a)],
         lambda a, b: [a & b, a | b, a ^ b, ~a], [np.array([True, True, False, False]), np.array([True, False, True, False])]),
    # fp16 programs: inputs, weights and every op output are fp16
    Case("fp16_add", lambda a, b: mb.add(x=a, y=b), torch.add,
         [np.array([1.0, 1000.0, 3e-4], np.float32), np.array([1e-3, 0.3, 1e-7], np.float32)], fp16=True, atol=0),
    Case("fp16_mul_overflow", lambda a, b: mb.mul(x=a, y=b), torch.mul,
         [np.array([300.0, 2.0], np.float32), np.array([300.0, 3.0], np.float32)], fp16=True, atol=0),
    Case("fp16_softmax", lambda a: mb.softmax(x=a, axis=-1), lambda a: torch.softmax(a, -1), rng_inputs(A), fp16=True, atol=1e-3),
]
