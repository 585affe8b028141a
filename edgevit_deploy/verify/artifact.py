"""Re-check artifacts that already exist (``edgevit-verify``): target from the suffix, the whole file parsed up
front, bars from THE acceptance policy (``verify/policy.py``), never from the artifact.

The artifact's metadata may *suggest* a variant, input size and weights; the command line's ``--precision``
(validated) wins over it. A claimed variant looser than what the file's weights and ops show, or metadata
naming another model or checkpoint than the command line, fails the report with the reason, unless
``allow_metadata_mismatch`` (then the report still lists it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..converters.base import ArtifactMetadata
from ..converters.table import TARGETS, TargetSpec
from ..errors import ArtifactReadError, UnsupportedOptionError
from ..export_common import apply_random_init, artifact_size
from ..models import ModelConfig, create_model
from .contents import ArtifactContents, weight_size_mismatch
from .parity import check_parity, has_trained_weights
from .policy import AcceptancePolicy, ThresholdFlags, Variant, looser_than_contents
from .report import ParityReport


@dataclass
class VerifiedArtifact:
    path: Path
    target: str
    precision: str
    size_bytes: int
    parity: ParityReport
    metadata: dict[str, str]
    contents: ArtifactContents | None = None


def spec_for_path(path: Path) -> TargetSpec:
    for spec in TARGETS.values():
        if path.name.endswith(spec.suffix):
            return spec
    suffixes = ", ".join(s.suffix for s in TARGETS.values())
    raise UnsupportedOptionError(f"{str(path)!r}: unknown artifact type; expected one of {suffixes}")


def read_artifact(path: Path) -> tuple[TargetSpec, ArtifactContents, dict[str, str], ArtifactMetadata | None]:
    """Target, contents, raw metadata and parsed toolkit metadata of ``path``; ArtifactReadError (bad input) when
    the file is missing or unreadable."""
    spec = spec_for_path(path)
    if not path.exists():
        raise ArtifactReadError(f"{path} does not exist; pass an artifact edgevit-export wrote")
    contents = spec.load_host_runtime().inspect(path)
    try:
        meta = spec.load_converter().read_metadata(path)
    except Exception as exc:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ArtifactReadError(f"{path}: its metadata cannot be read ({text}); re-export it") from None
    parsed = None
    if "edgevit_deploy.model" in meta:
        try:
            parsed = ArtifactMetadata.from_strings(meta)
        except (KeyError, ValueError) as exc:
            raise ArtifactReadError(
                f"{path}: its edgevit_deploy metadata is malformed ({exc!r}); re-export it, "
                "or pass --img-size and --precision"
            ) from None
    return spec, contents, meta, parsed


def model_for_artifact(
    model_name: str, parsed: ArtifactMetadata | None, checkpoint: str | Path | None = None, img_size: int | None = None
) -> Any:
    """The PyTorch model an artifact was exported from: input size, classes and random-init weights from the
    metadata the toolkit wrote into it (``parsed``), the rest from the command line."""
    if img_size is None and parsed is not None:
        shape = parsed.input_shape
        img_size = shape[1] if parsed.layout == "NHWC" else shape[-1]
    num_classes = parsed.num_classes if parsed is not None else None
    model = create_model(model_name, checkpoint=checkpoint, img_size=img_size, num_classes=num_classes)
    if parsed is not None and parsed.random_init != "default" and checkpoint is None:
        # the artifact was exported with --random-init: same weights
        cfg = cast(ModelConfig, model.deploy_cfg)
        apply_random_init(model, cfg, str(model.checkpoint_sha256), parsed.random_init)
    return model


def verify_artifact(
    path: str | Path,
    model_name: str,
    checkpoint: str | Path | None = None,
    img_size: int | None = None,
    coreml_executor: str = "auto",
    precision: str | None = None,
    flags: ThresholdFlags | None = None,
    allow_metadata_mismatch: bool = False,
    read: tuple[TargetSpec, ArtifactContents, dict[str, str], ArtifactMetadata | None] | None = None,
) -> VerifiedArtifact:
    """Check ``path`` against ``model_name`` under the acceptance policy. ``read``: :func:`read_artifact`'s
    result when the caller already read the file (the CLI reads every file before any slow step)."""
    path = Path(path)
    flags = (flags or ThresholdFlags()).validate()
    requested = Variant.parse(precision) if precision is not None else None  # bad input before any slow step
    spec, contents, meta, parsed = read if read is not None else read_artifact(path)
    model = model_for_artifact(model_name, parsed, checkpoint, img_size)

    # the variant: the command line's, else the metadata's suggestion, else the strictest the contents allow
    if requested is not None:
        claimed, source = requested, "--precision"
    elif parsed is not None:
        claimed = Variant.parse(parsed.precision, source=f"{path.name}: the metadata's precision")
        source = "the artifact's metadata"
    else:
        claimed, source = contents.strictest, "the artifact's contents"
    mismatches: list[str] = []
    judged = claimed
    if looser_than_contents(claimed, contents.allowed):
        mismatches.append(
            f"{source} claims {claimed}, but the artifact holds {contents.evidence}, which only a "
            f"{'/'.join(sorted(map(str, contents.allowed)))} artifact has: {claimed}'s bars would be "
            "looser than its contents allow"
        )
        if not allow_metadata_mismatch:
            judged = contents.loosest  # the laxest bars the contents allow, still stricter than the claim
    # where the contents alone cannot tell float from quantized (a .pte's delegate payloads), the weight size can
    undecided = Variant.FP32 in contents.allowed and claimed in contents.allowed
    size_claim = (
        weight_size_mismatch(claimed, artifact_size(path), sum(p.numel() for p in model.parameters()))
        if undecided
        else None
    )
    if size_claim is not None:
        mismatches.append(f"{source}: {size_claim}")
        if not allow_metadata_mismatch:
            judged = Variant.FP32  # the weights are float-sized: held to float bars
    if parsed is not None:
        if parsed.model != model_name:
            mismatches.append(f"the metadata names model {parsed.model!r}, the command line --model {model_name!r}")
        sha = getattr(model, "checkpoint_sha256", "random-init")
        if parsed.checkpoint_sha256 != sha:
            mismatches.append(
                f"the metadata names checkpoint sha256 {parsed.checkpoint_sha256[:16]}, the "
                f"command line's weights are {sha[:16]}"
                + ("" if checkpoint is not None else " (no --checkpoint given)")
            )

    policy = AcceptancePolicy(judged, pretrained=has_trained_weights(model), flags=flags)
    parity = check_parity(
        model, model.deploy_cfg, path, spec, str(judged), coreml_executor=coreml_executor, policy=policy
    )
    apply_mismatches(parity, mismatches, allow_metadata_mismatch)

    return VerifiedArtifact(path, str(spec.target), str(judged), artifact_size(path), parity, meta, contents)


def apply_mismatches(report: ParityReport, mismatches: list[str], allowed: bool) -> None:
    """Record metadata mismatches; unless ``allowed`` they fail the report. A report that could not execute
    stays ``executed: false`` (nothing ran) but ``passed: false``; edgevit-verify exits 1 on it."""
    report.metadata_mismatch = list(mismatches)
    if not mismatches or allowed:
        return
    failures = [f"metadata mismatch: {m} (pass --allow-metadata-mismatch to accept it)" for m in mismatches]
    report.failures = failures + list(report.failures)
    report.passed = False
    report.reason = "; ".join(report.failures if report.executed else failures + [f"not executed: {report.reason}"])
