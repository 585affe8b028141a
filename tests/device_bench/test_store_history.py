"""Store schema 3: every run is kept (run id, sweep id, tags), sweeps resume per sweep id, ``--rerun`` adds rows,
and a store written by the previous release (schema 2, ``data/store_v2.sqlite`` made by ``data/make_store_v2.py``)
migrates forward with every row and field intact."""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgevit_deploy.cli.bench_cmd import main as bench_main
from edgevit_deploy.device_bench import api
from edgevit_deploy.device_bench.artifacts import ArtifactCache
from edgevit_deploy.device_bench.store import LEGACY_SWEEP_ID, SCHEMA_VERSION, ResultStore, latest_rows
from edgevit_deploy.device_bench.sweep import Sweep, check_sweep_id, rerun_sweep_id, spec_sweep_id
from edgevit_deploy.device_bench.sweep_config import SweepConfigError, SweepSpec
from edgevit_deploy.device_bench.types import BenchJob, DeviceInfo, Measurement, row_key

V2_STORE = Path(__file__).with_name("data") / "store_v2.sqlite"
SPEC = dict(models=["edgevit_xxs"], targets=["onnx", "tflite"], threads=[1, 2], img_size=64, warmup=0, iterations=4)


class _Transport:
    """The smallest transport the sweep needs: this host, no files moved."""

    kind = "local"
    work_dir = "/tmp"

    def __init__(self, device: str):
        self.device_id = device

    def device_info(self) -> DeviceInfo:
        return DeviceInfo(id=self.device_id, kind="local")

    def close(self) -> None:
        pass


class _Runner:
    """Fixed latencies; fails the jobs whose key is in ``fail`` (a mutable set the test changes)."""

    name = "fixed"

    def __init__(self, fail: set | None = None):
        self.fail = fail if fail is not None else set()
        self.calls: list[tuple[str, ...]] = []

    def run(self, transport, job: BenchJob, artifact: Path) -> Measurement:
        self.calls.append(job.key)
        if job.key in self.fail:
            return Measurement(job=job, status="failed", reason="injected failure", timestamp=_now())
        lat = [2.0 + 0.01 * i for i in range(job.iterations)]
        return Measurement(job=job, status="ok", runtime="fixed 1.0", latencies_ms=lat, median_ms=lat[len(lat) // 2],
                           timestamp=_now())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _exporter(req, out_dir: Path) -> Path:
    path = out_dir / f"{req.model}-{req.precision}.{req.target}"
    path.write_text(repr(req))
    return path


def _sweep(tmp: Path, store: ResultStore, spec: SweepSpec, runner: _Runner, **kw) -> Sweep:
    return Sweep(spec, store, ArtifactCache(tmp / "cache", exporter=_exporter), opener=_Transport,
                 runner_factory=lambda target, kind: runner, **kw)


def _m(median: float, **kw) -> Measurement:
    job = BenchJob("edgevit_xxs", "tflite", "fp32", threads=2, delegate="xnnpack", device="adb:X", img_size=64)
    return Measurement(job=job, status="ok", median_ms=median, latencies_ms=[median] * 3, **kw)


# ------------------------------------------------------------------------------------------ history
def test_two_runs_of_one_configuration_both_stay_with_their_own_ids(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        first, second = _m(3.0, sweep_id="a", tags=["v0.1"]), _m(3.3, sweep_id="b", tags=["v0.2", "ci"])
        store.put(first)
        store.put(second)
        rows = store.rows()
        assert [(r["median_ms"], r["sweep_id"], r["tags"]) for r in rows] == [
            (3.0, "a", ["v0.1"]), (3.3, "b", ["v0.2", "ci"])]
        assert [r["run_id"] for r in rows] == [first.run_id, second.run_id] and first.run_id != second.run_id
        assert all(re.fullmatch(r"[0-9a-f]{32}", r["run_id"]) for r in rows)
        assert row_key(rows[0]) == row_key(rows[1])           # one configuration, two runs
        assert [r["median_ms"] for r in latest_rows(rows)] == [3.3]
        assert [r["median_ms"] for r in latest_rows(rows, sweep_id="a")] == [3.0]
        assert store.sweep_ids() == {"a": 1, "b": 1}
        assert [r["median_ms"] for r in store.rows(sweep_id="a")] == [3.0]
        with sqlite3.connect(tmp_path / "s.sqlite") as c:     # the configuration is no UNIQUE key any more
            sql = c.execute("SELECT sql FROM sqlite_master WHERE name='measurements'").fetchone()[0]
        c.close()
        assert "UNIQUE(run_id)" in sql and sql.count("UNIQUE") == 1


def test_the_latest_ok_run_is_the_figure_and_a_later_failure_does_not_hide_it(tmp_path):
    rows = [
        {**_row(3.0), "status": "ok"},
        {**_row(None), "status": "failed", "reason": "timeout"},
        {**_row(None, threads=4), "status": "failed", "reason": "never ran"},
    ]
    latest = latest_rows(rows)
    assert [(r["threads"], r["status"], r["median_ms"]) for r in latest] == [(2, "ok", 3.0), (4, "failed", None)]


def _row(median, threads=2):
    return {"model": "m", "target": "onnx", "precision": "fp32", "threads": threads, "delegate": "cpu",
            "device": "local", "img_size": 64, "cpu_mask": None, "runner": "default", "median_ms": median,
            "sweep_id": "s"}


# ------------------------------------------------------------------------------------------ sweep ids
def test_the_default_sweep_id_is_derived_from_the_spec_and_resume_skips_only_within_it(tmp_path):
    spec = SweepSpec(**SPEC)
    assert spec_sweep_id(spec) == spec_sweep_id(SweepSpec(**SPEC))              # same command, same id
    assert spec_sweep_id(spec) != spec_sweep_id(SweepSpec(**{**SPEC, "threads": [1, 4]}))
    assert spec_sweep_id(spec) == spec_sweep_id(SweepSpec(**{**SPEC, "iterations": 5}))  # counts: as the row key
    assert re.fullmatch(r"sweep-[0-9a-f]{12}", spec_sweep_id(spec))
    store = ResultStore(tmp_path / "s.sqlite")
    fail = {BenchJob("edgevit_xxs", "tflite", "fp32", threads=2, device="local", img_size=64).key}
    runner = _Runner(fail)
    first = _sweep(tmp_path, store, spec, runner).run()
    assert first.sweep_id == spec_sweep_id(spec) and (first.ok, first.failed) == (3, 1)

    # the same command again (after a kill, say): ok rows skipped, the failed one retried, its failure kept
    fail.clear()
    again = _sweep(tmp_path, store, spec, runner).run()
    assert (again.skipped, again.ok, again.failed) == (3, 1, 0) and again.sweep_id == first.sweep_id
    assert len(runner.calls) == 5
    rows = store.rows()
    assert len(rows) == 5 and [r["reason"] for r in rows if r["status"] == "failed"] == ["injected failure"]
    assert {r["sweep_id"] for r in rows} == {first.sweep_id}
    assert all(r["status"] == "ok" for r in latest_rows(rows)) and len(latest_rows(rows)) == 4

    # a third run has nothing to do
    assert _sweep(tmp_path, store, spec, runner).run().skipped == 4 and len(runner.calls) == 5

    # ok rows of ANOTHER sweep id are not skipped: an explicit id measures everything under it
    named = _sweep(tmp_path, store, spec, runner, sweep_id="nightly-1", tags=["nightly", "nightly"]).run()
    assert (named.skipped, named.ok, named.sweep_id) == (0, 4, "nightly-1")
    assert {tuple(r["tags"]) for r in store.rows(sweep_id="nightly-1")} == {("nightly",)}
    store.close()


def test_rerun_starts_a_new_sweep_id_and_adds_rows_without_deleting_any(tmp_path):
    spec = SweepSpec(**SPEC)
    store = ResultStore(tmp_path / "s.sqlite")
    runner = _Runner()
    base = _sweep(tmp_path, store, spec, runner).run()
    r2 = _sweep(tmp_path, store, spec, runner, rerun=True).run()
    r3 = _sweep(tmp_path, store, spec, runner, rerun=True, tags=["after-upgrade"]).run()
    assert (r2.sweep_id, r3.sweep_id) == (f"{base.sweep_id}-r2", f"{base.sweep_id}-r3")
    assert (r2.skipped, r2.ok, r3.ok) == (0, 4, 4)
    assert store.sweep_ids() == {base.sweep_id: 4, r2.sweep_id: 4, r3.sweep_id: 4}
    assert len({r["run_id"] for r in store.rows()}) == 12
    # resuming a rerun: name it
    assert _sweep(tmp_path, store, spec, runner, sweep_id=r3.sweep_id).run().skipped == 4
    assert rerun_sweep_id("x", ["x", "x-r2", "x-r4"]) == "x-r3"
    store.close()


@pytest.mark.parametrize("bad", ["", "has space", "tab\there", "x" * 101])
def test_a_bad_sweep_id_is_refused(bad):
    with pytest.raises(SweepConfigError, match="--sweep-id"):
        check_sweep_id(bad)


# ------------------------------------------------------------------------------------------ migration
def _v2_copy(tmp_path: Path) -> Path:
    db = tmp_path / "v2.sqlite"
    shutil.copyfile(V2_STORE, db)
    return db


def test_the_committed_store_is_a_schema_2_store_of_the_previous_release(tmp_path):
    # a WAL-mode file: even a read-only reader makes -shm / -wal beside it, so a copy is read, never the fixture
    with sqlite3.connect(f"{_v2_copy(tmp_path).resolve().as_uri()}?mode=ro", uri=True) as c:
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
        cols = {r[1] for r in c.execute("PRAGMA table_info(measurements)")}
        assert not {"run_id", "sweep_id", "tags"} & cols
        assert c.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 7
    c.close()
    assert V2_STORE.stat().st_size < 100_000


def test_a_schema_2_store_reads_without_a_write_and_migrates_with_every_row_and_field(tmp_path):
    db = _v2_copy(tmp_path)
    before = db.read_bytes()
    with ResultStore(db, readonly=True) as ro:                # read-only: read as is, nothing written
        old = ro.rows()
    assert db.read_bytes() == before
    assert len(old) == 7 and {r["sweep_id"] for r in old} == {LEGACY_SWEEP_ID}
    assert api.read_rows(db, history=True) == old and db.read_bytes() == before

    with ResultStore(db) as store:                            # opened to write: migrated in place
        new = store.rows()
    assert len(new) == 7
    run_ids = [r.pop("run_id") for r in new]
    assert len(set(run_ids)) == 7 and all(re.fullmatch(r"[0-9a-f]{32}", r) for r in run_ids)
    for r in old:
        r.pop("run_id")
    assert new == old                                         # every field of every row, in order
    assert all(r["sweep_id"] == LEGACY_SWEEP_ID and r["tags"] == [] for r in new)
    # the fields the fixture filled, spot-checked against the script's values
    phone = [r for r in new if r["device"] == "adb:R58N1" and r["status"] == "ok"]
    assert [(r["threads"], r["cpu_mask"], r["energy_mj"]) for r in phone] == [(1, None, 21.5), (4, "f0", 86.0),
                                                                               (4, None, 86.0)]
    assert phone[0]["parity"]["max_abs"] == pytest.approx(0.012) and phone[1]["throttled"] is True
    assert phone[0]["device_info"]["cpu_max_freqs_khz"] == [1803000, 2348000, 2850000]
    assert len(phone[0]["latencies_ms"]) == 20 and phone[0]["notes"] == ["screen on"]
    failed = [r for r in new if r["status"] == "failed"]
    assert [r["reason"] for r in failed] == ["Failed to apply GPU delegate.",
                                             "export failed: RuntimeError: no calibration data"]
    assert {r["device"] for r in new} == {"adb:R58N1", "local"}
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert c.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%before%'").fetchone()[0] == 0
    c.close()
    with ResultStore(db) as store:                            # reopening migrates nothing twice
        assert [r["run_id"] for r in store.rows()] == run_ids
        # a migrated configuration counts as measured only in the legacy sweep: a new sweep measures it again
        assert store.completed_keys(sweep_id=LEGACY_SWEEP_ID) and not store.completed_keys(sweep_id="new")


def test_a_migrated_store_takes_new_runs_beside_the_old_ones(tmp_path):
    db = _v2_copy(tmp_path)
    with ResultStore(db) as store:
        old = next(r for r in store.rows() if r["threads"] == 1 and r["status"] == "ok")
        job = BenchJob(**{k: old[k] for k in ("model", "target", "precision", "threads", "delegate", "device",
                                              "img_size", "cpu_mask", "runner")})
        store.put(Measurement(job=job, status="ok", median_ms=10.0, sweep_id="after"))
        same = [r for r in store.rows() if row_key(r) == job.key]
    assert [(r["sweep_id"], r["median_ms"]) for r in same] == [(LEGACY_SWEEP_ID, old["median_ms"]), ("after", 10.0)]


# ------------------------------------------------------------------------------------------ the CLI views
def _store_with_history(tmp: Path) -> Path:
    db = tmp / "s.sqlite"
    with ResultStore(db) as store:
        store.put(_m(3.0, sweep_id="a"))
        store.put(_m(3.3, sweep_id="b"))
        store.put(Measurement(job=_m(0).job, status="failed", reason="device dropped", sweep_id="c"))
    return db


def test_show_export_and_report_use_the_latest_ok_run_and_history_shows_every_run(tmp_path):
    db = _store_with_history(tmp_path)
    run = CliRunner().invoke
    latest = json.loads(run(bench_main, ["export", "--store", str(db), "--json"]).output)
    assert [(r["median_ms"], r["sweep_id"]) for r in latest] == [(3.3, "b")]
    every = json.loads(run(bench_main, ["export", "--store", str(db), "--json", "--history"]).output)
    assert [r["sweep_id"] for r in every] == ["a", "b", "c"]
    one = json.loads(run(bench_main, ["export", "--store", str(db), "--json", "--sweep-id", "a"]).output)
    assert [r["median_ms"] for r in one] == [3.0]
    shown = run(bench_main, ["show", "--store", str(db), "--history"])
    assert shown.exit_code == 0 and shown.output.count("xnnpack") == 3
    assert run(bench_main, ["show", "--store", str(db)]).output.count("xnnpack") == 1
    bad = run(bench_main, ["show", "--store", str(db), "--sweep-id", "nope"])
    assert bad.exit_code == 2 and "no sweep 'nope'" in bad.output and "a, b, c" in bad.output
    assert "Traceback" not in bad.output


def test_run_twice_keeps_both_runs_each_its_own_sweep(tmp_path, monkeypatch):
    """`edgevit-bench run` (api.run_one) is one sweep per invocation: running it again adds a row."""
    from edgevit_deploy.device_bench import api as api_mod

    runner = _Runner()
    monkeypatch.setattr(api_mod, "default_runner_factory", lambda config=None: (lambda target, kind: runner))
    monkeypatch.setattr(api_mod, "ArtifactCache", lambda *a, **k: ArtifactCache(tmp_path / "c", exporter=_exporter))
    db = tmp_path / "s.sqlite"
    a = api_mod.run_one("edgevit_xxs", "onnx", img_size=64, warmup=0, iterations=3, store=db)
    b = api_mod.run_one("edgevit_xxs", "onnx", img_size=64, warmup=0, iterations=3, store=db)
    assert a.status == b.status == "ok" and a.sweep_id != b.sweep_id and a.sweep_id.startswith("run-")
    rows = ResultStore(db, readonly=True).rows()
    assert [r["sweep_id"] for r in rows] == [a.sweep_id, b.sweep_id] and len(runner.calls) == 2
