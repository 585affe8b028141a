"""The child process of :func:`edgevit_deploy.verify.run.run_in_child`: ``python -m edgevit_deploy.verify._child
REQUEST.json``. Runs one artifact with :func:`~edgevit_deploy.verify.run.run_here` and writes ``y.npy`` and
``verdict.json`` beside the request (atomically: a verdict is there only when it is whole)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from .._atomic import write_text
from ..converters.table import _load
from .run import run_here


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    request = Path(argv[0])
    folder = request.parent
    spec = json.loads(request.read_text())
    runtime = _load(spec["host_runtime"])()
    x = np.load(folder / "x.npy")
    outcome = run_here(runtime, spec["host_runtime"], Path(spec["path"]), x, int(spec["threads"]), spec["options"])
    if outcome.ok:
        np.save(folder / "y.npy", np.asarray(outcome.outputs, dtype=np.float32))
    verdict = {"ok": outcome.ok, "executor": outcome.executor, "executed": outcome.executed, "reason": outcome.reason}
    write_text(folder / "verdict.json", json.dumps(verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
