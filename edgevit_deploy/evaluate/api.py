"""``evaluate``: top-1 / top-5 of PyTorch models and exported artifacts on one labelled set.

Each source is a registered model name (evaluated in PyTorch, fp32) or an artifact (evaluated in its host
runtime from the target table, with the preprocessing its metadata records: input size, mean/std; the
resize and crop of its model's config). Every artifact is compared with the fp32 PyTorch reference of the
model it was exported from, on the same images: the change in top-1, the per-image top-1 agreement and the
images whose prediction flips. Images are decoded once per batch and shared by every source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
from PIL import Image

from ..converters.base import ArtifactMetadata
from ..errors import EdgeVitDeployError, InputSizeError, UnsupportedOptionError, first_line
from ..labels import class_labels
from ..models._config import ModelConfig
from ..preprocess import preprocess_image
from .dataset import LabelledSet, Sample
from .metrics import hits, topk_indices, wilson_interval

log = logging.getLogger(__name__)

TORCH_TARGET = "torch"  # the bench store's name of the PyTorch baseline
ProgressFn = Callable[[int, int], None]  # (images done, images in the set)


class EvalSourceError(EdgeVitDeployError, ValueError):
    """A model or artifact that cannot be evaluated as given (what was wrong and what to pass instead)."""


class EvalRunError(EdgeVitDeployError, RuntimeError):
    """A source failed while running (exit code 1): which one, on which images, and the runtime's message."""


class _Runner(Protocol):
    def run(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class _Source:
    """One thing to evaluate, resolved: how to preprocess for it and how to run it."""

    source: str
    target: str  # "torch" or a target name
    model: str
    precision: str
    cfg: ModelConfig  # preprocessing (input size, mean/std, resize, crop) and class count
    sha256: str  # the artifact file's (or, for PyTorch, the checkpoint's)
    ref_key: tuple[Any, ...]  # which fp32 PyTorch reference it is compared with
    runner: _Runner | None = None
    executor: str = ""
    path: Path | None = None


@dataclass(frozen=True)
class Flip:
    """An image whose top-1 differs from the fp32 PyTorch reference's."""

    image: str
    label: int
    reference: int
    prediction: int

    def to_dict(self, names: Sequence[str]) -> dict[str, Any]:
        def named(i: int) -> str:
            return names[i] if 0 <= i < len(names) else str(i)

        return {
            "image": self.image,
            "label": named(self.label),
            "reference": named(self.reference),
            "prediction": named(self.prediction),
            "label_index": self.label,
            "reference_index": self.reference,
            "prediction_index": self.prediction,
        }


@dataclass
class EvalResult:
    source: str
    target: str
    model: str
    precision: str
    img_size: int
    sha256: str
    executor: str
    n: int
    top1_correct: int
    top5_correct: int
    is_reference: bool = False
    reference: str | None = None  # the source of the fp32 PyTorch reference
    reference_top1: float | None = None
    agreement: float | None = None  # share of images with the reference's top-1
    flips: list[Flip] = field(default_factory=list)
    seconds: float = 0.0
    class_names: tuple[str, ...] = ()

    @property
    def top1(self) -> float:
        return self.top1_correct / self.n if self.n else 0.0

    @property
    def top5(self) -> float:
        return self.top5_correct / self.n if self.n else 0.0

    @property
    def top1_ci(self) -> tuple[float, float]:
        return wilson_interval(self.top1_correct, self.n)

    @property
    def top5_ci(self) -> tuple[float, float]:
        return wilson_interval(self.top5_correct, self.n)

    @property
    def delta_top1(self) -> float | None:
        """Top-1 minus the reference's top-1 (a fraction; x100 for percentage points)."""
        return None if self.reference_top1 is None else self.top1 - self.reference_top1

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "model": self.model,
            "precision": self.precision,
            "img_size": self.img_size,
            "sha256": self.sha256,
            "executor": self.executor,
            "n": self.n,
            "top1": self.top1,
            "top5": self.top5,
            "top1_ci95": list(self.top1_ci),
            "top5_ci95": list(self.top5_ci),
            "top1_correct": self.top1_correct,
            "top5_correct": self.top5_correct,
            "is_reference": self.is_reference,
            "reference": self.reference,
            "delta_top1": self.delta_top1,
            "agreement": self.agreement,
            "flips": [f.to_dict(self.class_names) for f in self.flips],
            "seconds": round(self.seconds, 2),
        }


@dataclass
class EvalReport:
    dataset: str
    root: str
    layout: str
    images_found: int  # in the folder, before --limit
    images_selected: int  # after --limit
    skipped: list[str]  # unreadable images (left out of every figure)
    results: list[EvalResult]

    @property
    def n(self) -> int:
        return self.images_selected - len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": self.root,
            "layout": self.layout,
            "images_found": self.images_found,
            "images_selected": self.images_selected,
            "n": self.n,
            "skipped": self.skipped,
            "results": [r.to_dict() for r in self.results],
        }


# ------------------------------------------------------------------------------------------ sources
def _artifact_source(path: Path, model: str | None, img_size: int | None) -> tuple[_Source, ArtifactMetadata]:
    from ..models import get_model_config
    from ..verify.artifact import spec_for_path

    if not path.exists():
        raise EvalSourceError(
            f"{str(path)!r} is neither a registered model nor an existing artifact; "
            "run `edgevit-export --list-models` or check the path"
        )
    spec = spec_for_path(path)
    try:
        meta = spec.load_converter().read_metadata(path)
    except EdgeVitDeployError:
        raise
    except Exception as exc:  # a corrupt or truncated file
        first = first_line(exc, type(exc).__name__)
        raise EvalSourceError(
            f"{path.name} cannot be read as a {spec.suffix} artifact ({first}); re-export it"
        ) from exc
    if "edgevit_deploy.model" not in meta:
        raise EvalSourceError(
            f"{str(path)!r} has no edgevit-deploy metadata (input size, mean/std, model); "
            "evaluate artifacts written by edgevit-export"
        )
    parsed = ArtifactMetadata.from_strings(meta)
    if model is not None and model != parsed.model:
        raise EvalSourceError(
            f"{path.name} was exported from {parsed.model!r}, not --model {model!r}; "
            "drop --model or evaluate it separately"
        )
    shape = parsed.input_shape
    size = shape[1] if parsed.layout == "NHWC" else shape[-1]
    if img_size is not None and img_size != size:
        raise InputSizeError(
            f"{path.name} takes {size}x{size} input, not --img-size {img_size}; "
            "drop --img-size (each artifact uses its own input size)"
        )
    cfg = replace(
        get_model_config(parsed.model).with_img_size(size),
        mean=cast(tuple[float, float, float], tuple(parsed.mean)),
        std=cast(tuple[float, float, float], tuple(parsed.std)),
        num_classes=parsed.num_classes,
    )
    from ..device_bench.artifacts import sha256_of

    src = _Source(
        source=str(path),
        target=str(spec.target),
        model=parsed.model,
        precision=parsed.precision,
        cfg=cfg,
        sha256=sha256_of(path),
        ref_key=(parsed.model, size, parsed.num_classes, parsed.checkpoint_sha256, parsed.random_init),
        path=path,
    )
    return src, parsed


def _load_runner(src: _Source, threads: int, coreml_executor: str) -> None:
    from ..verify.artifact import spec_for_path

    assert src.path is not None
    spec = spec_for_path(src.path)
    host = spec.load_host_runtime()
    reason = host.unavailable_reason()
    if reason:
        raise EvalSourceError(f"{src.path.name}: {reason}")
    # a target whose runtime has several executors (Core ML: native / reference) says so in its table row
    options = spec.runtime_options(coreml_executor)
    try:
        session = host.load(src.path, threads=threads, **options)
    except EdgeVitDeployError:
        raise
    except Exception as exc:  # a corrupt or foreign file the runtime rejects
        first = first_line(exc, type(exc).__name__)
        raise EvalSourceError(f"{src.path.name} cannot be loaded by {host.name} ({first}); re-export it") from exc
    src.runner, src.executor = session, session.executor


class _TorchRunner:
    def __init__(self, model: Any, threads: int):
        import torch

        self.model, self.threads = model, threads
        self.executor = f"torch {torch.__version__} (fp32)"

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                return self.model(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()
        finally:
            torch.set_num_threads(before)


def _torch_source(
    name: str,
    checkpoint: str | Path | None,
    img_size: int | None,
    num_classes: int | None,
    random_init: str,
    threads: int,
) -> _Source:
    from ..export_common import apply_random_init
    from ..models import create_model

    model = create_model(name, checkpoint=checkpoint, img_size=img_size, num_classes=num_classes)
    cfg = cast(ModelConfig, model.deploy_cfg)
    sha = str(model.checkpoint_sha256)
    apply_random_init(model, cfg, sha, random_init)
    runner = _TorchRunner(model, threads)
    key = (name, cfg.img_size, cfg.num_classes, sha, random_init)
    return _Source(
        source=name,
        target=TORCH_TARGET,
        model=name,
        precision="fp32",
        cfg=cfg,
        sha256=sha,
        ref_key=key,
        runner=runner,
        executor=runner.executor,
    )


def _is_model_name(text: str) -> bool:
    from ..models import get_model_config

    if Path(text).exists():
        return False
    try:
        get_model_config(text)
    except EdgeVitDeployError:
        return False
    return True


def resolve_sources(
    sources: Sequence[str],
    model: str | None = None,
    checkpoint: str | Path | None = None,
    img_size: int | None = None,
    threads: int = 1,
    coreml_executor: str = "auto",
) -> tuple[list[_Source], dict[tuple[Any, ...], _Source]]:
    """(every source as given, the fp32 PyTorch reference of each ref_key). Fails before any image is read."""
    if not sources:
        raise EvalSourceError("nothing to evaluate; pass model names and/or artifact paths")
    artifacts: list[tuple[_Source, ArtifactMetadata]] = []
    resolved: list[_Source | None] = []
    for text in sources:
        if _is_model_name(text):
            resolved.append(None)
            continue
        src, parsed = _artifact_source(Path(text), model, img_size)
        artifacts.append((src, parsed))
        resolved.append(src)
    from ..models._checkpoint import sha256_file

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise EvalSourceError(f"--checkpoint {str(checkpoint)!r} does not exist; pass the checkpoint file")
    ck_sha = sha256_file(Path(checkpoint)) if checkpoint else None
    refs: dict[tuple[Any, ...], _Source] = {}
    for src, parsed in artifacts:
        if ck_sha is not None and parsed.checkpoint_sha256 != ck_sha:
            raise EvalSourceError(
                f"{src.path.name if src.path else src.source} was exported from weights with sha256 "
                f"{parsed.checkpoint_sha256[:16]}..., not --checkpoint {checkpoint} ({ck_sha[:16]}...); "
                "pass the checkpoint it was exported with"
            )
        if src.ref_key in refs:
            continue
        ref = _torch_source(parsed.model, checkpoint, src.cfg.img_size, parsed.num_classes, parsed.random_init, threads)
        if ref.sha256 != parsed.checkpoint_sha256:
            what = "random weights" if ref.sha256 == "random-init" else f"weights sha256 {ref.sha256[:16]}..."
            raise EvalSourceError(
                f"{src.path.name if src.path else src.source} was exported from weights with sha256 "
                f"{parsed.checkpoint_sha256[:16]}..., but {parsed.model} builds with {what}; "
                "pass --checkpoint FILE with the checkpoint it was exported with"
            )
        refs[src.ref_key] = ref
    out: list[_Source] = []
    for text, given in zip(sources, resolved):
        if given is None:
            from ..models import get_model_config

            cfg = get_model_config(text)
            size = img_size or cfg.img_size
            # the model is also an artifact's reference (same weights, size, classes): build and evaluate it once
            same = [
                r for k, r in refs.items() if k[0] == text and k[1:3] == (size, cfg.num_classes) and k[4] == "default"
            ]
            if same:
                out.append(same[0])
                continue
            torch_src = _torch_source(text, checkpoint, img_size, None, "default", threads)
            refs.setdefault(torch_src.ref_key, torch_src)
            out.append(refs[torch_src.ref_key])
        else:
            _load_runner(given, threads, coreml_executor)
            out.append(given)
    return out, refs


# --------------------------------------------------------------------------------------------- run
def _read_image(sample: Sample) -> Image.Image | None:
    try:
        with Image.open(sample.path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        log.warning("skipped unreadable image %s (%s)", sample.name, exc)
        return None


def _cfg_key(cfg: ModelConfig) -> tuple[Any, ...]:
    return (cfg.input_size, tuple(cfg.mean), tuple(cfg.std), cfg.crop_pct, cfg.interpolation)


def evaluate(
    sources: Sequence[str],
    data: LabelledSet,
    model: str | None = None,
    checkpoint: str | Path | None = None,
    img_size: int | None = None,
    batch: int = 32,
    threads: int = 1,
    coreml_executor: str = "auto",
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Evaluate every source on ``data``; each artifact also against its fp32 PyTorch reference."""
    if batch < 1:
        raise UnsupportedOptionError(f"--batch {batch}: give a batch size of at least 1")
    if threads < 1:
        raise UnsupportedOptionError(f"--threads {threads}: give at least 1 thread")
    given, refs = resolve_sources(sources, model, checkpoint, img_size, threads, coreml_executor)
    everything: list[_Source] = list(refs.values()) + [s for s in given if all(s is not r for r in refs.values())]
    for src in everything:
        data.check_labels(src.cfg.num_classes, src.model)
    samples = data.samples
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    preds = {id(s): np.full((len(samples), 5), -1, dtype=np.int64) for s in everything}
    seconds = {id(s): 0.0 for s in everything}
    readable = np.zeros(len(samples), dtype=bool)
    skipped: list[str] = []
    done = 0
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        images = [_read_image(s) for s in chunk]
        keep = [i for i, im in enumerate(images) if im is not None]
        kept = [im for im in images if im is not None]
        skipped += [chunk[i].name for i, im in enumerate(images) if im is None]
        if keep:
            rows = np.asarray([start + i for i in keep])
            readable[rows] = True
            inputs: dict[tuple[Any, ...], np.ndarray] = {}
            for src in everything:
                key = _cfg_key(src.cfg)
                if key not in inputs:
                    inputs[key] = np.stack([preprocess_image(im, src.cfg) for im in kept]).astype(np.float32)
                assert src.runner is not None
                t0 = time.perf_counter()
                try:
                    logits = np.asarray(src.runner.run(inputs[key]))
                except EdgeVitDeployError:
                    raise
                except Exception as exc:
                    first = first_line(exc, type(exc).__name__)
                    raise EvalRunError(
                        f"{src.source} failed on {chunk[keep[0]].name} .. {chunk[keep[-1]].name} "
                        f"({first}); try --batch 1, or check the artifact with edgevit-verify"
                    ) from exc
                seconds[id(src)] += time.perf_counter() - t0
                if logits.ndim != 2 or logits.shape[0] != len(keep) or logits.shape[1] != src.cfg.num_classes:
                    raise EvalSourceError(
                        f"{src.source} returned logits of shape {logits.shape}, expected "
                        f"({len(keep)}, {src.cfg.num_classes}); re-export it"
                    )
                preds[id(src)][rows] = topk_indices(logits, 5)
        done += len(chunk)
        if progress:
            progress(done, len(samples))
    if not readable.any():
        raise EvalSourceError(
            f"none of the {len(samples)} images in {str(data.root)!r} could be read "
            f"(e.g. {skipped[0]}); check the files"
        )
    lab = labels[readable]
    names_cache: dict[int, tuple[str, ...]] = {}

    def result(src: _Source, is_ref: bool) -> EvalResult:
        p = preds[id(src)][readable]
        n_cls = src.cfg.num_classes
        if n_cls not in names_cache:
            names_cache[n_cls] = tuple(class_labels(n_cls, src.cfg.labels))
        return EvalResult(
            source=src.source,
            target=src.target,
            model=src.model,
            precision=src.precision,
            img_size=src.cfg.img_size,
            sha256=src.sha256,
            executor=src.executor,
            n=int(readable.sum()),
            top1_correct=int(hits(p, lab, 1).sum()),
            top5_correct=int(hits(p, lab, 5).sum()),
            is_reference=is_ref,
            seconds=seconds[id(src)],
            class_names=names_cache[n_cls],
        )

    ref_results = {key: result(ref, True) for key, ref in refs.items()}
    sample_names = [s.name for s, ok in zip(samples, readable) if ok]
    out: list[EvalResult] = []
    for src in everything:
        ref = refs.get(src.ref_key)
        if ref is src:
            r = ref_results[src.ref_key]
        else:
            r = result(src, False)
            assert ref is not None
            rr = ref_results[src.ref_key]
            r.reference, r.reference_top1 = ref.source, rr.top1
            mine, theirs = preds[id(src)][readable][:, 0], preds[id(ref)][readable][:, 0]
            r.agreement = float(np.mean(mine == theirs))
            r.flips = [
                Flip(sample_names[i], int(lab[i]), int(theirs[i]), int(mine[i])) for i in np.flatnonzero(mine != theirs)
            ]
        out.append(r)
    # the order asked for, each reference just before the first source compared with it
    order: list[EvalResult] = []
    for src in given:
        for r in (ref_results[src.ref_key], out[next(i for i, s in enumerate(everything) if s is src)]):
            if all(r is not o for o in order):
                order.append(r)
    return EvalReport(
        dataset=data.name,
        root=str(data.root),
        layout=data.layout,
        images_found=data.total,
        images_selected=len(samples),
        skipped=skipped,
        results=order,
    )
