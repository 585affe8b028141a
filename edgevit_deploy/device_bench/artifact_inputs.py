"""Artifacts given by path (``edgevit-bench run FILE``, ``edgevit-bench sweep --artifacts DIR``): what a file is
and how close it is to PyTorch, before anything is measured.

What a given file is (target, model, variant, input size) comes from, in this order:

1. the file's own toolkit metadata, read by its target's converter (``Converter.read_metadata``, the reader
   ``edgevit-verify`` uses: ONNX metadata_props, the TFLite metadata buffer, Core ML user_defined, the
   ``.pte.json`` sidecar) and parsed by ``ArtifactMetadata.from_strings``;
2. the row about these very bytes (same file name AND same sha256) in the ``report.json`` of the folder the
   file sits in, written by ``edgevit-export``;
3. the command line's ``--model`` / ``--precision`` / ``--img-size``, only where 1 and 2 say nothing. A flag
   that names another value than the metadata is an error, never a silent override.

The report's row also gives the parity figures (max abs, cosine, SQNR, top-1, pass/fail and the policy's bars)
that every measured row of the file carries (``Measurement.parity`` with ``"source": "report.json"``), unless
an on-device check of the runner replaces them. A report row whose sha256 is not the file's describes other
bytes: it is ignored (with a warning), so no row vouches for a file it did not check.

Every problem here is bad input (exit 2): one line naming the file and the flag or step that fixes it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactReadError, EdgeVitDeployError
from .artifacts import sha256_of, size_of

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"  # what edgevit-export writes into its --out folder
#: the flags that supply what a file's metadata lacks, by field
FLAG_OF = {"model": "--model NAME", "precision": "--precision VARIANT", "img_size": "--img-size N"}


class ArtifactInputError(EdgeVitDeployError, ValueError):
    """A given artifact (path or export folder) that cannot be timed as given: missing, unknown type, no
    metadata for what the flags could supply, a flag contradicting the metadata, failed parity (bad input)."""


@dataclass(frozen=True)
class GivenArtifact:
    """One file (or ``.mlpackage``) to time as it is, and what is known about it."""

    path: Path  # absolute
    target: str
    model: str
    precision: str  # the variant: fp32, fp16, int8, ...
    img_size: int
    sha256: str  # ``artifacts.sha256_of``: of the file, or the package tree's digest
    size_bytes: int
    parity: dict[str, Any] = field(default_factory=dict, compare=False)  # report.json's figures ({}: unknown)
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # field -> "metadata" | "report.json" | flag

    @property
    def parity_failed(self) -> bool:
        """The report says the file was checked and failed (a check that could not run is not a failure)."""
        return bool(self.parity) and bool(self.parity.get("executed")) and not self.parity.get("passed")


def artifact_suffixes() -> tuple[str, ...]:
    from ..converters.table import TARGETS

    return tuple(spec.suffix for spec in TARGETS.values())


def looks_like_artifact(arg: str) -> bool:
    """``arg`` names an artifact file (its suffix is a target's: .onnx, .tflite, .mlpackage, .pte), not a model.
    Model names never end in these suffixes; a path to anything else is not taken for an artifact."""
    return str(arg).rstrip("/\\").lower().endswith(artifact_suffixes())


def target_of(path: Path) -> str:
    from ..converters.table import TARGETS

    name = path.name.lower()
    for spec in TARGETS.values():
        if name.endswith(spec.suffix):
            return str(spec.target)
    raise ArtifactInputError(f"{path}: unknown artifact type; expected one of {', '.join(artifact_suffixes())}")


def read_toolkit_metadata(path: Path, target: str) -> Any:
    """The toolkit's metadata of ``path`` (``converters.base.ArtifactMetadata``) or None when the file has none;
    read by the target's own converter, the one reader (as ``edgevit-verify`` does)."""
    from ..converters.base import ArtifactMetadata
    from ..converters.table import get_spec

    try:
        meta = get_spec(target).load_converter().read_metadata(path)
    except EdgeVitDeployError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ArtifactReadError(
            f"{path}: not a readable {target} artifact ({text}); pass the file edgevit-export wrote"
        ) from None
    if "edgevit_deploy.model" not in meta:
        return None
    try:
        return ArtifactMetadata.from_strings(meta)
    except (KeyError, ValueError) as exc:
        log.warning("%s: its edgevit_deploy metadata is malformed (%r); not used", path.name, exc)
        return None


def read_report(folder: Path) -> dict[str, Any] | None:
    """``folder/report.json`` as edgevit-export wrote it, or None when there is none (or it is not one)."""
    path = folder / REPORT_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s is not readable JSON (%s); not used", path, exc)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        log.warning("%s is not an edgevit-export report (no 'artifacts' list); not used", path)
        return None
    return data


def _row_file(row: dict[str, Any]) -> str | None:
    name = row.get("file") or (Path(str(row["path"])).name if row.get("path") else None)
    return str(name) if name else None


def report_row(report: dict[str, Any] | None, path: Path, sha256: str) -> dict[str, Any] | None:
    """The report's row about ``path``'s bytes: same file name and same sha256 (the report's rows carry the
    top-level model / input size when they lack them). A row naming the file with another sha256 is stale."""
    if report is None:
        return None
    for row in report["artifacts"]:
        if not isinstance(row, dict) or _row_file(row) != path.name:
            continue
        if row.get("sha256") != sha256:
            log.warning(
                "%s: %s's row describes other bytes (sha256 %s, the file is %s); its figures are not used",
                path.name,
                REPORT_NAME,
                str(row.get("sha256"))[:12],
                sha256[:12],
            )
            return None
        top: dict[str, Any] = {k: report[k] for k in ("model", "input_size") if k in report}
        return top | row
    return None


def report_parity(row: dict[str, Any] | None, report_path: Path) -> dict[str, Any]:
    """The parity figures of a report row, as a row's ``parity``: the ParityReport fields plus where they came
    from (``source``, ``report``); empty when the row has none."""
    parity = row.get("parity") if row else None
    if not isinstance(parity, dict) or not parity:
        return {}
    return {**parity, "source": REPORT_NAME, "report": str(report_path)}


def _img_size(meta: Any) -> int:
    shape = tuple(meta.input_shape)
    return int(shape[1] if meta.layout == "NHWC" else shape[-1])


def resolve(
    path: str | Path,
    model: str | None = None,
    precision: str | None = None,
    img_size: int | None = None,
    report: dict[str, Any] | None = None,
) -> GivenArtifact:
    """What ``path`` is, from its metadata, its folder's report.json (``report``: already read) and the flags
    (see the module docstring). Raises :class:`ArtifactInputError` (or ArtifactReadError) on bad input."""
    from ..converters.base import Variant

    path = Path(path).absolute()
    if not path.exists():
        raise ArtifactInputError(f"{path} does not exist; pass an artifact file edgevit-export wrote, or a model name")
    target = target_of(path)
    if precision is not None:
        precision = str(Variant.parse(precision))  # an unknown name lists the valid ones
    if img_size is not None and img_size < 8:
        raise ArtifactInputError(f"--img-size must be >= 8, got {img_size}")
    meta = read_toolkit_metadata(path, target)
    sha = sha256_of(path)
    if report is None:
        report = read_report(path.parent)
    row = report_row(report, path, sha)

    known: dict[str, tuple[Any, str]] = {}  # field -> (value, source)
    if meta is not None:
        known["model"] = (meta.model, "metadata")
        known["precision"] = (str(meta.precision).lower(), "metadata")
        known["img_size"] = (_img_size(meta), "metadata")
    if row is not None:
        size = row.get("input_size")
        from_report = {
            "model": row.get("model"),
            "precision": str(row["precision"]).lower() if row.get("precision") else None,
            "img_size": int(size[-1]) if isinstance(size, list) and size else None,
        }
        for name, value in from_report.items():
            if value is not None:
                known.setdefault(name, (value, REPORT_NAME))

    flags = {"model": model, "precision": precision, "img_size": img_size}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, flag_value in flags.items():
        if name in known:
            value, source = known[name]
            if flag_value is not None and flag_value != value:
                flag = FLAG_OF[name].split()[0]
                where = "metadata" if source == "metadata" else f"row in {REPORT_NAME}"
                raise ArtifactInputError(
                    f"{flag} {flag_value} contradicts {path.name}'s {where} ({name} {value}); "
                    f"drop {flag} or pass the file you mean"
                )
            values[name], sources[name] = value, source
        elif flag_value is not None:
            values[name], sources[name] = flag_value, FLAG_OF[name].split()[0]
    missing = [name for name in flags if name not in values]
    if missing:
        need = ", ".join(FLAG_OF[n] for n in missing)
        raise ArtifactInputError(
            f"{path.name} carries no edgevit-deploy metadata for its {', '.join(m.replace('_', ' ') for m in missing)} "
            f"and no {REPORT_NAME} row beside it describes it; pass {need}"
        )
    return GivenArtifact(
        path=path,
        target=target,
        model=str(values["model"]),
        precision=str(values["precision"]),
        img_size=int(values["img_size"]),
        sha256=sha,
        size_bytes=size_of(path),
        parity=report_parity(row, path.parent / REPORT_NAME),
        sources=sources,
    )


def refuse_failed_parity(given: list[GivenArtifact], allow: bool) -> None:
    """Files whose report.json check failed are not timed unless ``allow`` (then the rows carry the FAIL)."""
    bad = [g for g in given if g.parity_failed]
    if not bad:
        return
    if allow:
        for g in bad:
            log.warning(
                "%s failed its parity check in %s; timed anyway (--allow-failed-parity)", g.path.name, REPORT_NAME
            )
        return
    names = ", ".join(f"{g.path.name} (max abs {g.parity.get('max_abs', float('nan')):.2e})" for g in bad)
    raise ArtifactInputError(
        f"{names} failed {'its' if len(bad) == 1 else 'their'} parity check in {REPORT_NAME}; "
        "fix the export, or pass --allow-failed-parity to time it anyway"
    )


def folder_artifacts(folder: str | Path, img_size: int | None = None) -> list[GivenArtifact]:
    """The files of an ``edgevit-export`` output folder, in its report.json's order: rows whose export failed or
    whose file is gone are skipped (with a warning); none left is an error."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise ArtifactInputError(f"--artifacts {folder} is not a folder; pass an edgevit-export --out folder")
    report = read_report(folder)
    if report is None:
        raise ArtifactInputError(
            f"--artifacts {folder} has no usable {REPORT_NAME}; pass the --out folder edgevit-export wrote "
            "(or time one file with `edgevit-bench run FILE`)"
        )
    given: list[GivenArtifact] = []
    seen: set[str] = set()
    for row in report["artifacts"]:
        name = _row_file(row) if isinstance(row, dict) else None
        if not name or name in seen:
            continue
        seen.add(name)
        if row.get("error"):
            log.warning("%s: its export failed (%s); skipped", name, str(row["error"])[:200])
            continue
        if not (folder / name).exists():
            log.warning("%s is listed in %s but not in %s; skipped", name, REPORT_NAME, folder)
            continue
        if not looks_like_artifact(name):
            continue
        given.append(resolve(folder / name, img_size=img_size, report=report))
    if not given:
        raise ArtifactInputError(f"--artifacts {folder}: its {REPORT_NAME} lists no artifact file present there")
    return given
