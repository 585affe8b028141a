"""The result store: one SQLite file (WAL), one row per measurement (run), committed the moment it is measured.

A crash, Ctrl-C or ``kill -9`` loses nothing already written (each ``put`` is its own committed
transaction, ``synchronous=FULL``), and a rerun of the same sweep (same sweep id) skips the configurations it
already measured ok. Columns are the fields of :class:`BenchJob` and :class:`Measurement` (lists / dicts as
JSON; the DeviceInfo as ``device_info``). Schema 3 keeps EVERY run: a row is one measurement with its own
``run_id`` (uuid4 hex, the only UNIQUE column), its ``sweep_id``, ``tags``, timestamp, toolkit version, runtime,
artifact sha256 and configuration (:data:`~.types.ROW_KEY`); measuring a configuration again adds a row.
Views that show "the" figure of a configuration take the latest ok row of it: :func:`latest_rows`.

The file is marked as ours (``PRAGMA application_id`` plus ``meta`` rows ``schema`` / ``schema_version``)
when the store creates it; a file holding other tables without the marker is refused, never altered.
Stores of schema 1 (release 0.1.0: no application id, or the configuration key without cpu_mask) and 2 (the
configuration as the UNIQUE key, one row per configuration) are migrated forward in place when opened to write,
every row kept: old rows get the sweep id ``legacy`` and a generated run id. ``readonly=True`` (show / export /
report) never writes, old stores included: ``mode=ro``, or ``immutable=1`` on a read-only mount. A write that
fails (disk full, read-only file, locked past the busy timeout) raises :class:`StoreWriteError`; rows committed
before it stay.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

from ..errors import EdgeVitDeployError
from .types import ROW_KEY, BenchJob, DeviceInfo, Measurement, row_key

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: cpu_mask joined the row key; 3: every run kept (UNIQUE run_id). Older: migrated on write
LEGACY_SWEEP_ID = "legacy"  # the sweep id of rows migrated from a schema-1/2 store
SCHEMA_NAME = "edgevit-deploy.bench"
APPLICATION_ID = 0x45564231  # "EVB1": PRAGMA application_id of every store this toolkit creates
TABLE = "measurements"
DEFAULT_STORE = "edgevit-bench.sqlite"

_JOB_FIELDS = [f.name for f in fields(BenchJob)]
_KEY_FIELDS = list(ROW_KEY)
_MEAS_FIELDS = [f.name for f in fields(Measurement) if f.name not in ("job", "device")]
_JSON_FIELDS = {f.name for f in fields(Measurement) if str(f.type).split("[")[0] in ("list", "dict", "Sequence")} | {
    "device_info"
}
_BOOL_FIELDS = {f.name for f in fields(Measurement) if str(f.type).startswith("bool")}
_SQL_TYPES = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
COLUMNS = [*_JOB_FIELDS, *_MEAS_FIELDS, "device_info"]


class StoreError(EdgeVitDeployError, RuntimeError):
    """The store file cannot be opened or is not an edgevit-bench store."""

    exit_code: ClassVar[int] = 2  # the CLI's code: a --store that cannot be used is bad input


class StoreWriteError(StoreError):
    """A row could not be committed (disk full, read-only file, locked); earlier rows are intact."""

    exit_code: ClassVar[int] = 1  # the CLI's code: the run failed part-way


def _write_error(path: Path, exc: sqlite3.Error) -> StoreWriteError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        hint = "another process holds the store; wait for it or pass another --store PATH"
    elif "full" in text:
        hint = "free disk space, or pass --store on another disk, then run the same command again to resume"
    elif "readonly" in text or "read-only" in text:
        hint = "the file or its folder is read-only; pass a writable --store PATH"
    else:
        hint = "pass another --store PATH, then run the same command again to resume"
    return StoreWriteError(f"cannot write to the result store {path}: {text} ({hint})")


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(type_str: str) -> str:
    base = str(type_str).split("|")[0].strip()
    return _SQL_TYPES.get(base, "TEXT")


def _schema() -> str:
    cols = []
    for f in [*fields(BenchJob), *(f for f in fields(Measurement) if f.name in _MEAS_FIELDS)]:
        sql = "TEXT" if f.name in _JSON_FIELDS else _sql_type(str(f.type))
        cols.append(f"{f.name} {sql}")
    cols.append("device_info TEXT")
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (rowid INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(cols)}, "
        "UNIQUE(run_id))"
    )


def new_run_id() -> str:
    """A fresh, unique run id (uuid4 hex)."""
    return uuid.uuid4().hex


def latest_rows(rows: Iterable[dict[str, Any]], sweep_id: str | None = None) -> list[dict[str, Any]]:
    """THE view of "the" figure of each configuration (``show``, ``export``, ``report``, the sweep's table):
    per :data:`~.types.ROW_KEY`, the latest ok row (the latest row when none is ok, so a configuration that
    only failed still shows its failure); only the rows of ``sweep_id`` when given. ``rows`` oldest first (as
    :meth:`ResultStore.rows` returns them); the result keeps the order in which configurations first appear."""
    chosen: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        if sweep_id is not None and row.get("sweep_id") != sweep_id:
            continue
        key = row_key(row)
        held = chosen.get(key)
        if held is None or row.get("status") == "ok" or held.get("status") != "ok":
            chosen[key] = row
    return list(chosen.values())


def row_of(m: Measurement) -> dict[str, Any]:
    """``m`` as the row dict ``ResultStore.rows()`` would return for it."""
    return ResultStore._decode(ResultStore._encode(m))


class ResultStore:
    """Thread-safe (one connection behind a lock); use as a context manager or call ``close``."""

    def __init__(self, path: str | Path = DEFAULT_STORE, *, readonly: bool = False, timeout_s: float = 30.0):
        self.path = Path(path)
        self.readonly = readonly
        self._columns = list(COLUMNS)  # the columns this file has (a read-only old store may lack new ones)
        memory = str(path) == ":memory:"
        try:
            if readonly:
                self._conn = self._open_readonly(timeout_s)
            else:
                if not memory and self.path.parent and not self.path.parent.exists():
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(
                    str(self.path), check_same_thread=False, timeout=timeout_s, isolation_level=None
                )
            try:
                self._check_ownership()  # before any PRAGMA that would change someone else's file
                if not readonly:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    self._conn.execute("PRAGMA synchronous=FULL")
            except BaseException:
                self._conn.close()
                raise
        except OSError as exc:
            raise StoreError(
                f"cannot create the result store {self.path}: {exc.strerror or exc}; "
                "pass a --store PATH in a writable folder"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite store ({exc}); pass another --store PATH") from exc
        self._lock = threading.Lock()

    def _open_readonly(self, timeout_s: float) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(f"no result store at {self.path}; run `edgevit-bench sweep --store {self.path}` first")
        if self.path.stat().st_size == 0:
            raise StoreError(f"{self.path} is an empty file, not a result store; pass the --store a sweep wrote")
        uri = self.path.resolve().as_uri()
        conn = sqlite3.connect(
            f"{uri}?mode=ro", uri=True, check_same_thread=False, timeout=timeout_s, isolation_level=None
        )
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            # a WAL store on a read-only mount: no -shm can be made; with nothing writing, immutable is exact
            conn.close()
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.is_file() and wal.stat().st_size > 0:  # immutable would silently miss the rows in the WAL
                raise StoreError(
                    f"{self.path} cannot be read in place ({exc}) and rows are still in {wal.name}; "
                    "copy the store and its -wal file to a writable folder and read that copy"
                ) from exc
            log.debug("%s: mode=ro failed (%s); opening immutable", self.path, exc)
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False, isolation_level=None)

    def _tables(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _check_ownership(self) -> None:
        """Create a new store, accept ours (migrating schema 1/2 forward on write), migrate a 0.1.0 one, refuse
        anything else."""
        tables = self._tables() - {"sqlite_sequence"}
        app_id = int(self._conn.execute("PRAGMA application_id").fetchone()[0])
        if not tables and app_id == 0:
            if self.readonly:
                raise StoreError(f"{self.path} holds no result store (no tables); pass the --store a sweep wrote")
            self._create()
            return
        if app_id == APPLICATION_ID:
            if TABLE not in tables or "meta" not in tables:
                raise StoreError(
                    f"{self.path} is an edgevit-bench store without its tables (damaged); pass another --store PATH"
                )
            version = self._meta("schema_version")
            if version is None or not version.isdigit() or int(version) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has store schema {version}, this toolkit reads {SCHEMA_VERSION} "
                    "or older; upgrade edgevit-deploy or pass another --store PATH"
                )
            self._add_new_columns()
            return
        if app_id == 0 and self._is_legacy_store(tables):
            if not self.readonly:
                log.info("%s: migrating a 0.1.0 result store (adding its schema marker)", self.path)
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_NAME,))
                self._conn.execute("COMMIT")
            self._add_new_columns()
            return
        what = (
            f"a '{TABLE}' table that is not an edgevit-bench store's"
            if TABLE in tables
            else f"other tables ({', '.join(sorted(tables)[:5])})"
        )
        raise StoreError(
            f"{self.path} is a SQLite file with {what} (no edgevit-bench schema marker); "
            "it is left untouched: pass another --store PATH"
        )

    def _is_legacy_store(self, tables: set[str]) -> bool:
        """A store written by 0.1.0: meta.schema_version = 1 and a measurements table whose columns are ours."""
        if not {"meta", TABLE} <= tables:
            return False
        try:
            if self._meta("schema_version") != "1":
                return False
        except sqlite3.DatabaseError:
            return False
        have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({TABLE})")} - {"rowid"}
        return set(_KEY_FIELDS) - {"runner"} <= have and have <= set(COLUMNS)  # runner: a column since 0.2

    def _create(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._conn.execute(_schema())
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_NAME,))
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _add_new_columns(self) -> None:
        """Bring a store written by an earlier release up to date: a table whose UNIQUE constraint is not
        ``run_id`` (schema 1 / 2: one row per configuration) rebuilt to keep every run, then the columns
        appended to the dataclasses since the file was created (fields are append-only). Read-only, nothing
        changes and the missing columns read as NULL (:meth:`rows` shows their sweep id as ``legacy``)."""
        have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({TABLE})")}
        if self.readonly:
            self._columns = [c for c in COLUMNS if c in have]
            return
        if self._unique_key() != ["run_id"]:  # schema 1 / 2: the configuration was the row's identity
            self._rebuild_with_row_key(have)
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({TABLE})")}
        for name in [name for name in COLUMNS if name not in have]:
            self._conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} TEXT")

    def _unique_key(self) -> list[str]:
        """The columns of the measurements table's UNIQUE constraint (empty when it has none)."""
        for index in self._conn.execute(f"PRAGMA index_list({TABLE})").fetchall():
            name, unique, origin = index[1], index[2], index[3]
            if unique and origin == "u":
                info = self._conn.execute(f"PRAGMA index_info({_quote_name(name)})").fetchall()
                return [r[2] for r in sorted(info)]
        return []

    def _rollback(self) -> None:
        """ROLLBACK that never hides the error that caused it (after a failed COMMIT SQLite may already
        have rolled back, and ROLLBACK then raises "no transaction is active")."""
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.debug("%s: rollback after a failed write: %s", self.path, exc)

    def _rebuild_with_row_key(self, have: set[str]) -> None:
        """A store of schema 1 / 2 (a UNIQUE configuration key, from before ``runner``, ``cpu_mask`` or
        ``run_id``): copy every row, in its order, into a table that keeps every run (runner "default" where it
        was missing, an unset cpu mask as "", sweep id ``legacy``, a generated uuid4-hex run id, no tags), in one
        transaction (SQLite cannot alter a table constraint)."""
        old = f"{TABLE}_before_row_key"
        made = {
            "runner": "runner" if "runner" in have else "'default'",
            "cpu_mask": "IFNULL(cpu_mask, '')" if "cpu_mask" in have else "''",
            "run_id": "lower(hex(randomblob(16)))",
            "sweep_id": f"'{LEGACY_SWEEP_ID}'",
            "tags": "'[]'",
        }
        keep = [c for c in COLUMNS if c in have and c not in made]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(f"ALTER TABLE {TABLE} RENAME TO {old}")
            self._conn.execute(_schema())
            self._conn.execute(
                f"INSERT INTO {TABLE} ({', '.join([*keep, *made])}) "
                f"SELECT {', '.join([*keep, *made.values()])} FROM {old} ORDER BY rowid"
            )
            self._conn.execute(f"DROP TABLE {old}")
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    # ------------------------------------------------------------------------------------- writes
    def put(self, m: Measurement) -> None:
        """Add ``m`` as a new row (every run is kept), committed before returning. ``m.run_id`` is set to a
        new uuid4 hex when empty; putting the same run id again updates that row (never a duplicate)."""
        if not m.run_id:
            m.run_id = new_run_id()
        row = self._encode(m)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{k}=excluded.{k}" for k in row if k != "run_id")
        sql = f"INSERT INTO {TABLE} ({names}) VALUES ({marks}) ON CONFLICT(run_id) DO UPDATE SET {updates}"
        self._write(lambda: self._conn.execute(sql, list(row.values())))

    def _write(self, body: Any) -> None:
        """One committed transaction; any SQLite failure is a StoreWriteError and nothing half-written stays."""
        if self.readonly:
            raise StoreWriteError(f"{self.path} was opened read-only; nothing can be written to it")
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                body()
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise _write_error(self.path, exc) from exc
            except BaseException:
                self._rollback()
                raise

    @staticmethod
    def _encode(m: Measurement) -> dict[str, Any]:
        row: dict[str, Any] = {name: getattr(m.job, name) for name in _JOB_FIELDS}
        for name in _MEAS_FIELDS:
            value = getattr(m, name)
            row[name] = (
                json.dumps(list(value) if isinstance(value, tuple) else value) if name in _JSON_FIELDS else value
            )
        row["device_info"] = json.dumps(m.device.to_dict()) if m.device else None
        row["cpu_mask"] = row["cpu_mask"] or ""  # a configuration column: "" for no mask (as schema 1 / 2 wrote)
        return row

    # -------------------------------------------------------------------------------------- reads
    def rows(self, status: str | None = None, sweep_id: str | None = None) -> list[dict[str, Any]]:
        """Every row (every run) as a dict (JSON columns decoded), oldest first; only ``status`` / ``sweep_id``
        rows when given. Rows of a schema-1/2 store opened read-only read as sweep ``legacy``, run ``legacy-N``."""
        sql = f"SELECT rowid, {', '.join(c if c in self._columns else 'NULL' for c in COLUMNS)} FROM {TABLE}"
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if sweep_id is not None and "sweep_id" in self._columns:
            where.append("sweep_id = ?")
            args.append(sweep_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            cur = self._conn.execute(sql + " ORDER BY rowid", args)
            raw = cur.fetchall()
        out = []
        for r in raw:
            row = self._decode(dict(zip(COLUMNS, r[1:])))
            row["run_id"] = row.get("run_id") or f"{LEGACY_SWEEP_ID}-{r[0]}"
            row["sweep_id"] = LEGACY_SWEEP_ID if row.get("sweep_id") is None else row["sweep_id"]
            row["tags"] = row.get("tags") or []
            out.append(row)
        if sweep_id is not None and "sweep_id" not in self._columns:
            out = [row for row in out if row["sweep_id"] == sweep_id]
        return out

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for name in _JSON_FIELDS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
        for name in _BOOL_FIELDS:
            if row.get(name) is not None:
                row[name] = bool(row[name])
        if "cpu_mask" in row:
            row["cpu_mask"] = row["cpu_mask"] or None
        return row

    def measurements(self) -> Iterator[Measurement]:
        for row in self.rows():
            job = BenchJob(**{k: row[k] for k in _JOB_FIELDS})
            info = row["device_info"]
            yield Measurement(job=job, device=DeviceInfo(**info) if info else None, **{k: row[k] for k in _MEAS_FIELDS})

    def completed_keys(self, include_failed: bool = False, sweep_id: str | None = None) -> set[tuple[str, ...]]:
        """Keys a resumed sweep skips: configurations measured ok (and failed ones with ``include_failed``),
        in the sweep ``sweep_id`` when given (else in any sweep)."""
        statuses: list[str] = ["ok", "failed"] if include_failed else ["ok"]
        marks = ", ".join("?" for _ in statuses)
        sql = f"SELECT {', '.join(_KEY_FIELDS)} FROM {TABLE} WHERE status IN ({marks})"
        if sweep_id is not None:
            sql += " AND IFNULL(sweep_id, ?) = ?"
            statuses += [LEGACY_SWEEP_ID, sweep_id]
        with self._lock:
            cur = self._conn.execute(sql, statuses)
            return {row_key(dict(zip(_KEY_FIELDS, r))) for r in cur.fetchall()}

    def sweep_ids(self) -> dict[str, int]:
        """Every sweep id in the store -> its number of rows, in the order the sweeps first wrote."""
        with self._lock:
            if "sweep_id" not in self._columns:
                return {LEGACY_SWEEP_ID: int(self._conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])}
            cur = self._conn.execute(
                f"SELECT IFNULL(sweep_id, ?), COUNT(*), MIN(rowid) FROM {TABLE} GROUP BY 1 ORDER BY 3",
                (LEGACY_SWEEP_ID,),
            )
            return {str(r[0]): int(r[1]) for r in cur.fetchall()}

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def delete(self, keys: Iterable[tuple[str, ...]], sweep_id: str | None = None) -> None:
        """Delete every row (every run) of these configurations; only those of ``sweep_id`` when given."""
        where = " AND ".join(f"{k} = ?" for k in _KEY_FIELDS)
        extra: list[str] = []
        if sweep_id is not None:
            where += " AND sweep_id = ?"
            extra = [sweep_id]
        keys = list(keys)

        def body() -> None:
            for key in keys:
                self._conn.execute(f"DELETE FROM {TABLE} WHERE {where}", [*key, *extra])

        self._write(body)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
