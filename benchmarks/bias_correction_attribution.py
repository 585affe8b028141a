"""Where EfficientNet-Lite0's static int8 error comes from, and what the bias correction of the weight rounding
(quantize/bias_correction.py) recovers: PyTorch-side simulation of the PT2E int8 graph (litert-torch's
quantizer, as tflite and Core ML W8A8 use it; torchao's ``convert_pt2e`` run in PyTorch), measured against fp32
on the report's held-out views. Rows: W8A8; weights only (activation specs removed); activations only (weight
spec removed); only the first depthwise conv's weights rounded; each with / without the correction.

    python benchmarks/bias_correction_attribution.py            # ~10 min on 2 busy cores
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys

import numpy as np
import torch

from edgevit_deploy.models import create_model
from edgevit_deploy.quantize.bias_correction import bias_correct, quantized_weight
from edgevit_deploy.quantize.calibration import load_calibration
from edgevit_deploy.quantize.pt2e import calibrate_pt2e, litert_quantizer
from edgevit_deploy.quantize.reconstruct import PT2E_QMAX, fold_batchnorms
from edgevit_deploy.verify.metrics import sqnr_db


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--layer", default="blocks.0.0.conv_dw", help="the layer rounded alone")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    model = create_model(args.model).eval()
    calib, held = load_calibration(model.deploy_cfg, None, args.calib_size, 0)
    x = torch.from_numpy(held.data)

    def run(m) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([m(x[i:i + 1]).numpy() for i in range(len(x))])

    ref = run(model)

    def pt2e(m, weights: bool = True, acts: bool = True) -> np.ndarray:
        q = litert_quantizer(False)
        c = q.global_config
        q.set_global(dataclasses.replace(
            c, weight=c.weight if weights else None, input_activation=c.input_activation if acts else None,
            output_activation=c.output_activation if acts else None))
        return run(calibrate_pt2e(m, x[:1], q, calib.data, fold_quantize=False))

    def alone(m, name: str) -> np.ndarray:
        m = copy.deepcopy(m)
        layer = m.get_submodule(name)
        with torch.no_grad():
            layer.weight.copy_(quantized_weight(layer.weight, PT2E_QMAX))
        return run(m)

    corrected, report = bias_correct(model, calib.data, PT2E_QMAX)
    folded = copy.deepcopy(model)
    fold_batchnorms(folded, x[:1])
    rows = [
        ("W8A8", pt2e(model), pt2e(corrected)),
        ("weights only (int8 per-channel, activations float)", pt2e(model, acts=False), pt2e(corrected, acts=False)),
        ("activations only (int8, weights float)", pt2e(model, weights=False), None),
        (f"only {args.layer}'s weights rounded", alone(folded, args.layer), alone(corrected, args.layer)),
    ]
    print(f"largest corrections: {report.largest}")
    print("\n| quantized | SQNR dB | held-out top-1 | with bias correction: SQNR dB | top-1 |")
    print("|---|---|---|---|---|")
    top1 = lambda out: f"{100 * np.mean(out.argmax(-1) == ref.argmax(-1)):.1f} %"
    for name, plain, fixed in rows:
        after = "- | -" if fixed is None else f"{sqnr_db(ref, fixed):.1f} | {top1(fixed)}"
        print(f"| {name} | {sqnr_db(ref, plain):.1f} | {top1(plain)} | {after} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
