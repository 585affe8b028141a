"""Measured accuracy in the bench's SQLite file: table ``accuracy``, one row per source x set, each committed.

The file is opened through the bench's :class:`~edgevit_deploy.device_bench.store.ResultStore` first, so
that it is (or becomes) a valid edgevit-bench store; this module then keeps its own table beside the
``measurements`` one. A row written again for the same key (model, target, precision, input size, weights /
artifact sha256, set name and size) replaces the previous one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._version import __version__
from ..device_bench.store import ResultStore, StoreError
from ..errors import EdgeVitDeployError
from .api import EvalReport

log = logging.getLogger(__name__)

TABLE = "accuracy"
KEY = ("model", "target", "precision", "img_size", "sha256", "dataset", "n")
COLUMNS = (
    *KEY,
    "source",
    "executor",
    "top1",
    "top5",
    "top1_low",
    "top1_high",
    "top5_low",
    "top5_high",
    "agreement",
    "delta_top1",
    "reference",
    "dataset_root",
    "toolkit_version",
    "measured_at",
)
_TYPES = {
    "img_size": "INTEGER",
    "n": "INTEGER",
    "top1": "REAL",
    "top5": "REAL",
    "top1_low": "REAL",
    "top1_high": "REAL",
    "top5_low": "REAL",
    "top5_high": "REAL",
    "agreement": "REAL",
    "delta_top1": "REAL",
}


class StoreArgumentError(EdgeVitDeployError, ValueError):
    """``--store`` names a file that is not an edgevit-bench store (bad input: exit code 2)."""


def _connect(path: Path) -> sqlite3.Connection:
    with ResultStore(path):  # creates / checks the bench's own tables and schema marker
        pass
    try:
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        cols = ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (rowid INTEGER PRIMARY KEY AUTOINCREMENT, {cols}, "
            f"UNIQUE({', '.join(KEY)}))"
        )
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a usable SQLite store ({exc}); pass another --store PATH") from exc
    return conn


def check_store(path: str | Path) -> None:
    """Fail before a long evaluation, not after it: an existing ``path`` must open as a bench store."""
    path = Path(path)
    if path.exists():
        try:
            _connect(path).close()
        except StoreError as exc:
            raise StoreArgumentError(str(exc)) from exc


def rows_of(report: EvalReport) -> list[dict[str, Any]]:
    out = []
    for r in report.results:
        (l1, h1), (l5, h5) = r.top1_ci, r.top5_ci
        out.append(
            {
                "model": r.model,
                "target": r.target,
                "precision": r.precision,
                "img_size": r.img_size,
                "sha256": r.sha256,
                "dataset": report.dataset,
                "n": r.n,
                "source": r.source,
                "executor": r.executor,
                "top1": r.top1,
                "top5": r.top5,
                "top1_low": l1,
                "top1_high": h1,
                "top5_low": l5,
                "top5_high": h5,
                "agreement": r.agreement,
                "delta_top1": r.delta_top1,
                "reference": r.reference,
                "dataset_root": report.root,
                "toolkit_version": __version__,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    return out


def put_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Insert or replace each row, each in its own committed transaction; returns how many were written."""
    conn = _connect(Path(path))
    names = ", ".join(COLUMNS)
    marks = ", ".join("?" for _ in COLUMNS)
    updates = ", ".join(f"{c}=excluded.{c}" for c in COLUMNS if c not in KEY)
    sql = f"INSERT INTO {TABLE} ({names}) VALUES ({marks}) ON CONFLICT({', '.join(KEY)}) DO UPDATE SET {updates}"
    written = 0
    try:
        for row in rows:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(sql, [row.get(c) for c in COLUMNS])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            written += 1
    finally:
        conn.close()
    return written


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every accuracy row, oldest first; none when the file has no ``accuracy`` table (or does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    conn = sqlite3.connect(str(path), timeout=30.0)
    try:
        if conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?", (TABLE,)).fetchone() is None:
            return []
        cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY rowid")
        return [dict(zip(COLUMNS, r)) for r in cur.fetchall()]
    except sqlite3.DatabaseError as exc:  # the report still renders, with published figures only
        log.warning("cannot read measured accuracy from %s (%s); the report uses published top-1", path, exc)
        return []
    finally:
        conn.close()


def measured_top1(path: str | Path) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """(model, target, precision, img_size) -> the accuracy row measured on the largest set (latest on a tie):
    what the bench report puts beside a latency row of the same configuration."""
    best: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in read_rows(path):
        key = (row["model"], row["target"], row["precision"], int(row["img_size"]))
        if key not in best or int(row["n"]) >= int(best[key]["n"]):
            best[key] = row
    return best


def with_measured_top1(rows: Iterable[dict[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """Bench rows plus ``measured_top1`` (%) and ``measured_top1_on`` ("SET (n=N)") where ``edgevit-eval
    --store`` measured the same model, target, precision and input size; the rows are otherwise unchanged."""
    best = measured_top1(path)
    out = []
    for row in rows:
        try:
            key = (str(row["model"]), str(row["target"]), str(row["precision"]), int(row["img_size"]))
        except (KeyError, TypeError, ValueError):
            key = None
        hit = best.get(key) if key else None
        out.append(
            {
                **row,
                "measured_top1": round(100 * float(hit["top1"]), 2) if hit else None,
                "measured_top1_on": f"{hit['dataset']} (n={hit['n']})" if hit else None,
            }
        )
    return out
