"""The Python reference implementation of the iOS app (``ios_app/``), function for function with its
``BenchKit`` package: ``JobRunner.runPending`` / ``runJob`` / ``TimingLoop`` / ``Heartbeat`` are the shared
ones of :mod:`.reference_app`; what is iOS's own is here:

- :class:`CoremlModelRunner` = ``CoreMLRunner.swift``: ``compile`` (``MLModel.compileModel(at:)``, timed
  apart as ``compile_ms``), ``load`` with ``MLModelConfiguration.computeUnits`` from the job's delegate
  (cpu_only, cpu_and_gpu, cpu_and_neural_engine, all; anything else is a failed result), ``run`` one input.
  Here the package runs in the Core ML reference ML Program executor (real outputs, real host timings); a
  host has no GPU / Neural Engine, so every compute unit runs on the host CPU and the runtime says so.
- :func:`device_info` = ``DeviceInfo.swift`` (``utsname.machine`` model identifier, ``UIDevice`` system version).
- :func:`thermal` = ``ProcessInfo.thermalState`` (0 nominal .. 3 critical) read before and after a job.

The stand-in devicectl's ``device process launch`` runs it over the sandboxed ``Documents/``::

    python -m edgevit_deploy.device_bench.jobs.reference_ios_app DOCUMENTS [--device-json F] [--thermal-file F]

Fault knobs: ``EDGEVIT_APP_FAULT`` as in :mod:`.reference_app`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import protocol as P
from .reference_app import DelegateError, run_pending

log = logging.getLogger(__name__)

COMPUTE_UNITS = ("cpu_only", "cpu_and_gpu", "cpu_and_neural_engine", "all")
THERMAL_STATES = ("nominal", "fair", "serious", "critical")


class CoremlModelRunner:
    """``CoreMLRunner.swift``: compile the package, load it with the job's compute units, run one input."""

    def __init__(self) -> None:
        self.session: Any = None
        self.units = ""
        self.executor = ""

    def compile(self, package: Path) -> Path:
        """``MLModel.compileModel(at:)``; here: check the package is complete (its manifest and every item)."""
        manifest = Path(package) / "Manifest.json"
        try:
            doc = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{package.name} is not a compilable .mlpackage ({exc})") from None
        data = Path(package) / "Data"
        for item in (doc.get("itemInfoEntries") or {}).values():
            path = data / str(item.get("path", ""))
            if not path.exists():
                raise RuntimeError(f"{package.name}: {path.relative_to(package)} is missing (incomplete copy?)")
        return Path(package)

    def load(self, model_path: Path, runtime: P.RuntimeRef) -> None:
        if runtime.name != "coreml":
            raise RuntimeError(f"the iOS app runs Core ML models only, not {runtime.name!r}")
        if runtime.delegate not in COMPUTE_UNITS:
            raise DelegateError(f"compute units {runtime.delegate!r} do not exist; one of {', '.join(COMPUTE_UNITS)}")
        from ...verify.runtimes import CoremlHost

        self.units = runtime.delegate
        self.session = CoremlHost().load(Path(model_path), threads=runtime.threads, executor="reference")
        self.executor = getattr(self.session, "executor", "coreml-reference")

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(x), dtype=np.float32)

    def runtime_version(self) -> str:
        return f"{self.executor} on the host CPU (stand-in app; {self.units} requested)"

    def close(self) -> None:
        self.session = None


def device_info(device_json: Path | None = None) -> dict[str, str]:
    """``DeviceInfo.swift``: model identifier (``iPhone15,2``), ``iOS 17.4``; the stand-in's from a JSON file."""
    doc: dict[str, Any] = {}
    if device_json is not None and Path(device_json).is_file():
        doc = json.loads(Path(device_json).read_text())
    hw, props = doc.get("hardwareProperties") or {}, doc.get("deviceProperties") or {}
    return {
        "model": str(hw.get("productType", os.uname().machine)),
        "manufacturer": "Apple",
        "os": f"iOS {props.get('osVersionNumber', '?')}",
        "abi": "arm64",
        "app_version": P.APP_VERSION,
    }


def thermal(thermal_file: Path | None = None) -> P.Thermal:
    """``ProcessInfo.processInfo.thermalState.rawValue``; the stand-in reads a state name from a file."""
    name = "nominal"
    if thermal_file is not None and Path(thermal_file).is_file():
        name = Path(thermal_file).read_text().strip() or "nominal"
    return P.Thermal(status=THERMAL_STATES.index(name) if name in THERMAL_STATES else None, headroom=None)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Reference iOS benchmark app: run the pending jobs of Documents/.")
    parser.add_argument("documents", type=Path)
    parser.add_argument("--device-json", type=Path, help="the stand-in iPhone's devicectl device object")
    parser.add_argument("--thermal-file", type=Path, help="a file holding nominal / fair / serious / critical")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s reference_ios_app: %(message)s")
    if not args.documents.is_dir():
        print(f"error: Documents folder {args.documents} does not exist", file=sys.stderr)
        return 2
    results = run_pending(
        args.documents,
        runner_factory=CoremlModelRunner,
        device=lambda: device_info(args.device_json),
        thermal=lambda: thermal(args.thermal_file),
    )
    log.info("%d jobs run, %d ok", len(results), sum(r.ok for r in results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
