"""Run an artifact in its host runtime on the parity batch and compare with PyTorch."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..converters.table import TargetSpec
from ..errors import EdgeVitDeployError
from ..models._config import ModelConfig
from .inputs import parity_inputs
from .mil.errors import MilOpExecutionError
from .report import ParityReport, Thresholds
from .validator import validate_outputs

log = logging.getLogger(__name__)


def reference_outputs(model: nn.Module, inputs: np.ndarray, batch: int = 8) -> np.ndarray:
    outs = []
    with torch.no_grad():
        for i in range(0, inputs.shape[0], batch):
            outs.append(model(torch.from_numpy(inputs[i:i + batch])).float().numpy())
    return np.concatenate(outs, axis=0)


def check_parity(model: nn.Module, cfg: ModelConfig, path: Path, spec: TargetSpec, precision: str,
                 coreml_executor: str = "auto", thresholds: Thresholds | None = None,
                 inputs: np.ndarray | None = None, threads: int = 1) -> ParityReport:
    """The parity report of one artifact. Never raises for a failed check: the report says it."""
    thresholds = thresholds or Thresholds.for_precision(precision)
    runtime = spec.load_host_runtime()
    reason = runtime.unavailable_reason()
    if reason:
        return ParityReport.not_executed(reason, executor=runtime.name)
    x = parity_inputs(cfg) if inputs is None else inputs
    options = {"executor": coreml_executor} if spec.supports_image_input else {}
    try:
        session = runtime.load(Path(path), threads=threads, **options)
        candidate = session.run(x)
    except MilOpExecutionError as exc:  # an op that crashed while running: a broken program, not a skip
        return ParityReport(executed=True, passed=False, executor=runtime.name, reason=str(exc), failures=[str(exc)])
    except EdgeVitDeployError as exc:  # runtime unavailable here, op the reference executor lacks, ...
        log.warning("%s: not executed: %s", spec.target, exc)
        return ParityReport.not_executed(str(exc), executor=runtime.name)
    except Exception as exc:  # the runtime rejected the artifact: that is a failure, not a skip
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        return ParityReport(executed=True, passed=False, executor=runtime.name,
                            reason=f"the runtime failed to run the artifact: {text}",
                            failures=[f"runtime error: {text}"])
    reference = reference_outputs(model, x)
    return validate_outputs(reference, candidate, thresholds, executor=session.executor)
