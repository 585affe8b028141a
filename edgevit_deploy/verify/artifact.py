"""Re-check artifacts that already exist (``edgevit-verify``): target from the suffix, settings from the
metadata the toolkit wrote into them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..converters.base import ArtifactMetadata
from ..converters.table import TARGETS, TargetSpec
from ..errors import EdgeVitDeployError, UnsupportedOptionError
from ..models import create_model
from .parity import check_parity
from .report import ParityReport


@dataclass
class VerifiedArtifact:
    path: Path
    target: str
    precision: str
    size_bytes: int
    parity: ParityReport
    metadata: dict[str, str]


def spec_for_path(path: Path) -> TargetSpec:
    for spec in TARGETS.values():
        if path.name.endswith(spec.suffix):
            return spec
    suffixes = ", ".join(s.suffix for s in TARGETS.values())
    raise UnsupportedOptionError(f"{str(path)!r}: unknown artifact type; expected one of {suffixes}")


def model_for_artifact(path: str | Path, model_name: str, checkpoint: str | Path | None = None,
                       img_size: int | None = None) -> tuple[Any, dict[str, str], ArtifactMetadata | None]:
    """The PyTorch model an artifact was exported from (input size, classes and random-init weights from the
    metadata the toolkit wrote into it), with that metadata (raw and parsed)."""
    path = Path(path)
    spec = spec_for_path(path)
    meta = spec.load_converter().read_metadata(path)
    parsed = ArtifactMetadata.from_strings(meta) if "edgevit_deploy.model" in meta else None
    if img_size is None and parsed is not None:
        shape = parsed.input_shape
        img_size = shape[1] if parsed.layout == "NHWC" else shape[-1]
    num_classes = parsed.num_classes if parsed is not None else None
    model = create_model(model_name, checkpoint=checkpoint, img_size=img_size, num_classes=num_classes)
    if parsed is not None and parsed.random_init != "default" and checkpoint is None:
        from ..export_api import apply_random_init  # the artifact was exported with --random-init: same weights

        apply_random_init(model, model.deploy_cfg, model.checkpoint_sha256, parsed.random_init)
    return model, meta, parsed


def verify_artifact(path: str | Path, model_name: str, checkpoint: str | Path | None = None,
                    img_size: int | None = None, coreml_executor: str = "auto",
                    precision: str | None = None) -> VerifiedArtifact:
    path = Path(path)
    if not path.exists():
        raise EdgeVitDeployError(f"artifact {str(path)!r} does not exist")
    spec = spec_for_path(path)
    model, meta, parsed = model_for_artifact(path, model_name, checkpoint, img_size)
    prec = precision or (parsed.precision if parsed else str(spec.default_precision))
    parity = check_parity(model, model.deploy_cfg, path, spec, prec, coreml_executor=coreml_executor)
    from ..export_api import artifact_size

    return VerifiedArtifact(path, str(spec.target), prec, artifact_size(path), parity, meta)
