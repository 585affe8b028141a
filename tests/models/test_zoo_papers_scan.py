"""VCMamba's exportable selective scan: the chunked parallel form equals the step-by-step recurrence."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgevit_deploy.models.vcmamba import (
    PlainMamba2D,
    selective_scan_chunked,
    selective_scan_reference,
    snake_orders,
)


def _scan_inputs(L: int, seed: int, b: int = 2, d: int = 6, n: int = 5, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, L, generator=g, dtype=dtype)
    delta = F.softplus(torch.randn(b, d, L, generator=g, dtype=dtype) - 1.0)
    A = -torch.exp(torch.randn(d, n, generator=g, dtype=dtype))
    B = torch.randn(b, n, L, generator=g, dtype=dtype)
    C = torch.randn(b, n, L, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    return u, delta, A, B, C, D


@pytest.mark.parametrize("L", [1, 7, 16, 17, 49, 100])
@pytest.mark.parametrize("chunk_size", [1, 5, 16, 64])
def test_chunked_scan_equals_sequential_scan(L, chunk_size):
    args = _scan_inputs(L, seed=L * 100 + chunk_size)
    expected = selective_scan_reference(*args)
    torch.testing.assert_close(selective_scan_chunked(*args, chunk_size=chunk_size), expected, atol=1e-5,
                               rtol=1e-5)


def test_chunked_scan_carries_state_across_chunks():
    """Long-memory decays (delta*A ~ -1e-3) make the state of the first chunk matter at the end."""
    u, delta, A, B, C, D = _scan_inputs(40, seed=3)
    delta = torch.full_like(delta, 1e-3)
    expected = selective_scan_reference(u, delta, A, B, C, D)
    first_chunk_only = selective_scan_chunked(u[..., 8:], delta[..., 8:], A, B[..., 8:], C[..., 8:], D, 8)
    assert (first_chunk_only - expected[..., 8:]).abs().max() > 1e-3  # dropping the state would show
    torch.testing.assert_close(selective_scan_chunked(u, delta, A, B, C, D, 8), expected, atol=1e-5, rtol=1e-5)


def test_chunked_scan_rejects_a_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan_chunked(*_scan_inputs(4, seed=0), chunk_size=0)


@pytest.mark.parametrize("hw", [(2, 2), (3, 3), (2, 5), (7, 7)])
def test_mamba_mixer_chunked_equals_reference(hw, monkeypatch):
    """The whole 4-direction mixer (batched directions, permutations, direction offsets) gives the same
    output with the chunked scan as with the reference recurrence."""
    torch.manual_seed(0)
    mixer = PlainMamba2D(8, d_state=4, chunk_size=3).eval()
    with torch.no_grad():
        mixer.direction_Bs.normal_()
    x = torch.randn(2, 8, *hw)
    with torch.no_grad():
        chunked = mixer(x)
        monkeypatch.setattr(PlainMamba2D, "scan", lambda self, *a: selective_scan_reference(*a))
        reference = mixer(x)
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (3, 2), (4, 4), (5, 7)])
def test_snake_orders_are_continuous_scans_with_consistent_directions(hw):
    H, W = hw
    orders, inverses, directions = snake_orders(H, W)
    starts = [0, (H - 1) * W + (W - 1 if H % 2 else 0), 0, (H - 1 if W % 2 else 0) * W + W - 1]
    step = {1: (0, 1), 2: (0, -1), 3: (-1, 0), 4: (1, 0)}
    for order, inverse, dirs, start in zip(orders, inverses, directions, starts):
        assert sorted(order) == list(range(H * W))
        assert [order[p] for p in inverse] == list(range(H * W))
        assert order[0] == start and dirs[0] == 0
        for t in range(1, H * W):
            (i0, j0), (i1, j1) = divmod(order[t - 1], W), divmod(order[t], W)
            assert (i1 - i0, j1 - j0) == step[dirs[t]]  # each step moves to a neighbour, coded as it moves


@pytest.mark.parametrize("hw", [(2, 2), (7, 7)])
def test_mamba_mixer_exports_to_core_ml_friendly_aten(hw):
    """torch.export traces the mixer with one chunk (2x2) and several (7x7); after the decompositions
    coremltools runs, no ``aten.alias`` node (which it cannot convert) is left, and the program matches."""
    torch.manual_seed(0)
    mixer = PlainMamba2D(8, d_state=4, chunk_size=16).eval()
    x = torch.randn(1, 8, *hw)
    program = torch.export.export(mixer, (x,)).run_decompositions({})
    assert not [n for n in program.graph.nodes if "alias" in str(n.target)]
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), mixer(x))
