"""Shared fixtures: reference data shipped in tests/fixtures/, and session-scoped exports."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def official_manifest() -> dict:
    """The authors' state-dict manifest (keys, shapes, parameter counts, GMACs), a copy the tests own."""
    return json.loads((FIXTURES / "edgevit_official_state_dict.json").read_text())


@pytest.fixture
def restore_logging():
    """The commands configure logging for a console; give the next tests the configuration they had."""
    root = logging.getLogger()
    ours = logging.getLogger("edgevit_deploy")
    saved = root.level, list(root.handlers), ours.level
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])


@pytest.fixture(scope="session")
def edgevit_exports(tmp_path_factory):
    """ONNX + TFLite fp32 exports of every EdgeViT variant, made once per session.

    XXS at its full 224 size; XS and S at 96 px to keep CI fast (the conversion path is the same).
    """
    import edgevit_deploy

    out = {}
    for name, size in (("edgevit_xxs", 224), ("edgevit_xs", 96), ("edgevit_s", 96)):
        d = tmp_path_factory.mktemp(name)
        out[name] = edgevit_deploy.export(name, ["onnx", "tflite"], d, img_size=size)
    return out


# The longest test files (``pytest --durations``), handed to the workers first so that no long file starts
# last and leaves the other worker idle (longest-processing-time-first scheduling); then the one-model
# tests of the spread file (10-60 s each), then the rest (seconds each) to even out the end.
SCHEDULE_FIRST = ("test_quant_artifacts", "test_executorch_int8", "test_zoo_export", "test_export",
                  "test_quant_lite0", "test_executorch", "test_zoo_tflite_int8", "test_mil_edgevit", "test_cli",
                  "test_ios_devicectl", "test_ios_pmd3", "test_adb_standin", "test_verify_cli",
                  "test_zoo_coreml_rewrites", "test_random_init", "test_bench_local", "test_app_faults",
                  "test_app_sweep", "test_app_executorch", "test_eval_lite0", "test_zoo_export_each")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 2 --dist loadgroup``, the README's test command) every test file runs on
    one worker, so its module- and session-scoped fixtures (the expensive exports) are made once; a file
    that sets ``SPREAD_ACROSS_WORKERS = True`` (independent one-model-per-test exports) is spread."""
    rank = {name: i for i, name in enumerate(SCHEDULE_FIRST)}
    items.sort(key=lambda it: rank.get(Path(str(it.fspath)).stem, len(rank)))  # stable: file order kept
    for item in items:
        module = getattr(item, "module", None)
        if module is None or getattr(module, "SPREAD_ACROSS_WORKERS", False):
            continue
        if not any(m.name == "xdist_group" for m in item.iter_markers()):
            item.add_marker(pytest.mark.xdist_group(Path(str(item.fspath)).stem))


def pytest_configure(config):
    """Two workers on two cores: one torch intra-op thread each, or they oversubscribe the cores (the host
    runtimes already run onnxruntime and LiteRT on one thread by default)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        import torch

        torch.set_num_threads(1)
