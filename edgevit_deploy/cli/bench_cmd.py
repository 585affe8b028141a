"""``edgevit-bench``: measure exported models where they run (this host, Android phones over adb).

Thin commands over :mod:`edgevit_deploy.device_bench.api`; only this module prints. Errors and exit codes
follow the one policy of ``cli/_common.py``: 0 done; 1 a run failed (failed rows, or the store could not be
written mid-sweep: the rows committed before stay); 2 bad input (one ``error:`` line saying what was wrong
and what to do, nothing created); 130 interrupted (Ctrl-C; every row committed so far stays, rerun to resume).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..device_bench import api
from ..device_bench.errors import DeviceIdError
from ..device_bench.report.table import rich_table
from ..device_bench.store import DEFAULT_STORE, row_of
from ..device_bench.sweep import check_sweep_id
from ..device_bench.sweep_config import RUNNER_CHOICES, SweepSpec, known_targets, read_sweep_file
from ..device_bench.types import STATUSES, BenchJob, Measurement, row_key
from ..errors import EdgeVitDeployError, OutputDirError
from ._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    OneLineGroup,
    console,
    err_console,
    error_line,
    fail,
    handle_errors,
    interrupted,
    setup_logging,
)

STORE_OPTION = click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_STORE,
    show_default=True,
    help="SQLite result store (one file).",
)


class _ProgressCallbacks(api.SweepCallbacks):
    """A rich progress bar with ETA; failed rows are printed as they happen."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task: Any = None
        self.lock = threading.Lock()

    def on_start(self, total: int, todo: int) -> None:
        self.task = self.progress.add_task("sweep", total=todo, current="")
        if total > todo:
            self.progress.console.print(f"resuming: {total - todo} of {total} rows already in the store")

    def on_job_start(self, job: BenchJob) -> None:
        with self.lock:
            self.progress.update(
                self.task, current=f"{job.model} {job.target} {job.precision} {job.threads}t @{job.device}"
            )

    def on_result(self, m: Measurement) -> None:
        with self.lock:
            self.progress.advance(self.task)
            if m.status != "ok":
                j = m.job
                self.progress.console.print(
                    f"[red]failed[/] {j.model} {j.target} {j.precision} {j.threads}t @{j.device}: {m.reason}"
                )

    def on_device_failed(self, device: str, reason: str) -> None:
        self.progress.console.print(f"[red]device {device} gave up[/]: {reason}")


def _csv_option(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _interrupted(store: Path | None = None) -> None:
    where = f" in {store}" if store else ""
    interrupted(f"every row committed so far is kept{where}; run the same command again to resume")


def _check_writable(path: Path, option: str, folder: bool) -> None:
    """Fail (exit 2) unless ``path`` can be created or written: checked before anything is created."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise OutputDirError(f"{option} {path} is a file, not a folder; give a folder path")
        if not folder and path.is_dir():
            raise OutputDirError(f"{option} {path} is a folder; give a file path")
        if not os.access(path, os.W_OK):
            raise OutputDirError(f"{option} {path} is not writable; give a path you can write")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputDirError(f"{option} {path} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputDirError(f"{option} {path} cannot be created: {parent} is not writable")


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Benchmark exported models on this host (--device local) and on Android phones (--device adb:SERIAL)."""
    setup_logging(verbose)


_EXECUTOR_RUNNER_KEY = "edgevit_deploy.executor_runner"  # --executor-runner's value in the click context


def _executor_runner_flag() -> Path | None:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_EXECUTOR_RUNNER_KEY) if ctx is not None else None


def _runner_flags(
    runner_config: Path | None,
    benchmark_model: Path | None,
    ort_perf_test: Path | None,
    timeout: float | None,
    energy: bool | None,
    android_app: Path | None = None,
    ios_app: Path | None = None,
) -> dict[str, Any]:
    values: dict[str, Any] = dict(read_sweep_file(runner_config)) if runner_config else {}
    if isinstance(values.get("runners"), dict):
        values = values["runners"]
    values.update(
        {
            k: v
            for k, v in (
                ("benchmark_model", benchmark_model),
                ("onnxruntime_perf_test", ort_perf_test),
                ("timeout_s", timeout),
                ("energy", energy),
                ("android_app", android_app),
                ("ios_app", ios_app),
                ("executor_runner", _executor_runner_flag()),
            )
            if v is not None
        }
    )
    return values


def _runner_options(f: Any) -> Any:
    for opt in reversed(
        [
            click.option(
                "--runner-config",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="YAML/TOML file with runner settings (tool paths, extra flags, energy, timeout_s).",
            ),
            click.option(
                "--benchmark-model",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Host path of LiteRT's benchmark_model binary for the phone.",
            ),
            click.option(
                "--ort-perf-test",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Host path of onnxruntime_perf_test for the phone.",
            ),
            click.option(
                "--executor-runner",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                expose_value=False,  # read by _runner_flags from the context
                callback=lambda ctx, _param, value: ctx.meta.__setitem__(_EXECUTOR_RUNNER_KEY, value),
                help="Host path of ExecuTorch's executor_runner binary for the phone (.pte rows).",
            ),
            click.option("--timeout", type=float, help="Seconds allowed for one measurement on a device."),
            click.option(
                "--energy/--no-energy",
                default=None,
                help="Sample battery current and voltage during Android runs (mJ per inference).",
            ),
            click.option(
                "--cache-dir",
                type=click.Path(file_okay=False, path_type=Path),
                help="Where exported artifacts are cached (default ~/.cache/edgevit-deploy/artifacts).",
            ),
            click.option(
                "--android-app",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="The benchmark app's APK (android_app/), installed when missing or outdated (--runner app).",
            ),
            click.option(
                "--ios-app",
                type=click.Path(exists=True, path_type=Path),
                help="The iOS benchmark app (.ipa or .app from ios_app/), installed on an iPhone when missing "
                "or outdated.",
            ),
        ]
    ):
        f = opt(f)
    return f


#: the --runner choices: "tool" is the spelling of the sweep file's "default"
RUNNER_CHOICES_SHOWN = ["tool", *(c for c in RUNNER_CHOICES if c != "default")]


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/TOML sweep file; flags given here override its values.",
)
@click.option(
    "--device", "--devices", "devices", help="Comma-separated device ids: local, adb:SERIAL, adb:HOST:PORT, ios:UDID."
)
@click.option("--models", help="Comma-separated model names (edgevit_xxs, timm:mobilenetv2_100, ...).")
@click.option(
    "--artifacts",
    type=click.Path(exists=True, file_okay=False),
    help="An edgevit-export --out folder: time its files as they are (instead of --models/--targets/--precision).",
)
@click.option("--allow-failed-parity", is_flag=True, help="With --artifacts: also time files that failed parity.")
@click.option("--targets", help=f"Comma-separated targets: {', '.join(known_targets())}.")
@click.option("--precision", "--precisions", "precisions", help="Comma-separated: fp32, fp16, int8, ...")
@click.option("--threads", help="Comma-separated thread counts, e.g. 1,4.")
@click.option(
    "--delegates",
    help="Comma-separated delegates: cpu/xnnpack, gpu, nnapi (Android); "
    "Core ML compute units cpu, gpu, ane, all (iOS).",
)
@click.option("--img-size", type=int, help="Input size (default: each model's own).")
@click.option("--warmup", type=int, help="Warm-up iterations per run (default 10).")
@click.option("--iterations", type=int, help="Timed iterations per run (default 50).")
@click.option("--cooldown", type=float, help="Seconds to rest between runs on a device (default 0).")
@click.option("--cpu-mask", help="taskset mask for the runner, e.g. f0 for big cores.")
@click.option(
    "--runner",
    "runner",
    type=click.Choice(RUNNER_CHOICES_SHOWN),
    help="Android rows: tool binaries (default), the benchmark app's Activity, or its instrumentation test.",
)
@click.option("--no-retry-failed", is_flag=True, help="On resume, skip rows that failed before too.")
@click.option(
    "--sweep-id",
    help="Store the rows under this sweep id and resume it (default: an id derived from what the sweep measures).",
)
@click.option("--rerun", is_flag=True, help="Measure everything again under a new sweep id; old rows are kept.")
@click.option("--tag", "tags", multiple=True, help="Label every row of this sweep (repeatable), e.g. --tag v0.3.")
@click.option("--profile", is_flag=True, help="Also record per-op profiles where the runner can (show --ops).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Weights for the models.")
@STORE_OPTION
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write results.csv/json, PNG plots and report.html here.",
)
@_runner_options
@handle_errors
def sweep(
    config_file: Path | None,
    devices: str | None,
    models: str | None,
    artifacts: str | None,
    allow_failed_parity: bool,
    targets: str | None,
    precisions: str | None,
    threads: str | None,
    delegates: str | None,
    img_size: int | None,
    warmup: int | None,
    iterations: int | None,
    cooldown: float | None,
    cpu_mask: str | None,
    runner: str | None,
    no_retry_failed: bool,
    sweep_id: str | None,
    rerun: bool,
    tags: tuple[str, ...],
    profile: bool,
    checkpoint: str | None,
    store: Path,
    out: Path | None,
    runner_config: Path | None,
    benchmark_model: Path | None,
    ort_perf_test: Path | None,
    timeout: float | None,
    energy: bool | None,
    cache_dir: Path | None,
    android_app: Path | None,
    ios_app: Path | None,
) -> None:
    """Measure models x targets x precisions x threads x delegates x devices; resumable."""
    flags = {
        "models": _csv_option(models),
        "targets": _csv_option(targets),
        "precisions": _csv_option(precisions),
        "threads": _csv_option(threads),
        "delegates": _csv_option(delegates),
        "devices": _csv_option(devices),
        "img_size": img_size,
        "warmup": warmup,
        "iterations": iterations,
        "cooldown_s": cooldown,
        "cpu_mask": cpu_mask,
        "checkpoint": checkpoint,
        "retry_failed": False if no_retry_failed else None,
        "runner": runner,
        "artifacts": artifacts,
        "allow_failed_parity": allow_failed_parity or None,
        "profile": True if profile else None,
    }
    try:  # every input is checked before anything (store, cache, --out) is created
        if artifacts and (models or targets or precisions):
            raise click.UsageError("--artifacts times the folder's files: drop --models, --targets and --precision")
        if config_file:
            spec = SweepSpec.load(config_file).with_overrides(**flags)
        else:
            if not flags["models"] and not artifacts:
                raise click.UsageError("give --models (or --artifacts DIR, or a --config sweep file)")
            spec = SweepSpec.from_mapping({k: v for k, v in flags.items() if v is not None})
        from ..device_bench.transports import parse_device

        for device in spec.devices:
            parse_device(device)
        jobs = spec.jobs()  # unknown models fail here
        if sweep_id is not None:
            check_sweep_id(sweep_id)
        overrides = _runner_flags(runner_config, benchmark_model, ort_perf_test, timeout, energy, android_app, ios_app)
        _check_writable(store, "--store", folder=False)
        if out is not None:
            _check_writable(out, "--out", folder=True)
        if cache_dir is not None:
            _check_writable(cache_dir, "--cache-dir", folder=True)
    except KeyboardInterrupt:
        _interrupted()
    try:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}"),
            console=err_console,
            transient=False,
        )
        with progress:
            result = api.sweep(
                spec,
                store=store,
                cache_dir=cache_dir,
                callbacks=_ProgressCallbacks(progress),
                runner_overrides=overrides,
                sweep_id=sweep_id,
                rerun=rerun,
                tags=list(tags),
            )
        rows = api.read_rows(store, result.sweep_id)  # a StoreWriteError (exit 1): what was committed stays
    except KeyboardInterrupt:
        _interrupted(store)
    _print_table(rows, spec_keys={j.key for j in jobs})
    console.print(f"{result.ok} measured, {result.failed} failed, {result.skipped} already in {store}")
    console.print(f"sweep id: {result.sweep_id}")
    if out:
        try:
            written = api.report(store, out)
        except EdgeVitDeployError as exc:  # the rows are measured and stored: the report is what failed
            fail(exc, EXIT_FAILED)
        console.print(f"report: {written['html']} (csv, json and {len(written) - 3} plots beside it)")
    if result.failed:
        sys.exit(EXIT_FAILED)


def _print_table(rows: list[dict[str, Any]], spec_keys: set[tuple[str, ...]]) -> None:
    """The rows of this sweep only (the store may hold other sweeps' rows too)."""
    console.print(rich_table([r for r in rows if row_key(r) in spec_keys]))


@main.command()
@click.option("--no-probe", is_flag=True, help="Only list ids and states; do not read device properties.")
@handle_errors
def devices(no_probe: bool) -> None:
    """What is reachable (this host and the adb server's devices), with properties."""
    from rich.table import Table

    table = Table(title="devices")
    for col in ("id", "kind", "state", "model", "soc", "os", "abi", "governor", "max MHz", "error"):
        table.add_column(col)
    entries = api.devices(probe=not no_probe)
    for e in entries:
        i = e.info
        freqs = sorted(set(i.cpu_max_freqs_khz)) if i else []
        table.add_row(
            e.id,
            e.kind,
            e.state,
            i.model if i else "",
            i.soc if i else "",
            i.os_version if i else "",
            i.abi if i else "",
            i.cpu_governor if i else "",
            ",".join(str(f // 1000) for f in freqs),
            e.error or "",
        )
    console.print(table)


@main.command()
@click.argument("model", metavar="MODEL_OR_ARTIFACT")
@click.option("--device", default="local", show_default=True)
@click.option("--target", help=f"One of {', '.join(known_targets())} (an artifact's is its suffix's).")
@click.option("--precision", help="Variant: fp32 (default for a model name), fp16, int8, ... (an artifact's: its own).")
@click.option("--model", "model_name", help="An artifact's model name, when its metadata has none.")
@click.option("--allow-failed-parity", is_flag=True, help="Time an artifact whose report.json parity check failed.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--delegate", default="cpu", show_default=True)
@click.option("--img-size", type=int)
@click.option("--warmup", type=int, default=10, show_default=True)
@click.option("--iterations", type=int, default=50, show_default=True)
@click.option("--profile", is_flag=True, help="Also record a per-op profile where the runner can (show --ops).")
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also record the row in this store (a new run; earlier ones are kept).",
)
@_runner_options
@handle_errors
def run(
    model: str,
    device: str,
    target: str | None,
    precision: str | None,
    model_name: str | None,
    allow_failed_parity: bool,
    threads: int,
    delegate: str,
    img_size: int | None,
    warmup: int,
    iterations: int,
    profile: bool,
    store: Path | None,
    runner_config: Path | None,
    benchmark_model: Path | None,
    ort_perf_test: Path | None,
    timeout: float | None,
    energy: bool | None,
    cache_dir: Path | None,
    android_app: Path | None,
    ios_app: Path | None,
) -> None:
    """One model (exported on demand) or one artifact file (timed as it is) on one device."""
    try:
        from ..device_bench.artifact_inputs import looks_like_artifact
        from ..device_bench.transports import parse_device

        parse_device(device)
        given = _given_artifact(model, target, precision, model_name, img_size) if looks_like_artifact(model) else None
        if given is None and (target is None or model_name is not None):
            raise click.UsageError(
                "--model names the model of an artifact path" if model_name else "give --target for a model name"
            )
        if store is not None:
            _check_writable(store, "--store", folder=False)
        if cache_dir is not None:
            _check_writable(cache_dir, "--cache-dir", folder=True)
        overrides = _runner_flags(runner_config, benchmark_model, ort_perf_test, timeout, energy, android_app, ios_app)
        if given is not None:
            m = api.run_artifact(
                given,
                device=device,
                threads=threads,
                delegate=delegate,
                warmup=warmup,
                iterations=iterations,
                store=store,
                cache_dir=cache_dir,
                runner_overrides=overrides,
                allow_failed_parity=allow_failed_parity,
                profile=profile,
            )
        else:
            m = api.run_one(
                model,
                str(target),
                device=device,
                precision=precision or "fp32",
                threads=threads,
                delegate=delegate,
                img_size=img_size,
                warmup=warmup,
                iterations=iterations,
                store=store,
                cache_dir=cache_dir,
                runner_overrides=overrides,
                profile=profile,
            )
    except KeyboardInterrupt:
        _interrupted(store)
    console.print(rich_table([row_of(m)]))
    if m.status != "ok":
        sys.exit(EXIT_FAILED)


def _given_artifact(
    path: str, target: str | None, precision: str | None, model: str | None, img_size: int | None
) -> Any:
    """``run PATH``: what the file is (bad input: one line naming the flag that fixes it); --target, when
    given, must be the suffix's."""
    from ..device_bench.artifact_inputs import ArtifactInputError, target_of

    if target is not None and target.lower() != target_of(Path(path)):
        raise ArtifactInputError(
            f"--target {target} contradicts {Path(path).name} (its suffix says {target_of(Path(path))})"
        )
    return api.resolve_artifact(path, model=model, precision=precision, img_size=img_size)


@main.command()
@click.option("--device", required=True, help="adb:SERIAL, adb:HOST:PORT or adb:SERIAL@HOST:PORT.")
@click.option(
    "--benchmark-model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Host path of LiteRT's benchmark_model binary to check (default $EDGEVIT_BENCHMARK_MODEL).",
)
@click.option(
    "--ort-perf-test",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Host path of onnxruntime_perf_test to check (default $EDGEVIT_ORT_PERF_TEST).",
)
@click.option(
    "--executor-runner",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Host path of ExecuTorch's executor_runner to check (default $EDGEVIT_EXECUTOR_RUNNER).",
)
@handle_errors
def doctor(
    device: str, benchmark_model: Path | None, ort_perf_test: Path | None, executor_runner: Path | None = None
) -> None:
    """What each Android runner (benchmark_model, onnxruntime_perf_test, executor_runner, app, instrument) needs
    on DEVICE."""
    import os

    from rich.table import Table

    from ..device_bench.doctor import diagnose
    from ..device_bench.runners import ENV_BENCHMARK_MODEL, ENV_ORT_PERF_TEST

    if not device.startswith("adb:"):
        raise DeviceIdError(f"doctor checks Android devices (adb:...), got {device!r}")
    bm = benchmark_model or (Path(os.environ[ENV_BENCHMARK_MODEL]) if os.environ.get(ENV_BENCHMARK_MODEL) else None)
    ort = ort_perf_test or (Path(os.environ[ENV_ORT_PERF_TEST]) if os.environ.get(ENV_ORT_PERF_TEST) else None)
    try:
        transport = api.open_device(device)
        try:
            checks = diagnose(transport, bm, ort, executor_runner=executor_runner)
        finally:
            transport.close()
    except EdgeVitDeployError:
        raise
    except (ConnectionError, OSError) as exc:
        error_line(f"cannot reach {device}: {exc} (check `adb devices` / the address)")
        sys.exit(EXIT_USAGE)
    table = Table(title=f"doctor {device}")
    for col in ("runner", "ready", "state", "how to fix"):
        table.add_column(col)
    for c in checks:
        table.add_row(c.runner, "[green]yes[/]" if c.ready else "[red]no[/]", c.detail, c.fix)
    console.print(table)


@main.command()
@STORE_OPTION
@click.option("--status", type=click.Choice(STATUSES), help="Only rows with this status.")
@click.option("--sweep-id", help="Only the rows of this sweep id.")
@click.option("--history", is_flag=True, help="Every run, not only the latest ok run of each configuration.")
@click.option("--ops", "ops_row", metavar="ROW", help="The top ops by time of one row (the # shown, or a run id).")
@click.option("--top", "top_n", type=click.IntRange(min=1), default=15, show_default=True, help="Ops shown by --ops.")
@handle_errors
def show(store: Path, status: str | None, sweep_id: str | None, history: bool, ops_row: str | None, top_n: int) -> None:
    """The store as a table (the latest ok run of each configuration; --history: every run)."""
    from ..device_bench.report.ops import number_rows

    rows = number_rows(api.read_rows(store, sweep_id, history))
    if ops_row is not None:
        _show_ops(rows, ops_row, top_n)
        return
    console.print(rich_table([r for r in rows if status is None or r["status"] == status]))


def _show_ops(rows: list[dict[str, Any]], ref: str, top_n: int) -> None:
    from ..device_bench.report.ops import find_row, no_ops_reason, ops_table, row_title

    row = find_row(rows, ref)
    if not row.get("op_profile"):
        console.print(f"no op profile for row {ref} ({row_title(row)}): {no_ops_reason(row)}")
        return
    console.print(ops_table(row, top_n))


@main.command("export")
@STORE_OPTION
@click.option("--csv", "fmt", flag_value="csv", help="CSV output.")
@click.option("--json", "fmt", flag_value="json", help="JSON output: a list of row objects.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout.")
@click.option("--sweep-id", help="Only the rows of this sweep id.")
@click.option("--history", is_flag=True, help="Every run, not only the latest ok run of each configuration.")
@handle_errors
def export_cmd(store: Path, fmt: str | None, output: Path | None, sweep_id: str | None, history: bool) -> None:
    """The store as CSV or JSON (the latest ok run of each configuration)."""
    if fmt is None:
        raise click.UsageError("choose --csv or --json")
    if output is not None:
        _check_writable(output, "-o/--output", folder=False)
    text = api.export_rows(store, fmt, output, sweep_id, history)
    if output is None:
        click.echo(text, nl=False)
    else:
        err_console.print(f"wrote {output}")


@main.command()
@STORE_OPTION
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-report"), show_default=True
)
@click.option("--sweep-id", help="Only the rows of this sweep id.")
@handle_errors
def report(store: Path, out: Path, sweep_id: str | None) -> None:
    """Self-contained HTML report (tables + plots inlined), with PNGs, CSV and JSON beside it."""
    _check_writable(out, "--out", folder=True)
    written = api.report(store, out, sweep_id)
    for name, path in written.items():
        console.print(f"{name}: {path}")


from . import bench_coverage  # noqa: E402,F401  (registers `coverage`)
from .bench_compare import compare as _compare  # noqa: E402  (`edgevit-bench compare`; no import of this module)

main.add_command(_compare)

if __name__ == "__main__":  # `python -m ...bench_cmd`: run the package module's group, which has every command
    from edgevit_deploy.cli.bench_cmd import main as _package_main

    _package_main()
