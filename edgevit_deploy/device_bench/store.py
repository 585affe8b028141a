"""The result store: one SQLite file (WAL), one row per BenchJob key, committed the moment it is measured.

A crash, Ctrl-C or ``kill -9`` loses nothing already written (each ``put`` is its own committed
transaction, ``synchronous=FULL``), and a rerun of the same sweep skips completed keys. Columns are
the fields of :class:`BenchJob` and :class:`Measurement` (lists / dicts as JSON; the DeviceInfo as
``device_info``); a row written again for the same key replaces the previous one (no duplicates).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import EdgeVitDeployError
from .types import BenchJob, DeviceInfo, Measurement

SCHEMA_VERSION = 1
TABLE = "measurements"
DEFAULT_STORE = "edgevit-bench.sqlite"

_JOB_FIELDS = [f.name for f in fields(BenchJob)]
_KEY_FIELDS = ["model", "target", "precision", "threads", "delegate", "device", "img_size", "runner"]
_MEAS_FIELDS = [f.name for f in fields(Measurement) if f.name not in ("job", "device")]
_JSON_FIELDS = {f.name for f in fields(Measurement)
                if str(f.type).split("[")[0] in ("list", "dict", "Sequence")} | {"device_info"}
_BOOL_FIELDS = {f.name for f in fields(Measurement) if str(f.type).startswith("bool")}
_SQL_TYPES = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
COLUMNS = [*_JOB_FIELDS, *_MEAS_FIELDS, "device_info"]


class StoreError(EdgeVitDeployError, RuntimeError):
    """The store file cannot be opened or is not an edgevit-bench store."""


def _sql_type(type_str: str) -> str:
    base = str(type_str).split("|")[0].strip()
    return _SQL_TYPES.get(base, "TEXT")


def _schema() -> str:
    cols = []
    for f in [*fields(BenchJob), *(f for f in fields(Measurement) if f.name in _MEAS_FIELDS)]:
        sql = "TEXT" if f.name in _JSON_FIELDS else _sql_type(f.type)
        cols.append(f"{f.name} {sql}")
    cols.append("device_info TEXT")
    return (f"CREATE TABLE IF NOT EXISTS {TABLE} (rowid INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(cols)}, "
            f"UNIQUE({', '.join(_KEY_FIELDS)}))")


def row_of(m: Measurement) -> dict[str, Any]:
    """``m`` as the row dict ``ResultStore.rows()`` would return for it."""
    return ResultStore._decode(ResultStore._encode(m))


class ResultStore:
    """Thread-safe (one connection behind a lock); use as a context manager or call ``close``."""

    def __init__(self, path: str | Path = DEFAULT_STORE):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0,
                                         isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._conn.execute(_schema())
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path} has store schema {row[0]}, this toolkit writes {SCHEMA_VERSION}; "
                                 "use a new --store file")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite store ({exc}); pass another --store PATH") from exc
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Add columns appended to the dataclasses since the file was created (fields are append-only)."""
        have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({TABLE})")}
        if "runner" not in have:
            self._rebuild_with_runner_key(have)
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({TABLE})")}
        for name in COLUMNS:
            if name not in have:
                self._conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} TEXT")

    def _rebuild_with_runner_key(self, have: set[str]) -> None:
        """A store from before ``runner`` joined the row key: copy its rows (runner "default") into a table
        whose UNIQUE key has it, in one transaction (SQLite cannot alter a table constraint)."""
        old = f"{TABLE}_before_runner"
        keep = [c for c in COLUMNS if c in have]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(f"ALTER TABLE {TABLE} RENAME TO {old}")
            self._conn.execute(_schema())
            self._conn.execute(f"INSERT INTO {TABLE} ({', '.join(keep)}, runner) "
                               f"SELECT {', '.join(keep)}, 'default' FROM {old} ORDER BY rowid")
            self._conn.execute(f"DROP TABLE {old}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------------------------- writes
    def put(self, m: Measurement) -> None:
        """Insert or replace the row of ``m.job.key``, committed before returning."""
        row = self._encode(m)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{k}=excluded.{k}" for k in row if k not in _KEY_FIELDS)
        sql = (f"INSERT INTO {TABLE} ({names}) VALUES ({marks}) "
               f"ON CONFLICT({', '.join(_KEY_FIELDS)}) DO UPDATE SET {updates}")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(sql, list(row.values()))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _encode(m: Measurement) -> dict[str, Any]:
        row: dict[str, Any] = {name: getattr(m.job, name) for name in _JOB_FIELDS}
        for name in _MEAS_FIELDS:
            value = getattr(m, name)
            row[name] = json.dumps(list(value) if isinstance(value, tuple) else value) if name in _JSON_FIELDS \
                else value
        row["device_info"] = json.dumps(m.device.to_dict()) if m.device else None
        return row

    # -------------------------------------------------------------------------------------- reads
    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every row as a dict (JSON columns decoded), oldest first."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
        args: tuple[Any, ...] = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        with self._lock:
            cur = self._conn.execute(sql + " ORDER BY rowid", args)
            raw = cur.fetchall()
        return [self._decode(dict(zip(COLUMNS, r))) for r in raw]

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for name in _JSON_FIELDS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
        for name in _BOOL_FIELDS:
            if row.get(name) is not None:
                row[name] = bool(row[name])
        return row

    def measurements(self) -> Iterator[Measurement]:
        for row in self.rows():
            job = BenchJob(**{k: row[k] for k in _JOB_FIELDS})
            info = row["device_info"]
            yield Measurement(job=job, device=DeviceInfo(**info) if info else None,
                              **{k: row[k] for k in _MEAS_FIELDS})

    def completed_keys(self, include_failed: bool = False) -> set[tuple[str, ...]]:
        """Keys a resumed sweep skips: rows measured ok (and failed ones with ``include_failed``)."""
        statuses = ("ok", "failed") if include_failed else ("ok",)
        marks = ", ".join("?" for _ in statuses)
        with self._lock:
            cur = self._conn.execute(f"SELECT {', '.join(_KEY_FIELDS)} FROM {TABLE} WHERE status IN ({marks})",
                                     statuses)
            return {tuple(str(v) for v in r) for r in cur.fetchall()}

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def delete(self, keys: Iterable[tuple[str, ...]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            for key in keys:
                where = " AND ".join(f"{k} = ?" for k in _KEY_FIELDS)
                self._conn.execute(f"DELETE FROM {TABLE} WHERE {where}", key)
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
