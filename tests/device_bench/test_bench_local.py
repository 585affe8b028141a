"""The local device end to end: transport, the host runner's clean worker process on really exported
artifacts (EdgeViT-XXS at 64x64), failures, and the ``edgevit-bench`` CLI in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgevit_deploy.cli.bench_cmd import main as bench_main
from edgevit_deploy.device_bench import host_worker
from edgevit_deploy.device_bench.artifacts import ArtifactCache, ArtifactRequest, push_once, sha256_of
from edgevit_deploy.device_bench.runners.host import HostRunner, parse_worker_output
from edgevit_deploy.device_bench.transports.local import LocalTransport
from edgevit_deploy.device_bench.types import BenchJob

IMG = 64
WEIRD = "dev dir $(touch PWNED) ;'q' \"x\""      # spaces and shell metacharacters in every remote path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Under pytest's base temp dir: shared with test_sweep_adb.py, so the model is exported once."""
    return ArtifactCache(tmp_path_factory.getbasetemp() / "bench-artifacts")


@pytest.fixture(scope="module")
def artifacts(cache):
    """Really exported (toolkit export, no parity check) once for the module; later lookups are hits.
    ONNX only: a LiteRT conversion costs ~1 min on the CI machine (the worker loads every target through
    the same target table; benchmarks/host_latency.py runs the LiteRT path)."""
    return {t: cache.ensure(BenchJob("edgevit_xxs", t, "fp32", img_size=IMG)) for t in ("onnx",)}


@pytest.fixture()
def transport(tmp_path):
    t = LocalTransport(tmp_path / WEIRD)
    yield t
    t.close()


# ------------------------------------------------------------------------------------------ transport
def test_local_shell_returns_real_exit_codes_and_output(transport):
    res = transport.shell("echo out; echo err >&2; exit 3")
    assert (res.exit_code, res.stdout.strip(), res.stderr.strip(), res.ok) == (3, "out", "err", False)
    assert transport.shell("true").ok


def test_local_shell_timeout_kills_the_process_group(transport, tmp_path):
    marker = tmp_path / "late"
    res = transport.shell(f"(sleep 3; touch {marker}) & sleep 5", timeout=0.5)
    assert res.timed_out and not res.ok
    import time

    time.sleep(3.5)
    assert not marker.exists(), "a child of the timed-out command survived"


def test_local_files_and_device_info(transport, tmp_path):
    src = tmp_path / "a b.bin"
    src.write_bytes(os.urandom(4096))
    remote = f"{transport.work_dir}/sub dir/a b.bin"
    assert not transport.exists(remote)
    transport.push(src, remote)
    assert transport.exists(remote) and Path(remote).read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    transport.pull(remote, back)
    assert back.read_bytes() == src.read_bytes()
    assert transport.free_space(transport.work_dir) > 4096
    with pytest.raises(FileNotFoundError):
        transport.pull(remote + ".missing", back)
    info = transport.device_info()
    assert info.id == "local" and info.kind == "local" and info.abi and info.os_version
    assert isinstance(transport.thermal_snapshot()["temps_c"], dict)


def test_push_once_skips_an_identical_copy(transport, artifacts):
    art = artifacts["onnx"]
    remote = push_once(transport, art)
    assert sha256_of(Path(remote)) == art.sha256
    mtime = os.stat(remote).st_mtime_ns
    assert push_once(transport, art) == remote
    assert os.stat(remote).st_mtime_ns == mtime                   # not copied again
    Path(remote).write_bytes(b"corrupted")
    push_once(transport, art)
    assert sha256_of(Path(remote)) == art.sha256                   # a different file on the device is replaced


# ----------------------------------------------------------------------------------------- the runner
@pytest.mark.parametrize("target, runtime", [("onnx", "onnxruntime")])
def test_host_runner_measures_an_exported_model_in_a_clean_process(transport, artifacts, target, runtime, tmp_path):
    job = BenchJob("edgevit_xxs", target, "fp32", threads=1, img_size=IMG, warmup=2, iterations=7)
    m = HostRunner().run(transport, job, artifacts[target])
    assert m.status == "ok", m.reason
    assert m.runtime.startswith(runtime)
    assert len(m.latencies_ms) == 7 and all(v > 0 for v in m.latencies_ms)
    assert m.min_ms <= m.median_ms <= m.p90_ms <= m.p99_ms <= max(m.latencies_ms)
    assert m.init_ms > 0 and m.first_ms > 0 and m.warmup_count == 2
    assert m.peak_memory_mb > 10
    assert m.artifact_sha256 == artifacts[target].sha256 and m.model_size_bytes == artifacts[target].size_bytes
    assert m.input_shape == [1, 3, IMG, IMG]
    assert not list(Path(transport.work_dir).rglob("PWNED")) and not Path("PWNED").exists()


def test_worker_failure_is_a_failed_row_with_the_reason(transport, artifacts, tmp_path):
    from edgevit_deploy.device_bench.artifacts import Artifact

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    art = Artifact(junk, sha256_of(junk), junk.stat().st_size, "junk")
    m = HostRunner().run(transport, BenchJob("edgevit_xxs", "onnx", "fp32", img_size=IMG, iterations=2), art)
    assert m.status == "failed" and m.median_ms is None
    assert "Error" in m.reason or "error" in m.reason
    # a real model asked for far more iterations than the timeout allows (a junk file fails too fast)
    m = HostRunner(timeout_s=2.0).run(transport, BenchJob("edgevit_xxs", "onnx", "fp32", img_size=IMG,
                                                           iterations=10_000_000), artifacts["onnx"])
    assert m.status == "failed" and "timed out" in m.reason
    m = HostRunner().run(transport, BenchJob("edgevit_xxs", "onnx", "fp32", delegate="gpu", img_size=IMG), art)
    assert m.status == "failed" and "gpu" in m.reason


@pytest.mark.parametrize("text", ["", "hello\n", "EDGEVIT_RESULT {not json", 'EDGEVIT_RESULT ["ok"]'])
def test_malformed_worker_output_is_rejected(text):
    with pytest.raises(ValueError):
        parse_worker_output(text)


def test_worker_output_survives_runtime_chatter():
    out = 'INFO: Created TensorFlow Lite XNNPACK delegate\nEDGEVIT_RESULT {"ok": true, "latencies_ms": [1.0]}\n'
    assert parse_worker_output(out)["latencies_ms"] == [1.0]


def test_torch_eager_baseline_in_the_worker(tmp_path):
    spec = tmp_path / "m.torch.json"
    spec.write_text(json.dumps({"model": "edgevit_xxs", "img_size": IMG}))
    res = host_worker.measure("torch", spec, (1, 3, IMG, IMG), threads=1, warmup=1, iterations=3)
    assert res["ok"] and res["executor"].startswith("torch") and len(res["latencies_ms"]) == 3


# ---------------------------------------------------------------------------------------------- the CLI
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("edgevit-bench", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "edgevit_deploy.cli.bench_cmd"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "XDG_CACHE_HOME": str(cwd / "xdg")})


def test_cli_sweep_and_report_in_subprocesses_then_show_and_export(artifacts, cache, tmp_path):
    store = tmp_path / "runs" / "bench.sqlite"
    flags = ["--device", "local", "--models", "edgevit_xxs", "--targets", "onnx", "--precision", "fp32",
             "--threads", "1", "--img-size", str(IMG), "--store", str(store), "--cache-dir", str(cache.cache_dir)]
    sweep = _cli("sweep", *flags, "--warmup", "1", "--iterations", "5", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "1 measured, 0 failed" in sweep.stdout and "edgevit_xxs" in sweep.stdout
    assert cache.lookup(ArtifactRequest("edgevit_xxs", "onnx", "fp32", IMG)).path == artifacts["onnx"].path
    report = _cli("report", "--store", str(store), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "report.html").read_text().count("data:image/png;base64,") == 4
    # in-process from here on (the same commands without another ~5 s process start-up each)
    runner = CliRunner()
    exported = runner.invoke(bench_main, ["export", "--store", str(store), "--json"])
    assert exported.exit_code == 0, exported.output
    rows = json.loads(exported.output)
    assert [(r["target"], r["status"]) for r in rows] == [("onnx", "ok")]
    assert {"model", "target", "precision", "threads", "delegate", "device", "status", "median_ms", "mean_ms",
            "p90_ms"} <= set(rows[0])
    assert rows[0]["median_ms"] > 0 and rows[0]["device"] == "local" and len(rows[0]["latencies_ms"]) == 5
    show = runner.invoke(bench_main, ["show", "--store", str(store)])
    assert show.exit_code == 0 and show.output.count("edgevit_xxs") == 1
    csv_out = runner.invoke(bench_main, ["export", "--store", str(store), "--csv"])
    assert csv_out.exit_code == 0 and csv_out.output.splitlines()[0].startswith("model,target,precision")
    again = runner.invoke(bench_main, ["sweep", *flags])                # resume: nothing new to measure
    assert again.exit_code == 0 and "0 measured, 0 failed, 1 already" in again.output


def test_cli_bad_input_is_a_clear_error(tmp_path):
    runner = CliRunner()
    res = runner.invoke(bench_main, ["sweep", "--models", "edgevit_xxz", "--store", str(tmp_path / "s.sqlite")])
    assert res.exit_code == 2 and "edgevit_xxs" in res.output          # the suggestion
    res = runner.invoke(bench_main, ["sweep", "--models", "edgevit_xxs", "--targets", "tensorrt"])
    assert res.exit_code == 2 and "unknown targets" in res.output
    res = runner.invoke(bench_main, ["show", "--store", str(tmp_path / "none.sqlite")])
    assert res.exit_code == 2 and "no result store" in res.output
    res = runner.invoke(bench_main, ["export", "--store", str(tmp_path / "none.sqlite")])
    assert res.exit_code == 2 and "--csv or --json" in res.output
