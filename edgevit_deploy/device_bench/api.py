"""The Python API behind ``edgevit-bench``: sweep, run one job, list devices, read / export / report a store.

Every CLI command is a thin wrapper over one function here::

    from edgevit_deploy.device_bench import api
    spec = api.SweepSpec(models=["edgevit_xxs"], targets=["onnx", "tflite"], devices=["local"])
    result = api.sweep(spec, store="edgevit-bench.sqlite")
    api.report("edgevit-bench.sqlite", "bench-report/")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import OutputDirError
from .artifacts import ArtifactCache
from .store import DEFAULT_STORE, ResultStore, StoreError, latest_rows, new_run_id
from .sweep import Sweep, SweepCallbacks, SweepResult, default_runner_factory, open_device
from .sweep_config import SweepSpec
from .types import BenchJob, Measurement, row_key

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_STORE",
    "SweepCallbacks",
    "SweepResult",
    "SweepSpec",
    "default_cache_dir",
    "devices",
    "export_rows",
    "read_rows",
    "report",
    "resolve_artifact",
    "run_artifact",
    "run_one",
    "sweep",
]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgevit-deploy" / "artifacts"


def _runner_config(spec: SweepSpec, overrides: dict[str, Any] | None) -> Any:
    from .runners import RunnerConfig

    values = {**spec.runners, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if spec.checkpoint and "checkpoint" not in values:
        values["checkpoint"] = spec.checkpoint  # the app runner's parity reference uses the same weights
    return RunnerConfig.from_env(**values)


def sweep(
    spec: SweepSpec,
    store: str | Path = DEFAULT_STORE,
    cache_dir: str | Path | None = None,
    callbacks: SweepCallbacks | None = None,
    runner_overrides: dict[str, Any] | None = None,
    local_work_dir: str | Path | None = None,
    sweep_id: str | None = None,
    rerun: bool = False,
    tags: list[str] | tuple[str, ...] = (),
) -> SweepResult:
    """Measure every row of ``spec`` not already measured ok in ``store`` under the sweep id (default: derived
    from ``spec``; ``rerun``: a new one, everything measured again); each result is committed at once.
    The store is opened (and refused, if it is not ours) before the artifact cache folder is created."""
    config = _runner_config(spec, runner_overrides)

    def opener(device: str) -> Any:
        return open_device(device, local_work_dir)

    with ResultStore(store) as db:
        cache = ArtifactCache(cache_dir or default_cache_dir(), checkpoint=spec.checkpoint)
        run = Sweep(
            spec,
            db,
            cache,
            opener=opener,
            runner_factory=default_runner_factory(config),
            callbacks=callbacks,
            sweep_id=sweep_id,
            rerun=rerun,
            tags=tags,
        )
        _warn_rows_of_other_files(spec, db, run.sweep_id)
        return run.run()


def run_one(
    model: str,
    target: str,
    device: str = "local",
    precision: str = "fp32",
    threads: int = 1,
    delegate: str = "cpu",
    img_size: int | None = None,
    warmup: int = 10,
    iterations: int = 50,
    store: str | Path | None = None,
    cache_dir: str | Path | None = None,
    runner_overrides: dict[str, Any] | None = None,
    profile: bool = False,
) -> Measurement:
    """One model on one device, measured again even when the store already has the configuration: each call is
    its own sweep (id ``run-`` + 12 hex digits), added to the store's history (``profile``: with a per-op profile
    where the runner can)."""
    spec = SweepSpec(
        models=[model],
        targets=[target],
        precisions=[precision],
        threads=[threads],
        delegates=[delegate],
        devices=[device],
        img_size=img_size,
        warmup=warmup,
        iterations=iterations,
        profile=profile,
    )
    return _run_single(spec, store, cache_dir, runner_overrides)


def _warn_rows_of_other_files(spec: SweepSpec, db: ResultStore, sweep_id: str) -> None:
    """A row of sweep ``sweep_id`` measured a given file's configuration on other bytes (another file of the same
    model and variant): resume counts the configuration as done by its key, so say so (``run FILE`` always
    measures). Only a named sweep (``--sweep-id``) can hold one: the default id is derived from the files' sha256."""
    jobs = {j.key: j for j in spec.jobs() if j.artifact_path}
    if not jobs:
        return
    given = {str(a.path): a.sha256 for a in spec.given_artifacts()}
    for row in db.rows(status="ok", sweep_id=sweep_id):
        job = jobs.get(row_key(row))
        if job is not None and row.get("artifact_sha256") not in (None, given.get(str(job.artifact_path))):
            log.warning(
                "%s: the store already has %s %s %s %dt @%s measured on other bytes (sha256 %s); that row is "
                "kept as done: time this file with `edgevit-bench run` or use another --store",
                Path(str(job.artifact_path)).name,
                job.model,
                job.target,
                job.precision,
                job.threads,
                job.device,
                str(row["artifact_sha256"])[:12],
            )


def resolve_artifact(
    path: str | Path, model: str | None = None, precision: str | None = None, img_size: int | None = None
) -> Any:
    """What a given artifact file is (``artifact_inputs.GivenArtifact``): from its metadata, its folder's
    report.json and these flags; bad input raises ``ArtifactInputError`` naming the flag that fixes it."""
    from .artifact_inputs import resolve

    return resolve(path, model=model, precision=precision, img_size=img_size)


def run_artifact(
    artifact: Any,
    device: str = "local",
    threads: int = 1,
    delegate: str = "cpu",
    warmup: int = 10,
    iterations: int = 50,
    store: str | Path | None = None,
    cache_dir: str | Path | None = None,
    runner_overrides: dict[str, Any] | None = None,
    allow_failed_parity: bool = False,
    profile: bool = False,
) -> Measurement:
    """One given file (a path, or :func:`resolve_artifact`'s result) on one device, timed as it is (never
    re-exported); measured again even when the store already has the row. The row records the file's sha256
    and its parity figures (report.json's, or the runner's on-device check)."""
    from .artifact_inputs import GivenArtifact, refuse_failed_parity

    given = artifact if isinstance(artifact, GivenArtifact) else resolve_artifact(artifact)
    refuse_failed_parity([given], allow_failed_parity)
    spec = SweepSpec(
        models=[],
        targets=[given.target],
        precisions=[given.precision],
        threads=[threads],
        delegates=[delegate],
        devices=[device],
        warmup=warmup,
        iterations=iterations,
        artifacts=str(given.path),
        allow_failed_parity=allow_failed_parity,
        profile=profile,
    ).with_given([given])
    return _run_single(spec, store, cache_dir, runner_overrides)


def _run_single(
    spec: SweepSpec, store: str | Path | None, cache_dir: str | Path | None, overrides: dict[str, Any] | None
) -> Measurement:
    job: BenchJob = spec.jobs()[0]
    path = Path(store) if store else None
    with ResultStore(path or ":memory:") as db:
        result = Sweep(
            spec,
            db,
            ArtifactCache(cache_dir or default_cache_dir()),
            runner_factory=default_runner_factory(_runner_config(spec, overrides)),
            sweep_id=f"run-{new_run_id()[:12]}",
        ).run()
        return next(m for m in result.measurements if m.job.key == job.key)


def devices(probe: bool = True) -> list[Any]:
    """``local`` and every Android device the adb server reports (DeviceEntry objects)."""
    from .transports import list_devices

    return list_devices(probe=probe)


def read_rows(store: str | Path, sweep_id: str | None = None, history: bool = False) -> list[dict[str, Any]]:
    """The rows of an existing store, opened read-only (a missing or empty file is an error, never created):
    the latest ok row of each configuration (:func:`~.store.latest_rows`), of sweep ``sweep_id`` when given
    (an id the store does not hold is an error naming those it does); ``history``: every run, oldest first."""
    path = Path(store)
    if not path.is_file():
        raise StoreError(f"no result store at {path}; run `edgevit-bench sweep --store {path}` first")
    with ResultStore(path, readonly=True) as db:
        if sweep_id is not None and sweep_id not in (known := db.sweep_ids()):
            shown = ", ".join(s or "''" for s in list(known)[-10:]) or "none"
            raise StoreError(f"no sweep {sweep_id!r} in {path} (its sweep ids: {shown})")
        rows = db.rows(sweep_id=sweep_id)
    return rows if history else latest_rows(rows)


def export_rows(
    store: str | Path, fmt: str, out: str | Path | None = None, sweep_id: str | None = None, history: bool = False
) -> str:
    """The store as CSV or JSON text (also written to ``out`` when given): the latest ok row of each
    configuration, or every run with ``history`` (:func:`read_rows`)."""
    from .report import rows as rows_mod

    rows = read_rows(store, sweep_id, history)
    if out:
        try:
            rows_mod.write(rows, Path(out), fmt)
        except OSError as exc:
            raise OutputDirError(f"cannot write {out}: {exc.strerror or exc}; pass another -o PATH") from exc
    return rows_mod.to_csv(rows) if fmt == "csv" else rows_mod.to_json(rows)


def report(store: str | Path, out_dir: str | Path, sweep_id: str | None = None) -> dict[str, Path]:
    """results.csv, results.json, PNG plots and a self-contained report.html in ``out_dir`` (the latest ok row
    of each configuration, of sweep ``sweep_id`` when given)."""
    from .report import write_report

    rows = read_rows(store, sweep_id)
    try:
        return write_report(rows, out_dir, store=str(store))
    except OSError as exc:
        raise OutputDirError(
            f"cannot write the report into {out_dir}: {exc.strerror or exc}; pass another --out folder"
        ) from exc
