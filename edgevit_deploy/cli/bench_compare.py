"""``edgevit-bench compare BASELINE CANDIDATE``: the change in median latency per configuration, with a
confidence interval, and ``--fail-on-regression 5%`` as a CI gate (exit 1 on a trustworthy regression).

The maths is :mod:`edgevit_deploy.device_bench.compare`; this module parses, prints and picks the exit code.
It does not import ``bench_cmd`` (which adds this command to its group), so ``python -m
edgevit_deploy.cli.bench_cmd compare`` and the ``edgevit-bench`` script see the same command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from ..device_bench import compare as cmp
from ..device_bench.store import DEFAULT_STORE
from ._common import EXIT_FAILED, console, handle_errors


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_VERDICT_STYLE = {"slower": "red", "faster": "green", "same": "", "inconclusive": "yellow", "unknown": "dim"}


def _table(result: cmp.Comparison) -> Table:
    level = round(result.confidence * 100)
    table = Table(title=f"{result.baseline}  ->  {result.candidate}")
    for col in ("configuration", "device", "baseline ms", "candidate ms", "change", f"{level}% CI", "n", "verdict"):
        table.add_column(col, justify="right" if col.endswith(("ms", "change", "CI", "n")) else "left")
    table.add_column("untrustworthy because")
    for p in result.pairs:
        style = _VERDICT_STYLE.get(p.verdict, "")
        verdict = f"[{style}]{p.verdict}[/]" if style else p.verdict
        ci = "-" if p.ci_low_pct is None else f"{_pct(p.ci_low_pct)} .. {_pct(p.ci_high_pct)}"
        table.add_row(
            cmp.config_label(p.config),
            str(p.config["device"]),
            _ms(p.baseline.median_ms),
            _ms(p.candidate.median_ms),
            _pct(p.change_pct),
            ci,
            f"{p.baseline.iterations}/{p.candidate.iterations}",
            verdict,
            "; ".join(p.reasons),
        )
    return table


@click.command("compare")
@click.argument("baseline")
@click.argument("candidate")
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_STORE,
    show_default=True,
    help="The store that sweep ids, tag: and since:/before: selections are read from.",
)
@click.option("--since", help="Only rows measured at or after this ISO date / date-time, on both sides.")
@click.option("--tag", "tags", multiple=True, help="Only rows carrying this tag, on both sides (repeatable).")
@click.option(
    "--fail-on-regression",
    "threshold",
    help="e.g. 5%: exit 1 when a trustworthy configuration is slower by more than this, the whole confidence "
    "interval above it. Also the bound of the verdicts (default 5%).",
)
@click.option(
    "--min-iterations",
    type=int,
    default=cmp.DEFAULT_MIN_ITERATIONS,
    show_default=True,
    help="Runs with fewer per-iteration latencies are untrustworthy (never gating).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of a table.")
@handle_errors
def compare(
    baseline: str,
    candidate: str,
    store: Path,
    since: str | None,
    tags: tuple[str, ...],
    threshold: str | None,
    min_iterations: int,
    seed: int,
    as_json: bool,
) -> None:
    """Compare BASELINE with CANDIDATE: each a sweep id in --store, a store file path, tag:TEXT,
    since:ISO-DATE or before:ISO-DATE. Pairs rows by configuration; exit 1 with --fail-on-regression
    when a trustworthy pair got slower beyond the threshold with 95% confidence."""
    threshold_pct = cmp.parse_threshold(threshold) if threshold is not None else cmp.DEFAULT_THRESHOLD_PCT
    if since is not None:
        cmp.parse_when(since)
    if min_iterations < 1:
        raise cmp.CompareError(f"--min-iterations must be >= 1, got {min_iterations}")
    base = cmp.select(baseline, store, since, tags)
    cand = cmp.select(candidate, store, since, tags)
    result = cmp.compare(base, cand, threshold_pct=threshold_pct, min_iterations=min_iterations, seed=seed)
    if not result.pairs:
        only = ", ".join(sorted({u.reason for u in result.unpaired})) or "nothing to pair"
        raise cmp.CompareError(
            f"no configuration measured ok on both sides ({base.description} vs {cand.description}: {only})"
        )
    gate = threshold is not None
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "gate": gate}, indent=2))
    else:
        console.print(_table(result))
        for u in result.unpaired:
            console.print(f"unpaired ({u.side}): {cmp.config_label(u.config)} @{u.config['device']}: {u.reason}")
        untrusted = sum(not p.trustworthy for p in result.pairs)
        console.print(
            f"{len(result.pairs)} pair(s), {len(result.regressions)} trustworthy regression(s) beyond "
            f"+{threshold_pct:g}%, {untrusted} untrustworthy, {len(result.unpaired)} unpaired "
            f"(bootstrap of the ratio of medians, {result.resamples} resamples, seed {result.seed})"
        )
    if gate and result.regressions:
        if not as_json:
            console.print(f"[red]regression[/]: slower than +{threshold_pct:g}% with 95% confidence")
        sys.exit(EXIT_FAILED)
