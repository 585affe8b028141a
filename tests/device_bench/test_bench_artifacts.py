"""Artifacts as first-class inputs of ``edgevit-bench``: the file a user ships is timed as it is (``run FILE``,
``sweep --artifacts DIR``), its row records that file's sha256 and the parity figures of its export report.

One export folder is made for the module with the real ``edgevit-export`` command: EdgeViT-XXS at 64x64, an
int8 TFLite model calibrated on a folder of generated PNGs (``--calib-data``) and an fp32 ONNX model, both
checked against PyTorch by the export (report.json). The ONNX file also goes through the stand-in adbd."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers.artifact_fixtures import parity, tiny_mlpackage, tiny_onnx, toolkit_metadata, write_report

from edgevit_deploy.cli.bench_cmd import main as bench_main
from edgevit_deploy.device_bench.api import export_rows
from edgevit_deploy.device_bench.artifact_inputs import ArtifactInputError, looks_like_artifact, resolve
from edgevit_deploy.device_bench.artifacts import ArtifactCache, push_once, sha256_of
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.sweep_config import SweepConfigError, SweepSpec
from edgevit_deploy.device_bench.testing.fake_runners import write_fake_tools
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
from edgevit_deploy.device_bench.transports.local import LocalTransport
from edgevit_deploy.device_bench.types import BenchJob, Measurement

IMG = 64
INT8 = "edgevit_xxs-int8.tflite"
ONNX = "edgevit_xxs-fp32.onnx"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export(*args: str, cwd: Path) -> None:
    code = "from edgevit_deploy.cli.export_cmd import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """What a user ships: `edgevit-export` int8 TFLite with their own calibration photos, then fp32 ONNX, into
    one --out folder (its report.json holds both rows with their parity figures)."""
    from PIL import Image

    base = tmp_path_factory.mktemp("shipped")
    photos = base / "my photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):  # smooth gradients plus noise: images with structure, not flat noise
        yy, xx = np.mgrid[0:72, 0:90]
        img = np.stack([(xx * (i + 1)) % 256, (yy * (8 - i)) % 256, (xx + yy) % 256], -1)
        img = img + rng.integers(0, 40, (72, 90, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photos / f"photo{i}.png")
    out = base / "out"
    common = ["-m", "edgevit_xxs", "--img-size", str(IMG), "--out", str(out)]
    _export(*common, "-t", "tflite", "--quantize", "int8", "--calib-data", str(photos), "--calib-size", "6", cwd=base)
    _export(*common, "-t", "onnx", cwd=base)
    return out


@pytest.fixture()
def bench(tmp_path, monkeypatch, restore_logging):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "250")

    def invoke(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(bench_main, list(args), env=env)

    return invoke


def _rows(store: Path) -> list[dict]:
    return json.loads(export_rows(store, "json"))


def _report_row(export_dir: Path, name: str) -> dict:
    return next(r for r in json.loads((export_dir / "report.json").read_text())["artifacts"] if r["file"] == name)


# ------------------------------------------------------------------------------------------ run FILE
def test_the_shipped_int8_tflite_is_timed_by_path_with_its_sha256_and_parity(export_dir, bench, tmp_path):
    path = export_dir / INT8
    before = _file_sha256(path)
    store = tmp_path / "s.sqlite"
    res = bench("run", str(path), "--device", "local", "--warmup", "1", "--iterations", "4", "--store", str(store))
    assert res.exit_code == 0, res.output
    [row] = _rows(store)
    assert row["status"] == "ok" and row["runtime"].startswith("LiteRT"), row["reason"]
    assert row["artifact_sha256"] == before == _file_sha256(path)  # the file timed, unchanged
    assert row["artifact_path"] == str(path) and row["model_size_bytes"] == path.stat().st_size
    assert (row["model"], row["target"], row["precision"], row["img_size"]) == ("edgevit_xxs", "tflite", "int8", IMG)
    assert len(row["latencies_ms"]) == 4 and row["median_ms"] > 0
    # the export's parity figures of these very bytes, with the policy's bars
    exported = _report_row(export_dir, INT8)["parity"]
    assert row["parity"]["source"] == "report.json" and row["parity"]["report"] == str(export_dir / "report.json")
    for key in ("max_abs", "cosine", "sqnr_db", "top1_agreement", "passed", "thresholds"):
        assert row["parity"][key] == exported[key], key
    assert row["parity"]["passed"] and row["parity"]["thresholds"]["cosine"] is not None
    assert row["parity_summary"] == f"pass {exported['max_abs']:.1e}"
    assert "pass max" in res.output and "(export)" in res.output  # the table's parity column
    # nothing was exported or copied into the cache: the given file is used in place
    cache = tmp_path / "xdg" / "edgevit-deploy" / "artifacts"
    assert not any(p.is_file() for p in cache.rglob("*"))
    shown = bench("show", "--store", str(store))
    assert shown.exit_code == 0 and "(export)" in shown.output


def test_the_shipped_onnx_through_the_standin_adbd(export_dir, bench, tmp_path):
    tools = write_fake_tools(tmp_path / "tools")
    path = export_dir / ONNX
    store = tmp_path / "adb.sqlite"
    with StandinAdbd(tmp_path / "phone") as phone:
        device = f"adb:{phone.address}"
        res = bench(
            "run",
            str(path),
            "--device",
            device,
            "--ort-perf-test",
            str(tools.onnxruntime_perf_test),
            "--warmup",
            "1",
            "--iterations",
            "3",
            "--timeout",
            "300",
            "--store",
            str(store),
            env={"EDGEVIT_ADB_KEY": str(tmp_path / "adbkey")},
        )
    assert res.exit_code == 0, res.output
    [row] = _rows(store)
    assert row["status"] == "ok" and row["runtime"].startswith("onnxruntime_perf_test"), row["reason"]
    assert row["device"] == device and row["device_info"]["model"] == "Standin Phone"
    assert row["artifact_sha256"] == _file_sha256(path) and row["parity"]["source"] == "report.json"
    # the very bytes went through the sync protocol, under a folder named by their sha256
    [pushed] = [p for p in (tmp_path / "phone").rglob("*.onnx")]
    assert _file_sha256(pushed) == row["artifact_sha256"] and row["artifact_sha256"][:16] in str(pushed)


def test_a_file_without_metadata_needs_the_flags_and_then_runs(bench, tmp_path):
    plain = tiny_onnx(tmp_path / "plain model.onnx")
    store = tmp_path / "s.sqlite"
    res = bench("run", str(plain), "--store", str(store))
    assert res.exit_code == 2 and not store.exists()
    [line] = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "plain model.onnx" in line
    assert "--model NAME" in line and "--precision VARIANT" in line and "--img-size N" in line
    with ResultStore(store) as db:  # an older row first: `run` shows and returns the row it measured
        db.put(Measurement(job=BenchJob("edgevit_xs", "onnx", "fp32", img_size=IMG), status="ok", median_ms=9.0))
    half = bench("run", str(plain), "--model", "edgevit_xxs", "--store", str(store))
    assert half.exit_code == 2 and "--model" not in half.stderr and "--precision VARIANT, --img-size N" in half.stderr
    ok = bench(
        "run",
        str(plain),
        "--model",
        "my_net",
        "--precision",
        "fp32",
        "--img-size",
        str(IMG),
        "--warmup",
        "1",
        "--iterations",
        "3",
        "--store",
        str(store),
    )
    assert ok.exit_code == 0, ok.output
    assert "my_net" in ok.output and "edgevit_xs " not in ok.output
    [row] = [r for r in _rows(store) if r["model"] == "my_net"]
    assert (row["model"], row["precision"], row["img_size"], row["status"]) == ("my_net", "fp32", IMG, "ok")
    assert row["artifact_sha256"] == _file_sha256(plain) and row["parity"] == {} and row["parity_summary"] == "-"


def test_flags_fill_gaps_but_never_contradict_the_metadata(export_dir, bench, tmp_path):
    path = str(export_dir / INT8)
    for flags, what in (
        (["--precision", "fp32"], "--precision fp32 contradicts"),
        (["--img-size", "224"], "--img-size 224 contradicts"),
        (["--model", "edgevit_xs"], "--model edgevit_xs contradicts"),
        (["--target", "onnx"], "--target onnx contradicts"),
    ):
        res = bench("run", path, *flags, "--store", str(tmp_path / "s.sqlite"))
        assert res.exit_code == 2 and what in res.stderr and INT8 in res.stderr, (flags, res.output)
    assert not (tmp_path / "s.sqlite").exists()
    same = resolve(path, model="edgevit_xxs", precision="INT8", img_size=IMG)  # agreeing flags are fine
    assert (same.precision, same.sources["precision"]) == ("int8", "metadata")
    assert bench("run", "edgevit_xxs").exit_code == 2  # a model name still needs --target
    assert bench("run", str(tmp_path / "gone.tflite")).exit_code == 2


def test_metadata_beats_report_and_a_stale_report_row_is_not_trusted(tmp_path):
    folder = tmp_path / "f"
    tagged = tiny_onnx(folder / "tagged.onnx", metadata=toolkit_metadata(precision="fp32"))
    plain = tiny_onnx(folder / "plain.onnx", doc="other bytes")
    write_report(folder, {"tagged.onnx": {}, "plain.onnx": {}})
    g = resolve(tagged)
    assert g.sources == {"model": "metadata", "precision": "metadata", "img_size": "metadata"}
    assert g.parity["passed"] and g.parity["max_abs"] == 1.2e-6
    p = resolve(plain)  # no metadata: the report row of these bytes names it
    assert (p.model, p.precision, p.img_size, p.sources["model"]) == ("edgevit_xxs", "fp32", IMG, "report.json")
    plain.write_bytes(tiny_onnx(tmp_path / "x.onnx", doc="changed after the export").read_bytes())
    with pytest.raises(ArtifactInputError, match="--model NAME"):  # the row describes other bytes now
        resolve(plain)
    assert resolve(plain, model="m", precision="fp32", img_size=IMG).parity == {}


# ----------------------------------------------------------------------------------- sweep --artifacts
def test_sweep_over_an_export_folder(export_dir, bench, tmp_path):
    store = tmp_path / "sweep.sqlite"
    res = bench(
        "sweep",
        "--artifacts",
        str(export_dir),
        "--device",
        "local",
        "--threads",
        "1,2",
        "--warmup",
        "1",
        "--iterations",
        "3",
        "--store",
        str(store),
    )
    assert res.exit_code == 0, res.output
    assert "4 measured, 0 failed" in res.output
    rows = _rows(store)
    assert sorted((r["target"], r["precision"], r["threads"]) for r in rows) == [
        ("onnx", "fp32", 1),
        ("onnx", "fp32", 2),
        ("tflite", "int8", 1),
        ("tflite", "int8", 2),
    ]
    for r in rows:
        name = Path(r["artifact_path"]).name
        assert r["status"] == "ok" and r["img_size"] == IMG, r["reason"]
        assert r["artifact_sha256"] == _file_sha256(export_dir / name) == _report_row(export_dir, name)["sha256"]
        assert r["parity"]["source"] == "report.json" and r["parity"]["passed"]
        assert r["parity"]["max_abs"] == _report_row(export_dir, name)["parity"]["max_abs"]
    csv_out = bench("export", "--store", str(store), "--csv")
    assert csv_out.exit_code == 0 and "parity_summary" in csv_out.output.splitlines()[0]
    again = bench("sweep", "--artifacts", str(export_dir), "--threads", "1,2", "--store", str(store))
    assert again.exit_code == 0 and "0 measured, 0 failed, 4 already" in again.output  # resumable


def test_sweep_refuses_files_that_failed_parity_unless_allowed(bench, tmp_path):
    folder = tmp_path / "exp"
    tiny_onnx(folder / "good.onnx", metadata=toolkit_metadata())
    tiny_onnx(folder / "bad.onnx", metadata=toolkit_metadata(model="edgevit_xs"))
    write_report(folder, {"good.onnx": {}, "bad.onnx": {"parity": parity(passed=False, max_abs=0.25)}})
    store = tmp_path / "s.sqlite"
    refused = bench("sweep", "--artifacts", str(folder), "--store", str(store))
    assert refused.exit_code == 2 and not store.exists()
    [line] = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert "bad.onnx (max abs 2.50e-01) failed its parity check" in line and "--allow-failed-parity" in line
    assert "good.onnx" not in line
    allowed = bench(
        "sweep",
        "--artifacts",
        str(folder),
        "--allow-failed-parity",
        "--warmup",
        "0",
        "--iterations",
        "2",
        "--store",
        str(store),
    )
    assert allowed.exit_code == 0, allowed.output
    rows = {Path(r["artifact_path"]).name: r for r in _rows(store)}
    assert rows["bad.onnx"]["parity_summary"] == "FAIL 2.5e-01"
    assert rows["good.onnx"]["parity_summary"] == "pass 1.2e-06"
    assert "FAIL max 2.5e-01" in allowed.output
    run = bench("run", str(folder / "bad.onnx"), "--store", str(tmp_path / "r.sqlite"))
    assert run.exit_code == 2 and "--allow-failed-parity" in run.stderr


def test_a_sweep_file_names_the_folder(tmp_path):
    folder = tmp_path / "exp"
    tiny_onnx(folder / "a.onnx", metadata=toolkit_metadata())
    write_report(folder, {"a.onnx": {}})
    spec = SweepSpec.from_mapping({"artifacts": str(folder), "threads": [1, 2], "devices": ["local"]})
    jobs = spec.jobs()
    assert [(j.model, j.target, j.precision, j.threads, j.img_size) for j in jobs] == [
        ("edgevit_xxs", "onnx", "fp32", 1, IMG),
        ("edgevit_xxs", "onnx", "fp32", 2, IMG),
    ]
    assert {j.artifact_path for j in jobs} == {str(folder / "a.onnx")}
    for bad in ({"artifacts": str(folder), "targets": ["onnx"]}, {"artifacts": str(folder), "models": ["x"]}):
        with pytest.raises(SweepConfigError):
            SweepSpec.from_mapping(bad).jobs()


def test_resume_says_when_a_stored_row_measured_other_bytes(bench, tmp_path):
    folder = tmp_path / "exp"
    tiny_onnx(folder / "a.onnx", metadata=toolkit_metadata())
    write_report(folder, {"a.onnx": {}})
    store = tmp_path / "s.sqlite"
    with ResultStore(store) as db:  # the same configuration, measured on another file in sweep "nightly"
        job = BenchJob("edgevit_xxs", "onnx", "fp32", img_size=IMG)
        db.put(Measurement(job=job, status="ok", median_ms=3.0, artifact_sha256="0" * 64, sweep_id="nightly"))
    # resuming that named sweep skips the configuration by its key, and says the stored row is of other bytes
    res = bench("sweep", "--artifacts", str(folder), "--store", str(store), "--sweep-id", "nightly")
    assert res.exit_code == 0 and "0 measured, 0 failed, 1 already" in res.output
    assert "measured on other bytes (sha256 000000000000)" in res.stderr and "edgevit-bench run" in res.stderr
    # the default sweep id is derived from the files' sha256: these bytes are their own sweep, measured
    res = bench("sweep", "--artifacts", str(folder), "--store", str(store), "--warmup", "1", "--iterations", "3")
    assert res.exit_code == 0 and "1 measured, 0 failed, 0 already" in res.output, res.output
    assert "other bytes" not in res.stderr


def test_sweep_artifacts_bad_input(bench, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = bench("sweep", "--artifacts", str(empty), "--store", str(tmp_path / "s.sqlite"))
    assert res.exit_code == 2 and "has no usable report.json" in res.stderr
    res = bench("sweep", "--artifacts", str(empty), "--models", "edgevit_xxs")
    assert res.exit_code == 2 and "drop --models" in res.stderr
    assert not (tmp_path / "s.sqlite").exists()


# ----------------------------------------------------------------------------------- the digest, pushes
def test_one_digest_for_files_and_package_trees(tmp_path):
    from edgevit_deploy._atomic import sha256_of as report_digest

    f = tmp_path / "m.onnx"
    f.write_bytes(b"abc")
    assert sha256_of(f) == hashlib.sha256(b"abc").hexdigest() == report_digest(f)
    a, b = tmp_path / "a.mlpackage", tmp_path / "b.mlpackage"
    for root, order in ((a, ("Manifest.json", "Data/w/weight.bin")), (b, ("Data/w/weight.bin", "Manifest.json"))):
        for name in order:  # other creation order and times: the same tree, the same digest
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(name.encode())
    os.utime(b / "Manifest.json", (1, 1))
    assert sha256_of(a) == sha256_of(b) == report_digest(a)
    (b / "Data/w/weight.bin").rename(b / "Data/w/weight2.bin")  # a renamed file is another package
    assert sha256_of(a) != sha256_of(b)
    with pytest.raises(FileNotFoundError):
        sha256_of(tmp_path / "missing.onnx")


def test_an_mlpackage_by_path_is_named_by_its_tree_digest(tmp_path):
    """A Core ML package given by path: its metadata read by the Core ML converter, its tree digest the one the
    cache hands the runners (and a row records) and the one report.json's row carries."""
    folder = tmp_path / "exp"
    folder.mkdir()
    pkg = tiny_mlpackage(folder / "edgevit_xxs-fp16.mlpackage", metadata=toolkit_metadata(precision="fp16"))
    write_report(folder, {pkg.name: {"target": "coreml", "precision": "fp16", "variant": "fp16"}})
    given = resolve(str(pkg) + "/")
    assert (given.target, given.model, given.precision, given.img_size) == ("coreml", "edgevit_xxs", "fp16", IMG)
    assert given.sources["precision"] == "metadata" and given.parity["passed"]
    art = ArtifactCache(tmp_path / "cache").given(pkg)
    reported = json.loads((folder / "report.json").read_text())["artifacts"][0]["sha256"]
    assert art.path == pkg and art.sha256 == given.sha256 == reported and art.parity["source"] == "report.json"


def test_given_files_are_used_in_place_and_never_share_a_remote_name(tmp_path):
    one = tiny_onnx(tmp_path / "a" / "edgevit_xxs-fp32.onnx", metadata=toolkit_metadata())
    two = tiny_onnx(tmp_path / "b" / "edgevit_xxs-fp32.onnx", metadata=toolkit_metadata(), doc="retrained")
    cache = ArtifactCache(tmp_path / "cache")
    arts = [cache.given(one), cache.given(two)]
    assert [a.path for a in arts] == [one, two] and not list((tmp_path / "cache").iterdir())
    assert cache.given(one) is arts[0]  # memoized while the file is unchanged
    transport = LocalTransport(tmp_path / "device")
    try:
        remotes = [push_once(transport, a) for a in arts]
    finally:
        transport.close()
    assert remotes[0] != remotes[1]
    assert [_file_sha256(Path(r)) for r in remotes] == [_file_sha256(one), _file_sha256(two)]


def test_what_counts_as_an_artifact_path():
    for arg in ("m.onnx", "out/x.tflite", "p.mlpackage/", "m.pte", "M.ONNX"):
        assert looks_like_artifact(arg), arg
    for arg in ("edgevit_xxs", "timm:mobilenetv2_100", "models/net.py:factory", "m.pte.json"):
        assert not looks_like_artifact(arg), arg
