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
