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
    }
    try:  # every input is checked before anything (store, cache, --out) is created
        if config_file:
            spec = SweepSpec.load(config_file).with_overrides(**flags)
        else:
            if not flags["models"]:
                raise click.UsageError("give --models (or a --config sweep file)")
            spec = SweepSpec.from_mapping({k: v for k, v in flags.items() if v is not None})
        from ..device_bench.transports import parse_device

        for device in spec.devices:
            parse_device(device)
        jobs = spec.jobs()  # unknown models fail here
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
            )
        rows = api.read_rows(store)  # a StoreWriteError (exit 1): the run failed part-way, what was committed stays
    except KeyboardInterrupt:
        _interrupted(store)
    _print_table(rows, spec_keys={j.key for j in jobs})
    console.print(f"{result.ok} measured, {result.failed} failed, {result.skipped} already in {store}")
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
@click.argument("model")
@click.option("--device", default="local", show_default=True)
@click.option("--target", required=True, help=f"One of {', '.join(known_targets())}.")
@click.option("--precision", default="fp32", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--delegate", default="cpu", show_default=True)
@click.option("--img-size", type=int)
@click.option("--warmup", type=int, default=10, show_default=True)
@click.option("--iterations", type=int, default=50, show_default=True)
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also record the row in this store (replacing an earlier one).",
)
@_runner_options
@handle_errors
def run(
    model: str,
    device: str,
    target: str,
    precision: str,
    threads: int,
    delegate: str,
    img_size: int | None,
    warmup: int,
    iterations: int,
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
    """One model on one device."""
    try:
        from ..device_bench.transports import parse_device

        parse_device(device)
        if store is not None:
            _check_writable(store, "--store", folder=False)
        if cache_dir is not None:
            _check_writable(cache_dir, "--cache-dir", folder=True)
        m = api.run_one(
            model,
            target,
            device=device,
            precision=precision,
            threads=threads,
            delegate=delegate,
            img_size=img_size,
            warmup=warmup,
            iterations=iterations,
            store=store,
            cache_dir=cache_dir,
            runner_overrides=_runner_flags(
                runner_config, benchmark_model, ort_perf_test, timeout, energy, android_app, ios_app
            ),
        )
    except KeyboardInterrupt:
        _interrupted(store)
    console.print(rich_table([row_of(m)]))
    if m.status != "ok":
        sys.exit(EXIT_FAILED)


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
@handle_errors
def show(store: Path, status: str | None) -> None:
    """The store as a table."""
    rows = api.read_rows(store)
    console.print(rich_table([r for r in rows if status is None or r["status"] == status]))


@main.command("export")
@STORE_OPTION
@click.option("--csv", "fmt", flag_value="csv", help="CSV output.")
@click.option("--json", "fmt", flag_value="json", help="JSON output: a list of row objects.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout.")
@handle_errors
def export_cmd(store: Path, fmt: str | None, output: Path | None) -> None:
    """The store as CSV or JSON."""
    if fmt is None:
        raise click.UsageError("choose --csv or --json")
    if output is not None:
        _check_writable(output, "-o/--output", folder=False)
    text = api.export_rows(store, fmt, output)
    if output is None:
        click.echo(text, nl=False)
    else:
        err_console.print(f"wrote {output}")


@main.command()
@STORE_OPTION
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-report"), show_default=True
)
@handle_errors
def report(store: Path, out: Path) -> None:
    """Self-contained HTML report (tables + plots inlined), with PNGs, CSV and JSON beside it."""
    _check_writable(out, "--out", folder=True)
    written = api.report(store, out)
    for name, path in written.items():
        console.print(f"{name}: {path}")


if __name__ == "__main__":
    main()
