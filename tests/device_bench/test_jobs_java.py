"""Cross-language: bench-core (android_app/bench-core, Java) runs its job runner on the host JVM over a job
folder the Python side wrote; Python reads and validates what Java wrote (schema, shapes, outputs)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgevit_deploy.device_bench.jobs import protocol as P

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def classpath(tmp_path_factory) -> str:
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not on PATH: run scripts/setup.sh (installs Debian's default-jdk-headless)")
    build = tmp_path_factory.mktemp("bench-core-build")
    proc = subprocess.run(["bash", str(ROOT / "scripts/build_bench_core.sh"), "--compile-only"], capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "BUILD_DIR": str(build)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def _write_job(files: Path, tmp: Path, job_id: str, delegate: str = "cpu", n: int = 3) -> tuple[P.Job, np.ndarray]:
    model = tmp / f"{job_id}.tflite"
    model.write_bytes(b"bytes the fake runner never parses " + job_id.encode())
    import hashlib

    x = np.random.default_rng(1).standard_normal((n, 3, 6, 6)).astype(np.float32)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    job = P.Job(job_id=job_id, model=P.ModelRef("edgevit_xxs", "model.tflite", sha, "tflite", "fp32", [1, 3, 6, 6]),
                runtime=P.RuntimeRef("litert", delegate, 1),
                inputs=[P.Tensor("input", f"inputs/x{i}.npy", [1, 3, 6, 6]) for i in range(n)],
                warmup=2, iterations=7, timeout_s=60, created_at="2026-12-04T00:00:00Z")
    P.write_job(files, job, model, [x[i:i + 1] for i in range(n)])
    return job, x


def test_java_job_runner_output_is_read_and_validated_by_python(classpath, tmp_path):
    files = tmp_path / "files"
    ok_job, x = _write_job(files, tmp_path, "ok-1")
    gpu_job, _ = _write_job(files, tmp_path, "gpu-1", delegate="gpu")
    proc = subprocess.run(["java", "-cp", classpath, "org.edgevit.bench.core.HostMain", str(files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok = P.read_result(files, ok_job)          # schema + job consistency + every output file checked
    assert ok.status == "ok" and len(ok.latencies_ms) == 7 and ok.warmup == 2
    assert ok.runtime["version"] == "mean-runner 1" and ok.device["model"] == "host-jvm"
    assert ok.power_samples and ok.power_samples[0][1:] == [-1350000.0, 4012000.0]
    # Java's npy writer and float math give what numpy computes from the inputs Python wrote
    np.testing.assert_allclose(P.read_outputs(files, ok), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    gpu = P.read_result(files, gpu_job)
    assert gpu.status == "failed" and "delegate 'gpu' cannot be applied" in gpu.error
    status = P.read_status(files)
    assert status.state == "done" and sorted(status.done_jobs) == ["gpu-1", "ok-1"]
    assert P.pending_jobs(files) == []
    # resume: a second launch runs nothing and leaves the results as they were
    before = P.result_path(files, "ok-1").read_bytes()
    subprocess.run(["java", "-cp", classpath, "org.edgevit.bench.core.HostMain", str(files)], check=True,
                   capture_output=True, timeout=120)
    assert P.result_path(files, "ok-1").read_bytes() == before
