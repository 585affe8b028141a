"""The device job protocol (edgevit_deploy.device_bench.jobs): schemas, atomic files, the resume rule, the
heartbeat, and the Python reference app run over a files dir with a stand-in ModelRunner."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgevit_deploy.device_bench.jobs import protocol as P
from edgevit_deploy.device_bench.jobs import reference_app as app


class AffineRunner:
    """A ModelRunner computing y = x.mean(spatial) @ W: real work, a known answer."""

    W = np.arange(3 * 5, dtype=np.float32).reshape(3, 5) / 7.0

    def load(self, model_path, runtime):
        self.bytes = Path(model_path).read_bytes()

    def run(self, x):
        return (x.mean(axis=(2, 3)) @ self.W).astype(np.float32)

    def runtime_version(self):
        return "affine 1.0"

    def close(self):
        pass


def _job(tmp: Path, job_id: str = "j1", n_inputs: int = 3, iterations: int = 4, **kw) -> tuple[P.Job, np.ndarray]:
    model = tmp / "m.tflite"
    model.write_bytes(b"not really a model " + job_id.encode())
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    x = np.random.default_rng(0).standard_normal((n_inputs, 3, 8, 8)).astype(np.float32)
    job = P.Job(job_id=job_id, model=P.ModelRef("m", "model.tflite", sha, "tflite", "fp32", [1, 3, 8, 8]),
                runtime=P.RuntimeRef("litert", "cpu", 2),
                inputs=[P.Tensor("input", f"inputs/x{i}.npy", [1, 3, 8, 8]) for i in range(n_inputs)],
                warmup=1, iterations=iterations, timeout_s=60, created_at="2026-12-04T00:00:00Z", **kw)
    P.write_job(tmp / "files", job, model, [x[i:i + 1] for i in range(n_inputs)])
    return job, x


def test_schemas_are_versioned_and_reject_other_versions(tmp_path):
    job, _ = _job(tmp_path)
    doc = job.to_dict()
    assert all(P.schema(n)["properties"]["protocol"] == {"const": 1} for n in P.SCHEMAS)
    with pytest.raises(P.ProtocolError, match="protocol"):
        P.validate({**doc, "protocol": 2}, "job")
    with pytest.raises(P.ProtocolError, match="runtime/delegate"):
        P.validate({**doc, "runtime": {**doc["runtime"], "delegate": "tpu"}}, "job")
    with pytest.raises(P.ProtocolError, match="file"):   # a path climbing out of the job folder
        P.validate({**doc, "model": {**doc["model"], "file": "../../etc/passwd"}}, "job")


def test_reference_app_runs_pending_jobs_and_the_host_reads_them(tmp_path):
    job, x = _job(tmp_path)
    files = tmp_path / "files"
    supply = tmp_path / "supply"
    supply.mkdir()
    (supply / "current_now").write_text("-1350000\n")
    (supply / "voltage_now").write_text("4012000\n")
    results = app.run_pending(files, AffineRunner, supply_dir=supply)
    assert [r.status for r in results] == ["ok"], results[0].error
    result = P.read_result(files, job)
    assert len(result.latencies_ms) == 4 and result.load_ms is not None and result.first_ms is not None
    assert result.runtime == {"name": "litert", "version": "affine 1.0", "delegate": "cpu", "threads": 2}
    assert result.power_samples and result.power_samples[0][1:] == [-1350000.0, 4012000.0]
    np.testing.assert_allclose(P.read_outputs(files, result), AffineRunner().run(x), rtol=1e-6)
    status = P.read_status(files)
    assert status.state == "done" and status.done_jobs == ["j1"] and status.seq >= 3
    assert P.pending_jobs(files) == []   # resume: a job with a result is never run again
    assert app.run_pending(files, AffineRunner) == []
    assert not [p for p in files.rglob("*.tmp")]   # atomic writes leave no temp files


def test_failed_delegate_and_tampered_model_are_failed_results_with_reasons(tmp_path):
    job, _ = _job(tmp_path, "gpu1")
    files = tmp_path / "files"
    doc = json.loads((files / "jobs/gpu1/job.json").read_text())
    doc["runtime"]["delegate"] = "gpu"
    (files / "jobs/gpu1/job.json").write_text(json.dumps(doc))
    _job(tmp_path, "bad-sha")
    (files / "jobs/bad-sha/model.tflite").write_bytes(b"truncated")
    results = {r.job_id: r for r in app.run_pending(files, app.HostModelRunner)}
    assert results["gpu1"].status == "failed" and "delegate 'gpu' cannot be applied" in results["gpu1"].error
    assert results["bad-sha"].status == "failed" and "sha256" in results["bad-sha"].error
    assert P.read_result(files, P.read_job(files / "jobs/bad-sha")).status == "failed"


def test_result_that_contradicts_its_job_is_rejected(tmp_path):
    job, _ = _job(tmp_path)
    files = tmp_path / "files"
    app.run_pending(files, AffineRunner)
    path = P.result_path(files, "j1")
    good = json.loads(path.read_text())
    cases = {
        "latencies for a job of 4": {**good, "latencies_ms": good["latencies_ms"][:2]},
        "job_id": {**good, "job_id": "other"},
        "error": {**good, "status": "failed"},          # failed without a reason: the schema refuses it
    }
    for message, doc in cases.items():
        path.write_text(json.dumps(doc))
        with pytest.raises(P.ProtocolError, match=message):
            P.read_result(files, job)
    path.write_text(json.dumps(good))
    out = files / good["outputs"][1]["file"]
    np.save(out, np.zeros((1, 7), dtype=np.float32))   # another shape than the result claims
    with pytest.raises(P.ProtocolError, match="shape"):
        P.read_result(files, job)
    out.unlink()
    with pytest.raises(P.ProtocolError, match="missing"):
        P.read_result(files, job)
    path.write_bytes(b'{"protocol": 1, "job_')
    with pytest.raises(P.ProtocolError, match="not valid JSON"):
        P.read_result(files, job)


def test_timeout_inside_the_job_is_a_failed_result(tmp_path):
    class Slow(AffineRunner):
        def run(self, x):
            import time
            time.sleep(0.05)
            return super().run(x)

    job, _ = _job(tmp_path, "slow", iterations=1000)
    doc = job.to_dict()
    doc["timeout_s"] = 0.3
    (tmp_path / "files/jobs/slow/job.json").write_text(json.dumps(doc))
    [result] = app.run_pending(tmp_path / "files", Slow)
    assert result.status == "failed" and "timed out" in result.error and result.latencies_ms == []


def test_npy_written_by_the_protocol_is_format_1_little_endian(tmp_path):
    P.save_npy(tmp_path / "a.npy", np.arange(6, dtype=np.float64).reshape(2, 3))
    raw = (tmp_path / "a.npy").read_bytes()
    assert raw[:8] == b"\x93NUMPY\x01\x00" and b"'descr': '<f4'" in raw
    assert P.load_npy(tmp_path / "a.npy", [2, 3]).dtype == np.float32
    np.save(tmp_path / "b.npy", np.zeros(3, dtype=">f4"))
    with pytest.raises(P.ProtocolError, match="little-endian float32"):
        P.load_npy(tmp_path / "b.npy")


def test_builder_makes_schema_valid_jobs_for_every_target_with_an_app_runtime(tmp_path):
    """The table's app_runtime picks the job's runtime; ExecuTorch's program goes as format "pte"."""
    from edgevit_deploy.converters.table import TARGETS
    from edgevit_deploy.device_bench.jobs import builder
    from edgevit_deploy.device_bench.types import BenchJob
    from edgevit_deploy.errors import UnsupportedOptionError

    x = np.zeros((2, 3, 8, 8), dtype=np.float32)
    made = {}
    for name, spec in TARGETS.items():
        if not spec.app_runtime:
            with pytest.raises(UnsupportedOptionError, match="no runtime for target"):
                builder.app_runtime(name)
            continue
        job = builder.build_job(
            BenchJob("m", name, "fp32", threads=2, delegate="cpu"), tmp_path / "m", "0" * 64, x, timeout_s=30
        )
        doc = job.to_dict()  # validated against job.schema.json
        made[name] = (doc["runtime"]["name"], doc["model"]["format"], doc["model"]["file"])
    assert made["executorch"] == ("executorch", "pte", "model.pte")
    assert made["onnx"] == ("onnxruntime", "onnx", "model.onnx") and made["tflite"][:2] == ("litert", "tflite")
