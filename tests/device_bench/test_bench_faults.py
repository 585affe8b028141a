"""Faults a sweep survives end to end: Ctrl-C / SIGTERM (exit 130 / 143, no thread traceback, committed rows kept, no
worker process left), a store
that cannot be written mid-sweep (exit 1, one error line, committed rows kept), and the artifact cache's temp
folders left behind by ``kill -9`` (removed by the next run)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgevit_deploy.cli.bench_cmd import main as bench_main
from edgevit_deploy.device_bench import api
from edgevit_deploy.device_bench.artifacts import ArtifactCache
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.types import BenchJob, Measurement

IMG = 64


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as c:
        rows = c.execute("SELECT threads, status, median_ms FROM measurements ORDER BY threads").fetchall()
    c.close()
    return rows


def _default_sigint() -> None:
    """A terminal's Ctrl-C reaches a process whose SIGINT is at its default; a test run started in the
    background of a non-interactive shell (SIGINT ignored, inherited by every child) must not change that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _workers_of(folder: Path) -> list[int]:
    """Live processes whose command line names ``folder`` (the sweep's host workers name their artifact)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next(ln for ln in (proc / "status").read_text().splitlines() if ln.startswith("State:"))
            except (OSError, StopIteration):
                continue
            if str(folder) in cmdline and "Z (zombie)" not in state:
                pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_mid_sweep_exits_without_a_traceback_keeps_committed_rows_and_no_worker(tmp_path, sig, code):
    """The real CLI on ``--device local`` with torch eager (no export): SIGINT (Ctrl-C, exit 130) or SIGTERM (a
    CI timeout, ``kill``: exit 143) after the first row. The host worker measuring the next row runs in its
    own session (a terminal's Ctrl-C does not reach it), so the sweep must kill it."""
    db = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd", "sweep", "--device", "local", "--models",
           "edgevit_xxs", "--targets", "torch", "--img-size", str(IMG), "--threads", "1,2,3,4,5,6", "--warmup", "1",
           "--iterations", "3", "--store", str(db), "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}  # the local device's work dir, named by workers
    child = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=_default_sigint)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if db.exists() and _rows(db):
                break
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    assert child.poll() is None, f"the sweep ended before it could be interrupted: {child.communicate()[1][-2000:]}"
    t0 = time.monotonic()
    child.send_signal(sig)
    out, err = child.communicate(timeout=60)
    assert child.returncode == code, err[-3000:]
    assert time.monotonic() - t0 < 20
    assert "Traceback" not in err and "Exception in thread" not in err, err[-3000:]
    assert "interrupted" in err
    rows = _rows(db)
    assert 1 <= len(rows) < 6
    assert all(status == "ok" and median > 0 for _, status, median in rows)   # nothing half-measured recorded
    assert _workers_of(tmp_path / "xdg") == []


class _QuickRunner:
    name = "quick"

    def run(self, transport, job: BenchJob, artifact) -> Measurement:
        lat = [1.0 + job.threads / 10, 1.1, 1.2]
        return Measurement(job=job, status="ok", runtime="quick", latencies_ms=lat, median_ms=lat[1])


def test_a_store_that_fills_up_mid_sweep_is_exit_1_with_the_committed_rows_intact(tmp_path, monkeypatch):
    """Fault injected: the third INSERT fails with SQLite's "database or disk is full"."""
    db = tmp_path / "s.sqlite"
    monkeypatch.setattr(api, "default_runner_factory", lambda config=None: (lambda target, kind: _QuickRunner()))
    real_init = ResultStore.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        if self.readonly:
            return
        conn, inserts = self._conn, []

        class Full:
            def execute(self, sql, *a):
                if sql.startswith("INSERT INTO measurements"):
                    inserts.append(sql)
                    if len(inserts) >= 3:
                        raise sqlite3.OperationalError("database or disk is full")
                return conn.execute(sql, *a)

            def __getattr__(self, name):
                return getattr(conn, name)

        self._conn = Full()

    monkeypatch.setattr(ResultStore, "__init__", init)
    result = CliRunner().invoke(bench_main, ["sweep", "--device", "local", "--models", "edgevit_xxs", "--targets",
                                             "torch", "--img-size", str(IMG), "--threads", "1,2,3,4,5", "--store",
                                             str(db), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "database or disk is full" in errors[0] and "2 row(s)" in errors[0]
    assert "measured" not in result.stdout                    # no "N measured, 0 failed" success summary
    assert [r[:2] for r in _rows(db)] == [(1, "ok"), (2, "ok")]


def test_temp_folders_of_killed_exports_are_removed_on_the_next_run(tmp_path):
    """A ``kill -9`` mid-export leaves ``.KEY-*`` folders; a new cache removes those of dead processes only."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    key = "0123456789abcdef01234567"
    stale = cache_dir / f".{key}-pid{dead_pid}-x1y2"
    live = cache_dir / f".{key}-pid{os.getpid()}-a1b2"
    old_style = cache_dir / f".{key}-q9w8e7r6"           # 0.1.0's name (no pid): removed once it is old
    for d in (stale, live, old_style):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "model.onnx").write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(old_style, (old, old))
    finished = cache_dir / key
    finished.mkdir()
    ArtifactCache(cache_dir)
    assert not stale.exists() and not old_style.exists()
    assert live.exists() and finished.exists()
