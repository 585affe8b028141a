"""App rows in the store and the sweep spec: `runner` is part of a row's key (an app row sits beside the tool
row of the same model / target / delegate), a store written before that is migrated without losing a row,
and the runner choice is validated."""
from __future__ import annotations

import sqlite3

import pytest

from edgevit_deploy.device_bench.runners import get_runner, runner_kind
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.sweep_config import SweepConfigError, SweepSpec
from edgevit_deploy.device_bench.types import BenchJob, Measurement
from edgevit_deploy.errors import EdgeVitDeployError


def _m(runner: str, median: float, **kw) -> Measurement:
    job = BenchJob("edgevit_xxs", "tflite", "fp32", threads=4, delegate="gpu", device="adb:X", img_size=64,
                   runner=runner)
    return Measurement(job=job, status="ok", median_ms=median, **kw)


def test_app_and_tool_rows_of_the_same_job_coexist_with_parity(tmp_path):
    parity = {"executed": True, "passed": False, "max_abs": 0.3, "cosine": 0.97, "top1_agreement": 0.75}
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(_m("default", 5.0))
        store.put(_m("app", 6.0, parity=parity))
        store.put(_m("app", 6.5, parity=parity))   # same key: replaced
        rows = {r["runner"]: r for r in store.rows()}
        assert set(rows) == {"default", "app"} and rows["app"]["median_ms"] == 6.5
        assert rows["app"]["parity"] == parity and rows["default"]["parity"] == {}
        assert {m.job.runner for m in store.measurements()} == {"default", "app"}
        assert store.completed_keys() == {_m("default", 0).job.key, _m("app", 0).job.key}


def test_a_store_from_before_the_runner_key_is_migrated(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:   # the schema the previous release created
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("CREATE TABLE measurements (rowid INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT, target TEXT, "
                     "precision TEXT, threads INTEGER, delegate TEXT, device TEXT, img_size INTEGER, warmup INTEGER, "
                     "iterations INTEGER, cpu_mask TEXT, cooldown_s REAL, status TEXT, reason TEXT, median_ms REAL, "
                     "latencies_ms TEXT, notes TEXT, device_info TEXT, "
                     "UNIQUE(model, target, precision, threads, delegate, device, img_size))")
        conn.execute("INSERT INTO measurements (model, target, precision, threads, delegate, device, img_size, warmup, "
                     "iterations, status, median_ms, latencies_ms, notes) VALUES ('edgevit_xxs', 'tflite', 'fp32', 4, "
                     "'gpu', 'adb:X', 64, 10, 50, 'ok', 5.0, '[5.0]', '[]')")
    with ResultStore(db) as store:
        [old] = store.rows()
        assert old["runner"] == "default" and old["median_ms"] == 5.0 and old["latencies_ms"] == [5.0]
        store.put(_m("app", 6.0))          # would violate the old UNIQUE constraint
        assert sorted(r["runner"] for r in store.rows()) == ["app", "default"]
    with ResultStore(db) as store:         # reopening migrates nothing twice
        assert len(store.rows()) == 2


def test_runner_choice_in_sweep_specs_and_the_runner_table():
    spec = SweepSpec.from_mapping({"models": ["edgevit_xxs"], "devices": ["local", "adb:X"], "runner": "app"})
    assert {(j.device, j.runner) for j in spec.jobs()} == {("local", "default"), ("adb:X", "app")}
    assert SweepSpec(models=["edgevit_xxs"], runner="tool").runner == "default"
    with pytest.raises(SweepConfigError, match="runner must be one of tool, app, instrument"):
        SweepSpec(models=["edgevit_xxs"], runner="apk")
    assert SweepSpec.from_mapping({"models": ["m"], "runner": {"timeout_s": 5}}).runners == {"timeout_s": 5}
    assert type(get_runner("onnx", runner_kind("adb", "app"))).__name__ == "AppRunner"
    assert type(get_runner("tflite", runner_kind("adb", "instrument"))).__name__ == "InstrumentRunner"
    with pytest.raises(EdgeVitDeployError, match="no runner for target 'coreml'"):
        get_runner("coreml", runner_kind("adb", "app"))
