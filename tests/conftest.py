"""Shared fixtures: reference data from ../shared when present, and session-scoped exports."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "reference"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def official_manifest() -> dict:
    """The authors' state-dict manifest; the project's own tests read it from ../shared."""
    path = SHARED / "edgevit_official_state_dict.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the reference manifest ships beside the repository in ../shared/")
    return json.loads(path.read_text())


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
