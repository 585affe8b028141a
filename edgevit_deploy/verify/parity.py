"""Run an artifact in its host runtime on the policy's batch and compare with PyTorch."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..converters.table import TargetSpec
from ..models._config import ModelConfig
from .inputs import parity_inputs
from .policy import AcceptancePolicy
from .report import ParityReport
from .run import run_artifact
from .validator import validate_outputs

log = logging.getLogger(__name__)


def reference_outputs(model: nn.Module, inputs: np.ndarray, batch: int = 8) -> np.ndarray:
    outs = []
    with torch.no_grad():
        for i in range(0, inputs.shape[0], batch):
            outs.append(model(torch.from_numpy(inputs[i : i + batch])).float().numpy())
    return np.concatenate(outs, axis=0)


def has_trained_weights(model: nn.Module) -> bool:
    """Whether the model carries a checkpoint (its quantized floors then include held-out top-1 agreement)."""
    return getattr(model, "checkpoint_sha256", "random-init") != "random-init"


def policy_inputs(policy: AcceptancePolicy, cfg: ModelConfig) -> np.ndarray:
    """The batch the policy's bars were measured on: the parity batch for float variants, the built-in held-out
    views (never calibration images) for quantized ones, as the export's fidelity report uses by default."""
    if policy.uses_held_out_views:
        from ..quantize.calibration import builtin_held_out

        return builtin_held_out(cfg).data
    return parity_inputs(cfg)


def judge(reference: np.ndarray, candidate: np.ndarray, policy: AcceptancePolicy, executor: str) -> ParityReport:
    """The validator's report under ``policy``, which it records (variant, bars, loosened flags)."""
    report = validate_outputs(reference, candidate, policy.thresholds, executor=executor)
    return stamp(report, policy)


def stamp(report: ParityReport, policy: AcceptancePolicy) -> ParityReport:
    report.variant = str(policy.variant)
    report.thresholds = asdict(policy.thresholds)
    report.loosened = list(policy.loosened)
    return report


def check_parity(
    model: nn.Module,
    cfg: ModelConfig,
    path: Path,
    spec: TargetSpec,
    precision: str,
    coreml_executor: str = "auto",
    inputs: np.ndarray | None = None,
    threads: int = 1,
    policy: AcceptancePolicy | None = None,
) -> ParityReport:
    """The parity report of one artifact under the acceptance policy of ``precision`` (validated: an unknown
    name raises UnsupportedOptionError). Never raises for a failed check or a broken artifact: the report
    says it. ``policy``: the policy itself (with the user's flags), instead of ``precision``'s."""
    policy = policy or AcceptancePolicy.for_variant(precision, pretrained=has_trained_weights(model))
    x = policy_inputs(policy, cfg) if inputs is None else inputs
    outcome = run_artifact(spec, Path(path), x, threads=threads, coreml_executor=coreml_executor)
    if outcome.outputs is None:  # the artifact did not run (not outcome.ok)
        return stamp(outcome.report(), policy)
    reference = reference_outputs(model, x)
    return judge(reference, outcome.outputs, policy, outcome.executor)
