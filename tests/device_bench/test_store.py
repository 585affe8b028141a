"""The SQLite result store: committed per row, one row per key, every Measurement field round-trips."""
from __future__ import annotations

import sqlite3
from dataclasses import fields

import pytest

from edgevit_deploy.device_bench.store import COLUMNS, ResultStore, StoreError, StoreWriteError, row_of
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


def test_every_run_of_a_configuration_is_kept_and_the_latest_ok_one_is_its_figure(tmp_path):
    """Schema 3: a row per run (own run id); the views' one selection (latest_rows) shows the latest ok run."""
    from edgevit_deploy.device_bench.store import latest_rows

    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(_m(1, status="failed", median=None, reason="timeout"))
        store.put(_m(1, median=4.25))
        store.put(_m(1, median=4.5))
        store.put(_m(1, status="failed", median=None, reason="device dropped"))
        rows = store.rows()
        assert [r["median_ms"] for r in rows] == [None, 4.25, 4.5, None]
        assert len({r["run_id"] for r in rows}) == 4 and all(len(r["run_id"]) == 32 for r in rows)
        (latest,) = latest_rows(rows)
        assert latest["median_ms"] == 4.5 and latest["status"] == "ok" and latest["reason"] is None
        again = next(m for m in store.measurements() if m.run_id == rows[1]["run_id"])
        again.median_ms = 4.0
        store.put(again)                                    # the same run id updates its row, never duplicates
        assert [r["median_ms"] for r in store.rows()] == [None, 4.0, 4.5, None]


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


# ------------------------------------------------------------------------- ownership and migration
def _legacy_store(path):
    """A store as release 0.1.0 wrote it: meta.schema_version = 1, no application id, WAL, our columns."""
    from edgevit_deploy.device_bench.store import _schema

    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        c.execute(_schema())
        c.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        c.execute("INSERT INTO measurements (model, target, precision, threads, delegate, device, img_size, status, "
                  "median_ms) VALUES ('edgevit_xxs', 'onnx', 'fp32', 1, 'cpu', 'local', 64, 'ok', 2.5)")
    c.close()


def test_a_foreign_measurements_table_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "theirs.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE measurements (id INTEGER PRIMARY KEY, sensor TEXT, value REAL)")
        c.execute("INSERT INTO measurements (sensor, value) VALUES ('t1', 21.5)")
    c.close()
    before = db.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not an edgevit-bench store's.*left untouched"):
            ResultStore(db, readonly=readonly)
    assert db.read_bytes() == before     # no ALTER TABLE, no meta table, no WAL switch
    with sqlite3.connect(db) as c:
        assert [r[1] for r in c.execute("PRAGMA table_info(measurements)")] == ["id", "sensor", "value"]
    c.close()


def test_a_sqlite_file_with_other_tables_is_refused(tmp_path):
    db = tmp_path / "app.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE users (name TEXT)")
    c.close()
    with pytest.raises(StoreError, match="other tables \\(users\\)"):
        ResultStore(db)


def test_a_new_store_carries_the_schema_marker(tmp_path):
    from edgevit_deploy.device_bench.store import APPLICATION_ID, SCHEMA_NAME, SCHEMA_VERSION

    ResultStore(tmp_path / "s.sqlite").close()
    with sqlite3.connect(tmp_path / "s.sqlite") as c:
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert dict(c.execute("SELECT key, value FROM meta")) == {"schema": SCHEMA_NAME,
                                                                   "schema_version": str(SCHEMA_VERSION)}
    c.close()


def test_a_0_1_0_store_is_migrated_with_nothing_lost(tmp_path):
    from edgevit_deploy.device_bench.store import APPLICATION_ID

    db = tmp_path / "old.sqlite"
    _legacy_store(db)
    rows = ResultStore(db, readonly=True).rows()    # readable as is, read-only
    assert [(r["model"], r["median_ms"]) for r in rows] == [("edgevit_xxs", 2.5)]
    with ResultStore(db) as store:
        store.put(_m(1))
        assert [(r["model"], r["median_ms"]) for r in store.rows()] == [("edgevit_xxs", 2.5), ("edgevit_xxs", 3.5)]
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    c.close()


# ------------------------------------------------------------------------------------- read-only
def test_show_side_opens_read_only_and_never_creates_a_file(tmp_path):
    from edgevit_deploy.device_bench.api import read_rows

    with pytest.raises(StoreError, match="no result store"):
        read_rows(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(StoreError, match="empty file"):
        read_rows(empty)
    assert empty.stat().st_size == 0
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(_m(1))
    before = (tmp_path / "s.sqlite").read_bytes()
    ro = ResultStore(tmp_path / "s.sqlite", readonly=True)
    assert [r["threads"] for r in ro.rows()] == [1]
    with pytest.raises(StoreWriteError, match="read-only"):
        ro.put(_m(2))
    ro.close()
    assert (tmp_path / "s.sqlite").read_bytes() == before


def test_a_store_on_a_read_only_mount_is_read_immutable(tmp_path, monkeypatch):
    """On a read-only mount `mode=ro` cannot make the WAL index: the store falls back to immutable=1.
    (A read-only mount needs root to make; the failure it causes is injected at the connect.)"""
    import edgevit_deploy.device_bench.store as store_mod

    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(_m(1))
    real_connect = sqlite3.connect
    uris = []

    def connect(target, *a, **kw):
        uris.append(str(target))
        if "mode=ro" in str(target):
            conn = real_connect(":memory:")
            conn.execute("PRAGMA query_only=1")
            return _Failing(conn, "SELECT COUNT(*) FROM sqlite_master", "attempt to write a readonly database")
        return real_connect(target, *a, **kw)

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    assert [r["threads"] for r in ResultStore(tmp_path / "s.sqlite", readonly=True).rows()] == [1]
    assert any("immutable=1" in u for u in uris)
    # rows still in the WAL (the writer was killed) would be missed by immutable=1: an error, not a short table
    (tmp_path / "s.sqlite-wal").write_bytes(b"\0" * 64)
    with pytest.raises(StoreError, match="still in s.sqlite-wal"):
        ResultStore(tmp_path / "s.sqlite", readonly=True)


# --------------------------------------------------------------------------------- failed writes
class _Failing:
    """A connection whose statement ``fail_on`` raises ``message``; for a failing COMMIT the transaction is
    rolled back first, as SQLite does on SQLITE_FULL (so a second ROLLBACK has no transaction)."""

    def __init__(self, conn, fail_on: str, message: str):
        self._conn, self.fail_on, self.message = conn, fail_on, message

    def execute(self, sql, *args):
        if sql.strip().upper().startswith(self.fail_on.upper()):
            if self.fail_on == "COMMIT":
                self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError(self.message)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.mark.parametrize("message", ["database or disk is full", "attempt to write a readonly database"])
def test_a_failed_commit_raises_its_own_error_and_keeps_earlier_rows(tmp_path, message):
    db = tmp_path / "s.sqlite"
    store = ResultStore(db)
    store.put(_m(1))
    store._conn = _Failing(store._conn, "COMMIT", message)
    with pytest.raises(StoreWriteError, match=message) as err:
        store.put(_m(2))
    assert "no transaction" not in str(err.value)   # the ROLLBACK after it did not replace the real error
    store._conn = store._conn._conn
    store.put(_m(3))                                  # the store is still usable
    with sqlite3.connect(db) as other:
        assert sorted(r[0] for r in other.execute("SELECT threads FROM measurements")) == [1, 3]
    other.close()
    store.close()


def test_a_real_full_database_is_a_write_error(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    store.put(_m(1))
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")       # SQLite's own "disk full"
    with pytest.raises(StoreWriteError, match="full"):
        for t in range(2, 200):
            store.put(_m(t, raw_output="x" * 5000))
    assert store.count() >= 1 and store.rows()[0]["threads"] == 1
    store.close()


def test_a_store_locked_past_the_timeout_is_a_write_error(tmp_path):
    db = tmp_path / "s.sqlite"
    store = ResultStore(db, timeout_s=0.2)
    store.put(_m(1))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreWriteError, match="locked.*another process"):
            store.put(_m(2))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.put(_m(2))
    assert store.count() == 2
    store.close()


# ------------------------------------------------------------------------------------------ row key
def test_cpu_mask_is_part_of_the_row_key_and_an_unset_mask_is_one_key(tmp_path):
    from edgevit_deploy.device_bench.store import latest_rows
    from edgevit_deploy.device_bench.types import ROW_KEY

    assert "cpu_mask" in ROW_KEY and "runner" in ROW_KEY
    unpinned = Measurement(job=BenchJob("edgevit_xxs", "tflite", "fp32", device="adb:X"), status="ok", median_ms=3.0)
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put(_m(1, median=2.0))                        # cpu mask f0
        store.put(unpinned)
        store.put(Measurement(job=unpinned.job, status="ok", median_ms=3.25))   # a second run: no mask is one key
        rows = latest_rows(store.rows())
        assert sorted((r["cpu_mask"], r["median_ms"]) for r in rows if r["cpu_mask"]) == [("f0", 2.0)]
        assert [(r["cpu_mask"], r["median_ms"]) for r in rows if not r["cpu_mask"]] == [(None, 3.25)]
        assert store.completed_keys() == {_m(1).job.key, unpinned.job.key}
        assert row_of(unpinned)["cpu_mask"] is None and [m.job for m in store.measurements()][1] == unpinned.job
        store.delete([unpinned.job.key])
        assert [r["cpu_mask"] for r in store.rows()] == ["f0"]


def test_a_store_keyed_without_cpu_mask_is_migrated_with_every_row(tmp_path):
    """A store the previous release wrote (schema 1: application id, UNIQUE key without cpu_mask) holding two
    rows: it still opens read-only as it is, and opened to write keeps both rows and takes rows that differ
    only in the cpu mask."""
    from edgevit_deploy.device_bench.store import APPLICATION_ID, SCHEMA_NAME, SCHEMA_VERSION, _schema

    db = tmp_path / "v1.sqlite"
    old_key = "UNIQUE(model, target, precision, threads, delegate, device, img_size, runner))"
    schema = _schema()
    schema = schema[: schema.index("UNIQUE(")] + old_key
    with sqlite3.connect(db) as c:
        c.execute(f"PRAGMA application_id={APPLICATION_ID}")
        c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        c.execute(schema)
        c.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_NAME,))
        c.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        for threads, mask, median in ((1, None, 2.5), (4, "f0", 1.5)):
            c.execute("INSERT INTO measurements (model, target, precision, threads, delegate, device, img_size, "
                      "cpu_mask, runner, status, median_ms, notes) VALUES ('edgevit_xxs', 'tflite', 'fp32', ?, "
                      "'xnnpack', 'adb:X', 64, ?, 'default', 'ok', ?, '[]')", (threads, mask, median))
    c.close()
    old_rows = [(r["threads"], r["cpu_mask"], r["median_ms"]) for r in ResultStore(db, readonly=True).rows()]
    assert old_rows == [(1, None, 2.5), (4, "f0", 1.5)]
    with ResultStore(db) as store:
        assert [(r["threads"], r["cpu_mask"], r["median_ms"]) for r in store.rows()] == old_rows
        done = store.completed_keys()
        store.put(_m(1, median=3.0))                        # threads 1, mask f0: beside the unpinned row
        store.put(_m(4, median=1.25))                       # threads 4, mask f0: a second run, the old one kept
        assert sorted((r["threads"], r["cpu_mask"] or "", r["median_ms"]) for r in store.rows()) == [
            (1, "", 2.5), (1, "f0", 3.0), (4, "f0", 1.25), (4, "f0", 1.5)]
        assert [r["sweep_id"] for r in store.rows()][:2] == ["legacy", "legacy"]
    job = BenchJob("edgevit_xxs", "tflite", "fp32", threads=1, delegate="xnnpack", device="adb:X", img_size=64)
    assert job.key in done                                  # the old unpinned row still counts as measured
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert "cpu_mask" in c.execute("SELECT sql FROM sqlite_master WHERE name='measurements'").fetchone()[0]
    c.close()
    with ResultStore(db) as store:                          # reopening migrates nothing twice
        assert len(store.rows()) == 4
