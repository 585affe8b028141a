"""edgevit-eval on synthetic labelled sets: folder / labels / CSV / ImageNet-val layouts, the figures it
reports (recomputed here independently), the accuracy table in the bench store, the report's measured
top-1, and every bad-input path (one line, exit 2, nothing written).

The model is EdgeViT-XXS at 64 px with its seeded random weights, exported to ONNX once per module; the
images are generated noise / gradients (what they show does not matter: the tests compare the tool's
figures with figures computed here from the same model).
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgevit_deploy.cli.eval_cmd import main
from edgevit_deploy.evaluate import DatasetError, load_set, wilson_interval
from edgevit_deploy.evaluate.dataset import imagenet_synsets, read_label_map
from edgevit_deploy.evaluate.store import measured_top1, read_rows, with_measured_top1
from edgevit_deploy.models import create_model
from edgevit_deploy.preprocess import preprocess_image

SIZE = 64
SYNSETS = ("n01440764", "n01443537", "n01484850")  # ImageNet classes 0, 1, 2


def _image(rng: np.random.Generator, shape=(70, 90)) -> Image.Image:
    base = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, shape[1], dtype=np.float32)[None, :, None]
    return Image.fromarray(((base.astype(np.float32) + ramp) / 2).astype(np.uint8))


def make_folder(root: Path, names=SYNSETS, per_class: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _image(rng).save(root / name / f"img{i}.jpeg")
    return root


def cli(*args, stdout_only: bool = False) -> tuple[int, str]:
    """Exit code and output (stdout and stderr interleaved; ``stdout_only``: what a pipe would get, e.g. --json)."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, (r.stdout if stdout_only else r.output)


@pytest.fixture(scope="module")
def onnx64(tmp_path_factory) -> Path:
    import edgevit_deploy

    out = tmp_path_factory.mktemp("eval-onnx")
    result = edgevit_deploy.export("edgevit_xxs", ["onnx"], out, img_size=SIZE, verify=False)
    return result.artifacts[0].path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("eval-set") / "synthset")


def _reference_top5(root: Path, names: list[str]) -> np.ndarray:
    m = create_model("edgevit_xxs", img_size=SIZE)
    x = np.stack([preprocess_image(Image.open(root / n), m.deploy_cfg) for n in names])
    with torch.no_grad():
        return m(torch.from_numpy(x)).topk(5, dim=-1).indices.numpy()


# ------------------------------------------------------------------------------------------ metrics
def test_wilson_interval_matches_published_values():
    # Brown, Cai & DasGupta (2001) / textbook values of the 95 % Wilson interval
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = wilson_interval(10, 10)
    assert round(lo, 4) == 0.7225 and hi == pytest.approx(1.0)
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 3), round(hi, 3)) == (0.255, 0.366)


# ------------------------------------------------------------------------------------------ layouts
def test_imagefolder_of_synsets_indices_and_a_labels_file(tmp_path):
    s = load_set(make_folder(tmp_path / "a"))
    assert s.layout == "imagefolder" and len(s) == 9 and s.total == 9
    assert sorted({x.label for x in s.samples}) == [0, 1, 2]
    assert imagenet_synsets()["n01440764"] == 0 and imagenet_synsets()["n15075141"] == 999
    s = load_set(make_folder(tmp_path / "b", names=("7", "42")))
    assert {x.name.split("/")[0]: x.label for x in s.samples} == {"7": 7, "42": 42}
    # one class per line in index order (LOC_synset_mapping.txt style) ...
    (tmp_path / "order.txt").write_text("tench fish\ngoldfish, Carassius\ncat stuff\n")
    s = load_set(make_folder(tmp_path / "c", names=("goldfish", "cat")), labels_file=tmp_path / "order.txt")
    assert {x.name.split("/")[0]: x.label for x in s.samples} == {"goldfish": 1, "cat": 2}
    # ... or explicit name,index rows
    (tmp_path / "map.csv").write_text("goldfish,281\ncat\t5\n")
    assert read_label_map(tmp_path / "map.csv") == {"goldfish": 281, "cat": 5}


def test_flat_folder_with_csv_and_imagenet_val_names(tmp_path):
    rng = np.random.default_rng(1)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        _image(rng).save(flat / f"f{i}.png")
    (tmp_path / "labels.csv").write_text("file,label\nf0.png,3\nf1.png,n01443537\nf2.png,3\nf3.png,999\n")
    s = load_set(flat, csv_file=tmp_path / "labels.csv")
    assert s.layout == "csv" and [x.label for x in s.samples] == [3, 1, 3, 999]
    val = tmp_path / "val"
    val.mkdir()
    for name in ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"):
        _image(rng).save(val / name, format="JPEG")
    s = load_set(val)
    assert s.layout == "imagenet-val"
    assert [x.label for x in s.samples] == [65, 970]  # the first two ImageNet val labels (sea snake, alp)


def test_limit_takes_a_seeded_subset(folder):
    a, b, c = load_set(folder, limit=4, seed=0), load_set(folder, limit=4, seed=0), load_set(folder, limit=4, seed=3)
    assert len(a) == 4 and a.total == 9 and a.samples == b.samples
    assert a.samples != c.samples
    assert [x.name for x in a.samples] == sorted(x.name for x in a.samples)


# ------------------------------------------------------------------------------------- evaluation
def test_cli_figures_match_an_independent_computation(folder, onnx64, tmp_path):
    bad = folder / SYNSETS[1] / "broken.jpeg"
    bad.write_bytes(b"not a jpeg")
    try:
        code, out = cli("--data", folder, "edgevit_xxs", "--img-size", SIZE, onnx64, "--json", "--batch", 4,
                        stdout_only=True)   # the skipped-image warning goes to stderr
    finally:
        bad.unlink()
    assert code == 0, out
    report = json.loads(out)
    assert report["skipped"] == [f"{SYNSETS[1]}/broken.jpeg"] and report["n"] == 9
    names = sorted(f"{s}/img{i}.jpeg" for s in SYNSETS for i in range(3))
    labels = np.array([SYNSETS.index(n.split("/")[0]) for n in names])
    top5 = _reference_top5(folder, names)
    ref, art = report["results"]
    assert ref["is_reference"] and ref["target"] == "torch" and ref["source"] == "edgevit_xxs"
    assert ref["top1_correct"] == int((top5[:, 0] == labels).sum())
    assert ref["top5_correct"] == int((top5 == labels[:, None]).any(1).sum())
    assert ref["top1_ci95"] == pytest.approx(list(wilson_interval(ref["top1_correct"], 9)))
    assert art["target"] == "onnx" and art["precision"] == "fp32" and art["reference"] == "edgevit_xxs"
    assert art["agreement"] == 1.0 and art["flips"] == [] and art["delta_top1"] == 0.0
    assert art["top1_correct"] == ref["top1_correct"] and art["img_size"] == SIZE


def test_artifact_alone_builds_its_reference_and_table_output(folder, onnx64):
    code, out = cli("--data", folder, onnx64, "--limit", 5)
    assert code == 0, out
    assert "edgevit_xxs (reference)" in out and onnx64.name in out and "n=5" in out
    assert "seeded subset of 9" in out


def test_store_rows_replace_and_feed_the_report(folder, onnx64, tmp_path):
    db = tmp_path / "bench.sqlite"
    for _ in range(2):  # a rerun replaces its rows
        code, out = cli("--data", folder, onnx64, "--store", db)
        assert code == 0, out
    code, out = cli("--data", folder, onnx64, "--store", db, "--limit", 4)
    rows = read_rows(db)
    assert sorted((r["target"], r["n"]) for r in rows) == [("onnx", 4), ("onnx", 9), ("torch", 4), ("torch", 9)]
    with sqlite3.connect(db) as conn:  # still a bench store: the bench's own tables are there
        assert {"measurements", "meta", "accuracy"} <= {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
    best = measured_top1(db)[("edgevit_xxs", "onnx", "fp32", SIZE)]
    assert best["n"] == 9 and best["dataset"] == "synthset"
    bench = [{"model": "edgevit_xxs", "target": "onnx", "precision": "fp32", "img_size": SIZE},
             {"model": "edgevit_xxs", "target": "onnx", "precision": "int8", "img_size": SIZE}]
    annotated = with_measured_top1(bench, db)
    assert annotated[0]["measured_top1"] == round(100 * best["top1"], 2)
    assert annotated[0]["measured_top1_on"] == "synthset (n=9)"
    assert annotated[1]["measured_top1"] is None  # no int8 measured: the plots keep the published figure


def test_report_pareto_plot_uses_the_measured_top1(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from edgevit_deploy.device_bench.report import plots

    seen: list[tuple[list[float], str]] = []
    scatter, annotate = Axes.scatter, Axes.annotate

    def spy_scatter(self, xs, ys, *a, **k):
        seen.append((list(ys), k.get("label", "")))
        return scatter(self, xs, ys, *a, **k)

    def spy_annotate(self, text, *a, **k):
        seen.append(([], text))
        return annotate(self, text, *a, **k)
    monkeypatch.setattr(Axes, "scatter", spy_scatter)
    monkeypatch.setattr(Axes, "annotate", spy_annotate)
    row = {"model": "edgevit_xxs", "target": "onnx", "precision": "fp32", "threads": 1, "delegate": "cpu",
           "device": "host", "img_size": 224, "status": "ok", "median_ms": 10.0}
    plots.pareto_accuracy_latency([row], tmp_path / "a.png")
    published = [ys for ys, lab in seen if lab.startswith("measured on ")]
    assert published == [[74.4]]  # EdgeViT-XXS's published top-1
    seen.clear()
    plots.pareto_accuracy_latency([{**row, "measured_top1": 33.3, "measured_top1_on": "photos (n=10)"}],
                                  tmp_path / "b.png")
    assert [ys for ys, lab in seen if lab.startswith("measured on ")] == [[33.3]]
    assert any("measured on photos (n=10)" in text for _, text in seen)


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case", ["empty", "unknown_classes", "label_outside", "flat_without_csv", "bad_csv_row",
                                  "unknown_label_name", "missing_artifact", "corrupt_artifact", "limit_zero", "batch_zero"])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, onnx64):
    data, extra = tmp_path / "d", []
    data.mkdir()
    expect = {"empty": "no images in", "unknown_classes": "unknown class names cats",
              "label_outside": "label 1500", "flat_without_csv": "no class folders",
              "bad_csv_row": "row 2 is not 'file,label'", "unknown_label_name": "not in --labels: zebra",
              "missing_artifact": "neither a registered model nor an existing artifact",
              "corrupt_artifact": "half.onnx cannot be read as a .onnx artifact",
              "limit_zero": "--limit 0: give a positive number", "batch_zero": "--batch 0: give a batch size"}[case]
    sources = [str(onnx64)]
    if case == "unknown_classes":
        make_folder(data, names=("cats", "dogs"), per_class=1)
    elif case == "label_outside":
        make_folder(data, names=("3", "1500"), per_class=1)
    elif case == "flat_without_csv":
        _image(np.random.default_rng(0)).save(data / "x.jpeg")
    elif case == "bad_csv_row":
        _image(np.random.default_rng(0)).save(data / "x.jpeg")
        (tmp_path / "l.csv").write_text("x.jpeg,1\nx.jpeg\n")
        extra = ["--csv", tmp_path / "l.csv"]
    elif case == "unknown_label_name":
        make_folder(data, names=("zebra", "tench"), per_class=1)
        (tmp_path / "labels.txt").write_text("tench\ngoldfish\n")
        extra = ["--labels", tmp_path / "labels.txt"]
    elif case == "missing_artifact":
        make_folder(data, per_class=1)
        sources = [str(tmp_path / "nope.onnx")]
    elif case == "corrupt_artifact":
        make_folder(data, per_class=1)
        (tmp_path / "half.onnx").write_bytes(onnx64.read_bytes()[:2000])
        sources = [str(tmp_path / "half.onnx")]
    elif case in ("limit_zero", "batch_zero"):
        make_folder(data, per_class=1)
        extra = ["--limit" if case == "limit_zero" else "--batch", 0]
    db = tmp_path / "s.sqlite"
    code, out = cli("--data", data, *sources, *extra, "--store", db)
    assert code == 2, out
    assert expect in out and "Traceback" not in out
    assert len(out.strip().splitlines()) <= 3  # one message (rich may wrap it)
    assert not db.exists()  # nothing written on bad input


def test_artifact_of_another_input_size_and_wrong_model(folder, onnx64):
    code, out = cli("--data", folder, onnx64, "--img-size", 96)
    assert code == 2 and "takes 64x64 input, not --img-size 96" in out
    code, out = cli("--data", folder, onnx64, "--model", "edgevit_xs")
    assert code == 2 and "exported from 'edgevit_xxs', not --model 'edgevit_xs'" in out


def test_checkpoint_other_than_the_artifacts_is_refused(folder, onnx64, tmp_path):
    ck = tmp_path / "other.pth"
    torch.save(create_model("edgevit_xxs", img_size=SIZE).state_dict(), ck)
    code, out = cli("--data", folder, onnx64, "--checkpoint", ck)
    assert code == 2 and "pass the checkpoint it was exported with" in out


def test_every_image_unreadable_is_an_error_in_a_real_process(tmp_path, onnx64):
    for syn in SYNSETS[:2]:
        (tmp_path / "d" / syn).mkdir(parents=True)
        (tmp_path / "d" / syn / "x.jpeg").write_bytes(b"\xff\xd8 truncated")
    env = dict(os.environ, COLUMNS="200")
    r = subprocess.run([sys.executable, "-c", "from edgevit_deploy.cli.eval_cmd import main; main()",
                        "--data", str(tmp_path / "d"), str(onnx64)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "none of the 2 images" in r.stderr and "Traceback" not in r.stderr


def test_a_store_that_is_not_a_bench_store_fails_before_evaluating(folder, onnx64, tmp_path, monkeypatch):
    import edgevit_deploy.evaluate.api as api

    not_db = tmp_path / "notes.sqlite"
    not_db.write_text("these are my notes, not a database\n" * 100)
    monkeypatch.setattr(api, "resolve_sources", lambda *a, **k: pytest.fail("evaluated before checking --store"))
    code, out = cli("--data", folder, onnx64, "--store", not_db)
    assert code == 2 and "not a usable SQLite store" in out
    assert not_db.read_text().startswith("these are my notes")  # left as it was


def test_a_runtime_failure_names_the_source_and_images_and_writes_nothing(folder, onnx64, tmp_path, monkeypatch):
    from edgevit_deploy.verify import runtimes

    def broken(self, x):
        raise RuntimeError("kernel exploded\nsecond line")
    monkeypatch.setattr(runtimes._OnnxSession, "run", broken)
    db = tmp_path / "s.sqlite"
    code, out = cli("--data", folder, onnx64, "--store", db, "--batch", 4)
    assert code == 1, out
    assert f"{onnx64} failed on {SYNSETS[0]}/img0.jpeg .. {SYNSETS[1]}/img0.jpeg (kernel exploded)" in out
    assert "Traceback" not in out and not db.exists()
