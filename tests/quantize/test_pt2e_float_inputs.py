"""A module kept in float on the PT2E targets (``--exclude``, ``--target-sqnr``) reads a float tensor, not one
the producer's output observer already rounded to int8 (EfficientNet-Lite2: the stem's ReLU6 output stayed int8
with the strided depthwise conv in float), unless another quantized op reads that tensor."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("litert_torch")

from edgevit_deploy.quantize.pt2e import litert_quantizer  # noqa: E402


class StemDw(nn.Module):
    """conv -> ReLU6 -> TF "same" pad -> strided depthwise -> ReLU6 -> 1x1; ``side``: a second, quantized
    reader of the stem's output."""

    def __init__(self, side: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.side = nn.Conv2d(8, 8, 3, stride=2) if side else None
        self.act1, self.act2 = nn.ReLU6(), nn.ReLU6()  # modules, as timm has them (exported as hardtanh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act1(self.stem(x))
        y = self.pw(self.act2(self.dw(F.pad(s, (0, 1, 0, 1)))))
        if self.side is not None:
            y = y + self.side(F.pad(s, (0, 1, 0, 1)))
        return y


def _stem_output_observed(model: nn.Module, float_modules: tuple[str, ...]) -> bool:
    """Whether the prepared graph puts an observer on the stem's ReLU6 output (the tensor the pad reads)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    x = torch.randn(1, 3, 16, 16)
    gm = torch.export.export(model.eval(), (x,)).module()
    quantizer = litert_quantizer(False)
    quantizer.float_modules = float_modules
    prepared = prepare_pt2e(gm, quantizer)
    relu6 = next(n for n in prepared.graph.nodes if "hardtanh" in str(n.target))
    observers = [u for u in relu6.users if u.op == "call_module"]
    prepared(x)  # the prepared graph still runs
    return bool(observers)


def test_the_tensor_a_float_module_reads_is_not_rounded_to_int8():
    torch.manual_seed(0)
    model = StemDw()
    assert _stem_output_observed(model, ())  # all quantized: the stem's output is int8
    assert not _stem_output_observed(model, ("dw",))


def test_it_stays_int8_when_a_quantized_op_also_reads_it():
    torch.manual_seed(0)
    assert _stem_output_observed(StemDw(side=True), ("dw",))
