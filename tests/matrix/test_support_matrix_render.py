"""The support matrix's rendering (``edgevit_deploy.matrix``, no exports): the README copy between its markers,
and the rows marked as exported with well-conditioned random weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevit_deploy import matrix as sm
from edgevit_deploy.models import get_model_config

ROOT = Path(__file__).resolve().parents[2]


def _cell(model: str, target: str, status: str, **kw) -> dict:
    row = {"model": model, "target": target, "precision": "fp32", "img_size": 64, "status": status,
           "reason": None, "max_abs": 1e-6 if status == "passed" else None}
    row.update(kw)
    return row


def _payload(cells: list[dict]) -> dict:
    return {"generated_at": "2026-01-01T00:00:00+00:00", "commands": ["python scripts/support_matrix.py"],
            "environment": {"python": "3.11"}, "statuses": list(sm.STATUSES), "cells": cells}


README = """# title

intro text, kept as it is

## Support matrix

Prose about the matrix, kept.

<!-- support-matrix:start -->

an old matrix
| a | b |

<!-- support-matrix:end -->

## After

text after, kept
"""


def test_readme_update_replaces_only_the_text_between_the_markers(tmp_path):
    payload = _payload([_cell("edgevit_xxs", "onnx", "passed"),
                        _cell("edgevit_s", "onnx", "parity-failed", reason="max abs error 1 > 0.1")])
    readme, md = tmp_path / "README.md", tmp_path / "support_matrix.md"
    readme.write_text(README)
    markdown = sm.write_markdown(payload, md, get_model_config, readme)
    assert md.read_text() == markdown
    new = readme.read_text()
    head, tail = README.split(sm.README_START)[0], README.split(sm.README_END)[1]
    assert new.startswith(head + sm.README_START + "\n") and new.endswith(sm.README_END + tail)
    inside = new[len(head) + len(sm.README_START):len(new) - len(tail) - len(sm.README_END)]
    assert "an old matrix" not in inside
    assert "| edgevit_xxs | edgevit | 64 | ✅ 1.0e-06 |" in inside
    assert "### Reasons" in inside and "1. max abs error 1 > 0.1" in inside  # the README's "##" keeps its level
    assert "Generated 2026" not in inside  # generation details stay in docs/support_matrix.md
    # a second rendering of the same payload changes nothing
    assert sm.update_readme(markdown, readme) is False and readme.read_text() == new


@pytest.mark.parametrize("text", [README.replace(sm.README_END, ""), README.replace(sm.README_START, ""),
                                  README.replace(sm.README_START, "x").replace(sm.README_END, sm.README_START),
                                  README + sm.README_START + "\n"])
def test_readme_update_fails_clearly_without_one_pair_of_markers(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(sm.MarkersMissing, match="support-matrix:start"):
        sm.write_markdown(_payload([_cell("edgevit_xxs", "onnx", "passed")]), tmp_path / "m.md",
                          get_model_config, readme)
    assert readme.read_text() == text  # left untouched


def test_conditioned_rows_are_marked_and_explained_others_unchanged():
    plain = [_cell("edgevit_xxs", "onnx", "passed")]
    conditioned = plain + [_cell("fcaformer_l1", "onnx", "passed", random_init="conditioned")]
    before = sm.render_markdown(_payload(plain), get_model_config)
    after = sm.render_markdown(_payload(conditioned), get_model_config)
    assert "| fcaformer_l1 † | fcaformer | 64 | ✅ 1.0e-06 |" in after
    plain_row = "| edgevit_xxs | edgevit | 64 | ✅ 1.0e-06 |"
    assert plain_row in before and plain_row in after
    assert "† well-conditioned random weights" in after and "†" not in before


def test_repository_readme_carries_the_current_matrix():
    """README.md's copy is what the committed docs/support_matrix.json renders to (rerun the script with
    --render-only after editing the JSON by other means)."""
    payload = json.loads((ROOT / "docs" / "support_matrix.json").read_text())
    text = (ROOT / "README.md").read_text()
    expected = sm.replace_between_markers(text, sm.matrix_body(sm.render_markdown(payload, get_model_config)))
    assert text == expected, "README.md's support matrix is stale: python scripts/support_matrix.py --render-only"
