#!/usr/bin/env python
"""Generate the support matrix from real runs: every registered model x every target of the table x
{fp32, int8}. The cell logic, planning and rendering live in :mod:`edgevit_deploy.matrix`; this script gives
it the repository's paths (``docs/support_matrix.json``, the README copy between its markers).

    python scripts/support_matrix.py                       # everything, fp32 cells first
    python scripts/support_matrix.py --models 'mobilevit*' --targets onnx,tflite --precisions fp32
    python scripts/support_matrix.py --render-only         # rewrite the markdown and README from the JSON
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgevit_deploy import matrix  # noqa: E402  (the repository's package, also without an install)

DEFAULT_OUT = ROOT / "docs" / "support_matrix.json"
README = ROOT / "README.md"

if __name__ == "__main__":
    sys.exit(matrix.main(default_out=DEFAULT_OUT, readme=README))
