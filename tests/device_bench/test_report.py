"""Report outputs: CSV / JSON schema, PNG plots with content, a self-contained HTML page, Pareto fronts."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest

from edgevit_deploy.device_bench.report import write_report
from edgevit_deploy.device_bench.report.plots import PLOTS, pareto_front
from edgevit_deploy.device_bench.report.reference import paper_table, published_top1
from edgevit_deploy.device_bench.report.rows import to_csv, to_json
from edgevit_deploy.device_bench.report.table import rich_table
from edgevit_deploy.device_bench.stats import summarise
from edgevit_deploy.device_bench.store import ResultStore
from edgevit_deploy.device_bench.types import BenchJob, DeviceInfo, Measurement

REQUIRED = ["model", "target", "precision", "threads", "delegate", "device", "status", "median_ms", "mean_ms",
            "p90_ms"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    rng = np.random.default_rng(0)
    store = ResultStore(tmp_path_factory.mktemp("r") / "s.sqlite")
    info = DeviceInfo(id="local", kind="local", model="host", soc="x86", cpu_max_freqs_khz=[3000000])
    for model, base in (("edgevit_xxs", 20.0), ("edgevit_xs", 35.0), ("timm:mobilenetv2_100", 15.0)):
        for target in ("onnx", "tflite"):
            for threads in (1, 2):
                lat = list(base / threads * (1 + 0.1 * rng.random(20)))
                energy = base * 3.0 if target == "tflite" else None
                store.put(Measurement(job=BenchJob(model, target, "fp32", threads=threads, img_size=64),
                                      status="ok", latencies_ms=lat, energy_mj=energy, device=info,
                                      model_size_bytes=1000, **summarise(lat).as_measurement_fields()))
    store.put(Measurement(job=BenchJob("edgevit_s", "tflite", "int8", delegate="gpu", img_size=64),
                          status="failed", reason="Failed to apply GPU delegate <&>"))
    out = store.rows()
    store.close()
    return out


def test_json_is_a_list_of_row_objects_with_the_required_keys(rows):
    data = json.loads(to_json(rows))
    assert isinstance(data, list) and len(data) == len(rows) == 13
    for obj in data:
        assert set(REQUIRED) <= set(obj)
        assert "raw_output" not in obj
    ok = [o for o in data if o["status"] == "ok"]
    assert all(o["median_ms"] > 0 and o["p90_ms"] >= o["median_ms"] for o in ok)
    assert [o for o in data if o["status"] == "failed"][0]["median_ms"] is None
    # the paper's efficiency metric (top-1 per mJ) where both figures exist, never invented otherwise
    with_energy = [o for o in data if o["energy_mj"]]
    assert with_energy and all(o["efficiency"] == pytest.approx(o["published_top1"] / o["energy_mj"], rel=1e-3)
                               for o in with_energy)
    assert all(o["efficiency"] is None for o in data if not o["energy_mj"])


def test_csv_has_a_header_and_one_line_per_row(rows):
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(parsed) == 13
    assert list(parsed[0])[:6] == REQUIRED[:6]
    assert set(REQUIRED) <= set(parsed[0])
    assert float(parsed[0]["median_ms"]) == pytest.approx(rows[0]["median_ms"])
    assert json.loads(parsed[0]["latencies_ms"])[0] == pytest.approx(rows[0]["latencies_ms"][0])


def test_pareto_front():
    pts = [(10, 70), (12, 69), (15, 75), (20, 74), (30, 80), (5, 60)]
    assert pareto_front(pts) == [(5, 60), (10, 70), (15, 75), (30, 80)]
    assert pareto_front([]) == []


def test_reference_table_ships_in_the_package_and_gives_top1():
    ref = paper_table()
    assert {r["model"] for r in ref["rows"]} >= {"EdgeViT-XXS", "MobileNet-v2"}
    assert published_top1("edgevit_xxs") == 74.4                         # from the model registry
    assert published_top1("timm:mobilenetv2_100") == next(r["top1"] for r in ref["rows"]
                                                          if r["timm_name"] == "mobilenetv2_100")
    assert published_top1("timm:resnet18") is None


def test_report_writes_nontrivial_pngs_and_a_self_contained_html(rows, tmp_path):
    import matplotlib.image as mpimg

    written = write_report(rows, tmp_path / "rep", store="s.sqlite")
    assert set(PLOTS) <= set(written)
    for name in PLOTS:
        png = written[name]
        assert png.stat().st_size > 10_000, name
        img = mpimg.imread(png)
        colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert len(colours) > 20, f"{name} looks blank"
    page = written["html"].read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert not re.search(r"""(src|href)=["']?(https?:|//|[\w./-]+\.(png|css|js))""", page)
    assert "<script" not in page
    assert "Failed to apply GPU delegate &lt;&amp;&gt;" in page         # escaped, listed with its reason
    assert "EdgeViT-XXS" in page                                         # the paper's rows beside ours
    assert json.loads(written["json"].read_text())[0]["model"] == rows[0]["model"]


def test_rich_table_shows_every_row(rows):
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(rich_table(rows))
    text = console.export_text()
    assert text.count("edgevit_xxs") == 4 and "failed" in text and "timm:mobilenetv2_100" in text


def test_busy_host_is_flagged_from_the_load_before_the_run():
    from edgevit_deploy.device_bench.report.table import busy_note

    row = {"thermal_before": {"loadavg_1m": 9.5}, "device_info": {"extra": {"cpu_count": 2}}}
    assert busy_note(row) == "busy (load 9.5 on 2 cores)"
    assert busy_note({**row, "thermal_before": {"loadavg_1m": 0.4}}) == ""
    assert busy_note({"thermal_before": {}, "device_info": None}) == ""


# ------------------------------------------------------------------------------------- point labels
CROWD = ["edgevit_xxs", "edgevit_xs", "deit_tiny_patch16_224", "efficientformerv2_s0", "efficientformerv2_s1",
         "efficientmod_xs", "efficientmod_xxs", "efficientnet_b0", "efficientnet_lite0", "fcaformer_l1",
         "mobilevig_ti", "mobilevit_s", "mobilevitv2_100", "pvt_v2_b0"]


def _crowded_rows() -> list[dict]:
    """14 models of 3.5-7 M parameters measured within a few ms of each other on this host and on a phone."""
    from edgevit_deploy.device_bench.store import row_of

    rows = []
    for i, model in enumerate(CROWD):
        for device, base in (("local", 20.0), ("adb:R5CR", 9.0)):
            ms = base + 0.15 * i
            job = BenchJob(model, "onnx", "fp32", device=device, img_size=224)
            rows.append(row_of(Measurement(job=job, status="ok", median_ms=ms, energy_mj=3 * ms,
                                           latencies_ms=[ms], p90_ms=ms)))
    return rows


def _label_boxes(monkeypatch, make, rows, tmp_path):
    """Draw one plot; the window extents of every point label (text only) and the legend's."""
    from matplotlib.text import Annotation, Text

    from edgevit_deploy.device_bench.report import plots

    seen = {}
    original = plots._save

    def capture(fig, plt, path, layout=True):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        seen["labels"] = [Text.get_window_extent(t, renderer) for t in ax.texts if isinstance(t, Annotation)]
        seen["texts"] = [t.get_text() for t in ax.texts]
        seen["legend"] = ax.get_legend().get_window_extent(renderer) if ax.get_legend() else None
        seen["legend_texts"] = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
        seen["markers"] = {c.get_paths()[0].vertices.round(3).tobytes() for c in ax.collections if c.get_paths()}
        return original(fig, plt, path, layout)

    monkeypatch.setattr(plots, "_save", capture)
    make(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000
    return seen


@pytest.mark.parametrize("name", ["latency_vs_params", "pareto_accuracy_latency", "pareto_accuracy_energy"])
def test_point_labels_never_overlap_with_a_crowded_sweep(monkeypatch, tmp_path, name):
    seen = _label_boxes(monkeypatch, PLOTS[name], _crowded_rows(), tmp_path)
    boxes = seen["labels"]
    assert len(boxes) >= 2 * len(CROWD)          # every measured point is labelled (and the paper's rows)
    clashes = [(seen["texts"][i], seen["texts"][j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
               if boxes[i].overlaps(boxes[j])]
    assert clashes == []
    assert not any(b.overlaps(seen["legend"]) for b in boxes)


def test_the_greedy_placer_moves_labels_that_would_collide(tmp_path):
    """The same 12 labels at one point: naive placement puts them all on one spot; the placer spreads them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgevit_deploy.device_bench.report.labels import PointLabel, place_labels, text_box

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([1.0], [1.0])
    ax.set_xlim(0, 2)
    ax.set_ylim(0, 2)
    fig.tight_layout()
    anns = place_labels(ax, [PointLabel(1.0, 1.0, f"model_{i}") for i in range(12)])
    renderer = fig.canvas.get_renderer()
    boxes = [text_box(a, renderer) for a in anns]
    assert all(not boxes[i].overlaps(boxes[j]) for i in range(12) for j in range(i + 1, 12))
    assert all(ax.get_window_extent(renderer).contains(b.x0, b.y0) for b in boxes)
    plt.close(fig)


def test_host_rows_and_the_papers_phone_rows_are_told_apart(monkeypatch, tmp_path):
    seen = _label_boxes(monkeypatch, PLOTS["pareto_accuracy_latency"], _crowded_rows(), tmp_path)
    legend = seen["legend_texts"]
    assert any(t.startswith("EdgeViT paper: Snapdragon 888") for t in legend)
    assert any(t.startswith("measured on this host:") for t in legend)
    assert any(t.startswith("measured on phone adb:R5CR:") for t in legend)
    assert len(seen["markers"]) >= 3             # squares (paper), circles (host), triangles (phone)
