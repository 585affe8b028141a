"""THE output validator: every target's numbers go through :func:`validate_outputs`.

Like optimum's ``validate_model_outputs``: every check is run and every failure collected; then one
typed :class:`~edgevit_deploy.errors.ParityError` is raised (or the report is returned with
``passed=False`` when ``raise_on_failure`` is off).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from ..errors import ParityError
from .metrics import cosine, sqnr_db, topk_agreement
from .report import ParityReport, Thresholds

# below this spread of the reference logits, a comparison cannot tell a right artifact from a wrong one
DEGENERATE_STD = 1e-6


def validate_outputs(
    reference: np.ndarray,
    candidate: np.ndarray,
    thresholds: Thresholds,
    executor: str,
    raise_on_failure: bool = False,
) -> ParityReport:
    failures: list[str] = []
    if reference.shape != candidate.shape:
        failures.append(f"output shape {tuple(candidate.shape)} differs from PyTorch's {tuple(reference.shape)}")
        report = ParityReport(
            executed=True,
            passed=False,
            executor=executor,
            failures=failures,
            reason=failures[0],
            num_inputs=int(reference.shape[0]),
            thresholds=asdict(thresholds),
        )
        if raise_on_failure:
            raise ParityError(failures, report)
        return report
    cand = candidate.astype(np.float32)
    if not np.all(np.isfinite(cand)):
        failures.append(f"{int(np.sum(~np.isfinite(cand)))} non-finite values in the output")
    diff = np.abs(reference.astype(np.float64) - cand.astype(np.float64))
    max_abs = float(np.nanmax(diff))
    mean_abs = float(np.nanmean(diff))
    cos = cosine(reference, cand)
    sqnr = sqnr_db(reference, cand)
    top1 = topk_agreement(reference, cand, 1)
    top5 = topk_agreement(reference, cand, 5)
    report = ParityReport(
        executed=True,
        passed=True,
        executor=executor,
        num_inputs=int(reference.shape[0]),
        max_abs=max_abs,
        mean_abs=mean_abs,
        cosine=cos,
        sqnr_db=sqnr,
        top1_agreement=top1,
        top5_agreement=top5,
        thresholds=asdict(thresholds),
    )
    t = thresholds
    spread = float(np.std(reference.astype(np.float64)))
    if spread < DEGENERATE_STD:
        failures.append(
            f"PyTorch's own output is degenerate (std {spread:.1e}): any artifact would match it, so "
            "the check proves nothing; verify with trained weights (--checkpoint), or check the "
            "structure with well-conditioned random weights (--random-init conditioned)"
        )
    if t.max_abs is not None:
        # absolute on logits of order 1 (EdgeViT's); scaled with the logits when they are larger
        limit = t.max_abs * max(1.0, float(np.max(np.abs(reference))))
        if not max_abs <= limit:
            failures.append(f"max abs error {max_abs:.3g} > {limit:.3g}")
    if t.cosine is not None and not cos >= t.cosine:
        failures.append(f"cosine similarity {cos:.6f} < {t.cosine}")
    if t.top1_agreement is not None and not top1 >= t.top1_agreement:
        failures.append(f"top-1 agreement {top1:.1%} < {t.top1_agreement:.0%}")
    if t.sqnr_db is not None and not (sqnr >= t.sqnr_db or math.isinf(sqnr)):
        failures.append(f"SQNR {sqnr:.1f} dB < {t.sqnr_db} dB")
    report.failures = failures
    report.passed = not failures
    report.reason = "; ".join(failures) or None
    if failures and raise_on_failure:
        raise ParityError(failures, report)
    return report
