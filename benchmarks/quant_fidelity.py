"""Fidelity of every quantization mode of every target, on EfficientNet-Lite0 / Lite1 / Lite2 (real ImageNet
weights) and EdgeViT-XXS (seeded random weights): the figures behind the floors in the README and in
``edgevit_deploy/verify/policy.py``. ``--calib-methods minmax,reconstruct`` puts the targets' own min/max
calibration and the block reconstruction (``--calib-method reconstruct``, quantize/reconstruct.py) side by
side for the int8 mode; the budget columns give the calibration images and the minutes the quantization took
(reconstruction included; it is done once per model and grid and reused by the next PT2E target).

Each (model, target, mode) is quantized by the toolkit's pipeline as the export does it (the target's
formulation of the model, ``quantize_and_report``: built-in calibration photos, ``--calib-size`` views) and
measured against the authors' fp32 PyTorch model on:

- the report's held-out photos (SQNR, cosine, top-1 agreement, as in report.json);
- the natural photographs (:data:`~edgevit_deploy.images.NATURAL_PHOTOS`), whole and as ``--views`` seeded
  crops / flips each: top-1 agreement with fp32 (real-weight models only);
- the scientific images (:data:`~edgevit_deploy.images.SCIENTIFIC_IMAGES`: textures, microscopy, scans),
  likewise.

    python benchmarks/quant_fidelity.py                                  # everything (~25 min here)
    python benchmarks/quant_fidelity.py --models efficientnet_lite0 --targets onnx --modes int8
    python benchmarks/quant_fidelity.py --models efficientnet_lite0 --modes int8 --no-bias-correction
    python benchmarks/quant_fidelity.py --models efficientnet_lite0,efficientnet_lite1,efficientnet_lite2,edgevit_xxs \
        --modes int8 --calib-methods minmax,reconstruct --reconstruct-iters 200
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions, QuantMode
from edgevit_deploy.converters.table import TARGETS, get_spec
from edgevit_deploy.formulations import apply_formulations
from edgevit_deploy.images import NATURAL_PHOTOS, SCIENTIFIC_IMAGES, sample_photos
from edgevit_deploy.models import create_model
from edgevit_deploy.quantize.calibration import views_of
from edgevit_deploy.quantize.pipeline import quantize_and_report
from edgevit_deploy.verify.run import run_artifact

SIZES = {"edgevit_xxs": 64}  # random weights: a small input is as telling and much faster


def _top1(fn, x: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([fn(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)])


def agreement(model, spec, path: Path, names: tuple[str, ...], views: int) -> tuple[float, float, int]:
    """(agreement on the whole photos, on whole + crops, number of images with crops)."""
    cfg = model.deploy_cfg
    x, _ = views_of(sample_photos(names), views * len(names), cfg, 11, whole_first=True)

    def torch_fn(b):
        with torch.no_grad():
            return model(torch.from_numpy(b)).numpy()

    def artifact_fn(b):
        run = run_artifact(spec, path, b, coreml_executor="reference")
        if not run.ok:
            raise RuntimeError(run.reason)
        return run.outputs

    agree = _top1(torch_fn, x) == _top1(artifact_fn, x)
    n_whole = len(sample_photos(names))
    return float(agree[:n_whole].mean()), float(agree.mean()), len(agree)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="efficientnet_lite0,edgevit_xxs")
    ap.add_argument("--targets", default=",".join(map(str, TARGETS)))
    ap.add_argument("--modes", default="all", help="comma-separated quantization modes, or 'all' of each target")
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--calib-methods", default="minmax",
                    help="comma-separated --calib-method values compared for the int8 mode (minmax,reconstruct)")
    ap.add_argument("--reconstruct-iters", type=int, default=200, help="iterations per block of reconstruct")
    ap.add_argument("--target-sqnr", type=float, default=None,
                    help="static int8: keep the blocks the float-fallback search picks in float until this output "
                         "SQNR (dB, on the search's calibration images)")
    ap.add_argument("--no-bias-correction", action="store_true",
                    help="static int8 without the bias correction of the weight rounding (default: corrected)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="edgevit-quant-fidelity-"))
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = create_model(name, img_size=SIZES.get(name)).eval()
        cfg = model.deploy_cfg
        pretrained = model.checkpoint_sha256 != "random-init"
        for target in args.targets.split(","):
            spec = get_spec(target)
            shipped, _ = apply_formulations(model, spec.formulation)  # the target's rewrites, as the export ships
            modes = spec.quant_modes if args.modes == "all" else [QuantMode(m) for m in args.modes.split(",")
                                                                 if QuantMode(m) in spec.quant_modes]
            for mode in modes:
                methods = args.calib_methods.split(",") if QuantMode(mode) is QuantMode.INT8 else ["minmax"]
                for method in methods:
                    out = work / f"{name}-{target}-{mode}-{method}"
                    row = _measure(model, shipped, cfg, spec, QuantMode(mode), method, args, out)
                    row.update(model=name, target=target)
                    if pretrained and row["executed"]:
                        row["nat"] = agreement(model, spec, row["artifact"], NATURAL_PHOTOS, args.views)
                        row["sci"] = agreement(model, spec, row["artifact"], SCIENTIFIC_IMAGES, args.views)
                    rows.append(row)
                    print(_fmt(row), flush=True)
    print("\n| model | target | mode | calibration | SQNR dB | cosine | held-out top-1 | natural whole / +crops | "
          "scientific whole / +crops | size vs float | latency vs float | floor | budget |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(_fmt(r))
    return 0


def _measure(model, shipped, cfg, spec, mode: QuantMode, method: str, args, out: Path) -> dict:
    """Quantize the target's formulation of ``model`` (``shipped``) and measure it against ``model`` itself."""
    t0 = time.perf_counter()
    quant = {"calib_method": method, "reconstruct_iters": args.reconstruct_iters} if method != "minmax" else {}
    if mode is QuantMode.INT8 and method != "reconstruct" and args.no_bias_correction:
        quant["bias_correction"] = False
    if mode is QuantMode.INT8 and args.target_sqnr is not None:
        quant["target_sqnr"] = args.target_sqnr
    options = ExportOptions(quantize=mode, precision=spec.default_precision, quant=quant)
    meta = ArtifactMetadata(model=cfg.name, input_shape=(1, *cfg.input_size), layout="NCHW",
                            mean=cfg.mean, std=cfg.std, toolkit_version="bench",
                            checkpoint_sha256=model.checkpoint_sha256, precision=str(mode),
                            num_classes=cfg.num_classes)
    path, rep = quantize_and_report(shipped, cfg, spec, options, out, meta, calib_size=args.calib_size,
                                    coreml_executor="reference", latency_runs=10, reference=model)
    p = rep.parity
    rec = (rep.quantization or {}).get("reconstruction") or {}
    budget = f"{rep.calibration.get('count', args.calib_size)} img"
    if rec:
        budget += f", {rec['images']} img x {rec['iters_per_block']} it/block, {rec['seconds'] / 60:.1f} min rec."
    bc = (rep.quantization or {}).get("bias_correction") or {}
    if bc.get("applied"):
        method += f" + bias corr. ({bc['images']} img, {bc['seconds']:.0f} s)"
    if rep.kept_in_float:
        method += f"; in float: {', '.join(rep.kept_in_float)}"
    lat = rep.latency
    return {"mode": str(mode), "method": method, "sqnr": p.sqnr_db, "cos": p.cosine,
            "held_top1": p.top1_agreement, "held_n": p.num_inputs, "passed": p.passed, "executed": p.executed,
            "size": rep.size_quant_bytes / rep.size_float_bytes, "s": time.perf_counter() - t0,
            "latency": lat.quant_ms / lat.float_ms if lat.quant_ms and lat.float_ms else None,
            "budget": f"{budget}; {(time.perf_counter() - t0) / 60:.1f} min total", "artifact": path}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _fmt(r: dict) -> str:
    nat = sci = "-"
    if "nat" in r:
        nat = f"{_pct(r['nat'][0])} / {_pct(r['nat'][1])} (n={r['nat'][2]})"
        sci = f"{_pct(r['sci'][0])} / {_pct(r['sci'][1])} (n={r['sci'][2]})"
    sq = "-" if r["sqnr"] is None else f"{r['sqnr']:.1f}"
    cos = "-" if r["cos"] is None else f"{r['cos']:.4f}"
    lat = "-" if r.get("latency") is None else f"{r['latency']:.2f}"
    return (f"| {r['model']} | {r['target']} | {r['mode']} | {r['method']} | {sq} | {cos} | {_pct(r['held_top1'])} "
            f"(n={r['held_n']}) | {nat} | {sci} | {r['size']:.2f} | {lat} | {'passed' if r['passed'] else 'FAILED'} | "
            f"{r['budget']} |")


if __name__ == "__main__":
    sys.exit(main())
