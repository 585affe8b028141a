"""The SQLite result store: committed per row, one row per key, every Measurement field round-trips."""
from __future__ import annotations

import sqlite3
from dataclasses import fields

import pytest

from edgevit_deploy.device_bench.store import COLUMNS, ResultStore, StoreError, row_of
from edgevit_deploy.device_bench.types import BenchJob, DeviceInfo, Measurement


def _m(threads: int = 1, status: str = "ok", median: float = 3.5, **kw) -> Measurement:
    job = BenchJob("edgevit_xxs", "tflite", "fp32", threads=threads, delegate="xnnpack", device="adb:X",
                   img_size=64, cpu_mask="f0")
    return Measurement(job=job, status=status, median_ms=median, **kw)


def test_each_put_is_committed_before_it_returns(tmp_path):
    db = tmp_path / "s.sqlite"
    store = ResultStore(db)
    store.put(_m(1))
    # a second connection (as another process would) sees the row without any close / flush
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 1
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.put(_m(2))
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2
    store.close()


def test_same_key_replaces_the_row_never_duplicates_it(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(_m(1, status="failed", median=None, reason="timeout"))
        store.put(_m(1, median=4.25))
        store.put(_m(1, median=4.5))
        rows = store.rows()
        assert len(rows) == 1
        assert rows[0]["median_ms"] == 4.5 and rows[0]["status"] == "ok" and rows[0]["reason"] is None


def test_every_field_round_trips(tmp_path):
    info = DeviceInfo(id="adb:X", kind="adb", model="Pixel 7", soc="gs201", os_version="14", abi="arm64-v8a",
                      cpu_governor="schedutil", cpu_max_freqs_khz=[1803000, 2348000, 2850000], extra={"sdk": 34})
    m = _m(1, runtime="benchmark_model 2.18", input_shape=(1, 64, 64, 3), model_size_bytes=123456,
           artifact_sha256="ab" * 32, init_ms=12.5, first_ms=40.0, warmup_count=10, latencies_ms=[3.0, 3.5, 4.0],
           mean_ms=3.5, p90_ms=3.9, p99_ms=3.99, std_ms=0.4, min_ms=3.0, trimmed_mean_ms=3.5, peak_memory_mb=55.5,
           energy_mj=12.3, power_w=3.4, energy_note="discharging", thermal_before={"thermal_status": 0},
           thermal_after={"thermal_status": 1, "temps_c": {"cpu": 41.5}}, throttled=True, battery_level=87.0,
           device=info, toolkit_version="0.1.0", timestamp="2026-01-01T00:00:00Z", raw_output="count=50 ...")
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(m)
        back = next(store.measurements())
    for f in fields(Measurement):
        want, got = getattr(m, f.name), getattr(back, f.name)
        if isinstance(want, tuple):
            want = list(want)
        assert got == want, f.name
    assert row_of(m)["device_info"]["cpu_max_freqs_khz"] == [1803000, 2348000, 2850000]
    assert set(row_of(m)) == set(COLUMNS)


def test_completed_keys_are_ok_rows_unless_failed_ones_are_asked_for(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(_m(1))
        store.put(_m(2, status="failed", median=None, reason="delegate failed"))
        ok_key, failed_key = _m(1).job.key, _m(2).job.key
        assert store.completed_keys() == {ok_key}
        assert store.completed_keys(include_failed=True) == {ok_key, failed_key}
        store.delete([ok_key])
        assert store.completed_keys(include_failed=True) == {failed_key}


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is not a database " * 100)
    with pytest.raises(StoreError, match="not a usable SQLite store"):
        ResultStore(bad)


def test_parallel_writers_lose_nothing(tmp_path):
    import threading

    store = ResultStore(tmp_path / "s.sqlite")
    threads = [threading.Thread(target=lambda t=t: store.put(_m(t))) for t in range(1, 33)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 32
    assert sorted(r["threads"] for r in store.rows()) == list(range(1, 33))
    store.close()
