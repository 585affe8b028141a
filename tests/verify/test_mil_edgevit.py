"""EdgeViT XXS / XS / S through the toolkit's Core ML export, run by the reference executor:
fp32 matches PyTorch to 1e-4, fp16 to cosine >= 0.999 with top-1 agreement on natural photos; the image
input + classifier variant; and seeded mutations of a saved program must fail the validator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.mil_fixtures import export_coreml, save_program, torch_logits

from edgevit_deploy.models import create_model
from edgevit_deploy.verify.inputs import parity_inputs
from edgevit_deploy.verify.metrics import cosine, topk_agreement
from edgevit_deploy.verify.mil import ReferenceExecutor
from edgevit_deploy.verify.report import Thresholds
from edgevit_deploy.verify.validator import validate_outputs

VARIANTS = ("edgevit_xxs", "edgevit_xs", "edgevit_s")
SMALL = 64
NUM_RANDOM = 2


def sharpened(model):
    """Random-init attention is near uniform, which would hide a wrong softmax axis (uniform either way):
    scale the query / key projections up so that attention maps are peaked, as in trained models."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            qkv = getattr(module, "qkv", None)
            if isinstance(qkv, torch.nn.Linear):
                qkv.weight[: 2 * qkv.in_features] *= 8.0
    return model


class _Exports:
    """(variant, precision) -> (model, .mlpackage) at 64 px, exported on first use, once per session."""

    def __init__(self, factory):
        self.factory = factory
        self.cache: dict[tuple[str, str], tuple] = {}

    def __getitem__(self, key: tuple[str, str]):
        if key not in self.cache:
            name, precision = key
            model = self.cache[name, "fp32" if precision == "fp16" else "fp16"][0] if any(
                k[0] == name for k in self.cache) else sharpened(create_model(name, img_size=SMALL))
            self.cache[key] = (model, export_coreml(model, self.factory.mktemp(f"{name}_{precision}"), precision))
        return self.cache[key]


@pytest.fixture(scope="session")
def edgevit_coreml(tmp_path_factory):
    return _Exports(tmp_path_factory)


def _check(model, path: Path, precision: str, num_random: int = NUM_RANDOM):
    x = parity_inputs(model.deploy_cfg, num_random=num_random)
    ex = ReferenceExecutor(path)
    y = ex.run_normalised(x)
    ref = torch_logits(model, x)
    report = validate_outputs(ref, y, Thresholds.for_precision(precision), executor=ex.executor)
    return ex, ref, y, report


@pytest.mark.parametrize("name", VARIANTS)
def test_fp32_program_matches_pytorch(edgevit_coreml, name):
    model, path = edgevit_coreml[name, "fp32"]
    ex, ref, y, report = _check(model, path, "fp32")
    assert ex.executor == "coreml-reference (fp32)"
    assert report.passed, report.failures
    assert report.max_abs <= 1e-4


@pytest.mark.parametrize("name", VARIANTS)
def test_fp16_program_matches_pytorch_with_real_fp16_error(edgevit_coreml, name):
    model, path = edgevit_coreml[name, "fp16"]
    ex, ref, y, report = _check(model, path, "fp16")
    assert ex.executor == "coreml-reference (fp16 emulated)"
    assert report.passed, report.failures
    assert report.cosine >= 0.999
    assert topk_agreement(ref[NUM_RANDOM:], y[NUM_RANDOM:], 1) == 1.0      # natural photos
    # the activations really are rounded to fp16: computing the same program in fp32 gives other numbers
    ideal = ReferenceExecutor(path, emulate_fp16=False).run_normalised(parity_inputs(model.deploy_cfg, NUM_RANDOM))
    assert np.abs(ideal - y).max() > 1e-4
    assert np.abs(ideal - ref).max() < report.max_abs


def test_image_input_classifier_matches_pytorch(tmp_path):
    model = create_model("edgevit_xxs", img_size=SMALL)
    path = export_coreml(model, tmp_path, "fp16", image_input=True)
    ex, ref, y, report = _check(model, path, "fp16")
    assert ex.package.image_inputs == {"image": "RGB"} and ex.package.is_classifier
    assert y.shape == (ref.shape[0], 1000)
    assert report.passed, report.failures
    # predict() returns the label of the top class next to the scores
    x = parity_inputs(model.deploy_cfg, num_random=0)[:1]
    pixels = (x * np.array(ex.std).reshape(1, 3, 1, 1) + np.array(ex.mean).reshape(1, 3, 1, 1)) * 255
    out = ex.predict({"image": pixels})
    from edgevit_deploy.labels import class_labels

    assert out["classLabel"][0] == class_labels(1000)[int(np.argmax(ref[NUM_RANDOM]))]


# ------------------------------------------------------------------------------------ mutations
def _load_program(path: Path):
    from edgevit_deploy.verify.mil.program import load_program, load_spec_and_weights

    spec, weights = load_spec_and_weights(path)
    return load_program(spec, weights)


def _replace_const(op, key: str, value) -> None:
    from coremltools.converters.mil import Builder as mb

    # a name of its own: coremltools' automatic "const_N" counter depends on what the process built before
    # (under pytest-xdist another test may have used it), and a clash with a const of the program would
    # rewire an unrelated op on reload
    with op.enclosing_block, mb.set_before_op(op):
        new = mb.const(val=value, name=f"{op.name}_{key}_mutated")
    op.set_inputs(**{key: new})


def _mutate_transpose(fn) -> str:
    for op in fn.operations:
        if op.op_type != "transpose":
            continue
        perm, shape = list(op.perm.val), op.outputs[0].shape
        for i in range(len(perm)):
            for j in range(i + 1, len(perm)):
                if shape[i] == shape[j] and shape[i] > 1:
                    perm[i], perm[j] = perm[j], perm[i]
                    _replace_const(op, "perm", np.array(perm, dtype=np.int32))
                    return op.name
    raise AssertionError("no transpose with two equal output dims to swap")


def _mutate_conv_weight(fn) -> str:
    op = next(o for o in fn.operations if o.op_type == "conv")
    w = np.array(op.weight.val, copy=True)
    w.reshape(-1)[0] += 3.0
    _replace_const(op, "weight", w)
    return op.name


def _mutate_softmax_axis(fn) -> str:
    for op in fn.operations:
        shape = op.outputs[0].shape if op.op_type == "softmax" else ()
        if shape and shape[-1] == shape[-2] > 1:
            _replace_const(op, "axis", np.int32(-2))
            return op.name
    raise AssertionError("no square softmax to re-axis")


def _mutate_epsilon(fn) -> str:
    op = next(o for o in fn.operations if o.op_type == "layer_norm")
    _replace_const(op, "epsilon", np.float32(10.0))
    return op.name


MUTATIONS = {"transpose_perm": _mutate_transpose, "conv_weight": _mutate_conv_weight,
             "softmax_axis": _mutate_softmax_axis, "layer_norm_epsilon": _mutate_epsilon}


def test_unmutated_resave_still_passes(edgevit_coreml, tmp_path):
    model, path = edgevit_coreml["edgevit_xxs", "fp32"]
    saved = save_program(_load_program(path), tmp_path / "same.mlpackage")
    _, _, _, report = _check(model, saved, "fp32")
    assert report.passed, report.failures


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_mutated_program_fails_validation(edgevit_coreml, tmp_path, mutation):
    model, path = edgevit_coreml["edgevit_xxs", "fp32"]
    prog = _load_program(path)
    op_name = MUTATIONS[mutation](prog.functions["main"])
    mutated = save_program(prog, tmp_path / f"{mutation}.mlpackage")
    _, ref, y, report = _check(model, mutated, "fp32")
    assert report.executed and not report.passed, f"mutating {op_name} ({mutation}) went unnoticed"
    assert cosine(ref, y) < 0.99999 or report.max_abs > 1e-4
