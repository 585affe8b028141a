"""THE acceptance policy: which numbers an artifact must reach, per variant, decided by the verifier.

The same :class:`AcceptancePolicy` judges an artifact when ``edgevit-export`` makes it (``check_parity``, the
quantization fidelity report) and when ``edgevit-verify`` checks it again, so both give the same verdict. The
bars come from :data:`BARS` (and the user's flags), never from the artifact: its metadata may only *suggest*
a variant, and :mod:`.contents` checks that suggestion against what the file holds.

Bars per variant, as export applied them before there was one policy (no verdict changed):
fp32 and fp16 are the float parity bars of the parity batch; the quantized modes are the floors set below
what ``benchmarks/quant_fidelity.py`` measured (docs/quantization.md), judged on the held-out views, with a
held-out top-1 agreement floor when the model has trained weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from ..converters.base import Variant
from ..errors import UnsupportedOptionError
from .report import Thresholds

# how strict each variant's bars are (higher: stricter). A claim is "looser than the contents" when its rank is
# below that of every variant the contents allow.
STRICTNESS: dict[Variant, int] = {
    Variant.FP32: 6,
    Variant.FP16: 5,
    Variant.W8: 4,
    Variant.INT8_DYNAMIC: 3,
    Variant.PALETTIZE6: 3,
    Variant.INT8: 2,
    Variant.PALETTIZE4: 1,
}

# Float bars: the parity batch (seeded noise + photographs) against PyTorch.
# Quantized floors, set below what benchmarks/quant_fidelity.py measured (docs/quantization.md has the table) with
# a margin for other models: EfficientNet-Lite0 (ImageNet weights, 224 px) and EdgeViT-XXS (random, 64 px):
#   int8          17.1-17.2 dB / 21.6-27.3 dB   (Lite0 held-out top-1 agreement 91.7 % on all three targets)
#   int8-dynamic  18.3 dB (TFLite) / 32.7-32.8 dB
#   w8            25.6 dB / 40.3 dB
#   palettize6    14.2 dB / 27.9 dB
#   palettize4    -0.2 dB (fails: 16 centroids per tensor destroy Lite0) / 16.9 dB
BARS: dict[Variant, Thresholds] = {
    Variant.FP32: Thresholds(max_abs=1e-4, cosine=0.9999, top1_agreement=1.0, sqnr_db=None),
    Variant.FP16: Thresholds(max_abs=None, cosine=0.999, top1_agreement=0.9, sqnr_db=30.0),
    Variant.INT8: Thresholds(max_abs=None, cosine=0.90, top1_agreement=None, sqnr_db=8.0),
    Variant.INT8_DYNAMIC: Thresholds(max_abs=None, cosine=0.95, top1_agreement=None, sqnr_db=12.0),
    Variant.W8: Thresholds(max_abs=None, cosine=0.995, top1_agreement=None, sqnr_db=20.0),
    Variant.PALETTIZE6: Thresholds(max_abs=None, cosine=0.97, top1_agreement=None, sqnr_db=12.0),
    Variant.PALETTIZE4: Thresholds(max_abs=None, cosine=0.80, top1_agreement=None, sqnr_db=4.0),
}
# with real weights a classifier must keep its decisions on the held-out views (6 photos x 8 views; some crops are
# fp32 near-ties): measured 91.7 % (int8, every target), 89.6 % (TFLite int8-dynamic), 93.8 % (w8), 85.4 %
# (palettize6). The tests also require >= 90 % on the natural photos (tests/quantize/test_quant_lite0.py).
PRETRAINED_TOP1: dict[Variant, float] = {
    Variant.INT8: 0.85,
    Variant.INT8_DYNAMIC: 0.85,
    Variant.W8: 0.90,
    Variant.PALETTIZE6: 0.80,
}


@dataclass(frozen=True)
class ThresholdFlags:
    """The user's own bars (``--max-abs``, ``--min-cosine``, ``--min-sqnr``, ``--min-top1``); None: policy's."""

    max_abs: float | None = None
    min_cosine: float | None = None
    min_sqnr: float | None = None
    min_top1: float | None = None

    def validate(self) -> ThresholdFlags:
        problems = []
        if self.max_abs is not None and not self.max_abs > 0:
            problems.append(f"--max-abs {self.max_abs} must be > 0")
        if self.min_cosine is not None and not -1 <= self.min_cosine <= 1:
            problems.append(f"--min-cosine {self.min_cosine} must be within [-1, 1]")
        if self.min_top1 is not None and not 0 <= self.min_top1 <= 1:
            problems.append(f"--min-top1 {self.min_top1} must be a fraction within [0, 1] (0.9 = 90 %)")
        if self.min_sqnr is not None and self.min_sqnr != self.min_sqnr:
            problems.append("--min-sqnr must be a number of dB")
        if problems:
            raise UnsupportedOptionError("; ".join(problems))
        return self


# flag -> (Thresholds field, True when a larger value is stricter)
_FLAG_FIELDS = {
    "max_abs": ("max_abs", False),
    "min_cosine": ("cosine", True),
    "min_sqnr": ("sqnr_db", True),
    "min_top1": ("top1_agreement", True),
}


@dataclass(frozen=True)
class AcceptancePolicy:
    """The bars one artifact is judged by: its variant's (plus the trained-weights top-1 floor), then the
    user's flags. A flag tighter than the policy just applies; a looser one applies too, but is listed in
    :attr:`loosened` (and so in the report and the CLI output): never silent."""

    variant: Variant
    pretrained: bool = False
    flags: ThresholdFlags = field(default_factory=ThresholdFlags)

    @classmethod
    def for_variant(
        cls, variant: str | Enum, pretrained: bool = False, flags: ThresholdFlags | None = None
    ) -> AcceptancePolicy:
        return cls(Variant.parse(variant), pretrained, (flags or ThresholdFlags()).validate())

    @property
    def base(self) -> Thresholds:
        """The policy's own bars, before the user's flags."""
        bars = BARS[self.variant]
        top1 = PRETRAINED_TOP1.get(self.variant) if self.pretrained else None
        if top1 is not None and (bars.top1_agreement is None or top1 > bars.top1_agreement):
            bars = replace(bars, top1_agreement=top1)
        return bars

    @property
    def thresholds(self) -> Thresholds:
        """The bars applied: the base with every given flag."""
        values = asdict(self.base)
        for flag, (name, _) in _FLAG_FIELDS.items():
            value = getattr(self.flags, flag)
            if value is not None:
                values[name] = float(value)
        return Thresholds(**values)

    @property
    def loosened(self) -> list[str]:
        """One sentence per flag that is looser than the policy's bar."""
        out = []
        base = self.base
        for flag, (name, larger_is_stricter) in _FLAG_FIELDS.items():
            value, bar = getattr(self.flags, flag), getattr(base, name)
            if value is None or bar is None:
                continue  # no flag, or the policy has no such check: any value only adds one
            if (value < bar) if larger_is_stricter else (value > bar):
                out.append(f"--{flag.replace('_', '-')} {value:g} is looser than the {self.variant} policy's {bar:g}")
        return out

    @property
    def uses_held_out_views(self) -> bool:
        """Quantized variants are judged on the held-out views of the calibration photographs (the data their
        floors were measured on); float variants on the parity batch."""
        return self.variant.quantized

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": str(self.variant),
            "pretrained": self.pretrained,
            "policy": asdict(self.base),
            "applied": asdict(self.thresholds),
            "loosened": self.loosened,
        }


def looser_than_contents(claimed: Variant, allowed: frozenset[Variant]) -> bool:
    """True when ``claimed`` has laxer bars than every variant the artifact's contents are consistent with."""
    return bool(allowed) and claimed not in allowed and all(STRICTNESS[claimed] < STRICTNESS[a] for a in allowed)
