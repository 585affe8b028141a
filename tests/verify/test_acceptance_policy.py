"""One acceptance policy (verify/policy.py) and one artifact runner (verify/run.py): fast unit tests.

Every bar comes from the policy keyed by a validated variant; an unknown variant is bad input; the user's
looser flags are applied but listed; a crash / an op the runtime cannot run is a failure, "not executed" only
for a runtime that cannot exist here. (The CLI end to end: tests/cli/test_verify_cli.py.)
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgevit_deploy.converters.base import QuantMode
from edgevit_deploy.converters.table import TARGETS, get_spec
from edgevit_deploy.errors import RuntimeUnavailableError, UnsupportedOptionError
from edgevit_deploy.models._config import ModelConfig
from edgevit_deploy.quantize.base import QuantResult
from edgevit_deploy.quantize.calibration import CalibrationSet
from edgevit_deploy.quantize.fidelity import build_report
from edgevit_deploy.verify.mil.errors import MilOpExecutionError, UnsupportedMilOpError
from edgevit_deploy.verify.policy import (BARS, AcceptancePolicy, ThresholdFlags, Variant, looser_than_contents)
from edgevit_deploy.verify.report import Thresholds
from edgevit_deploy.verify.run import run_artifact

SIZE = 8
CFG = ModelConfig(name="tiny", family="user", input_size=(3, SIZE, SIZE), num_classes=5, labels=None)


def test_every_precision_and_mode_of_the_table_has_a_variant_with_bars():
    names = {str(p) for s in TARGETS.values() for p in (*s.precisions, *s.quant_modes)}
    assert names == {str(v) for v in Variant}
    assert set(BARS) == set(Variant)


@pytest.mark.parametrize("bad", ["bogus", "int4", "", "fp64"])
def test_unknown_variant_is_bad_input_listing_the_valid_ones(bad):
    with pytest.raises(UnsupportedOptionError, match="fp32, fp16, .*int8-dynamic.*palettize4") as info:
        AcceptancePolicy.for_variant(bad)
    assert isinstance(info.value, ValueError)  # the CLI maps ValueError to exit code 2
    with pytest.raises(UnsupportedOptionError):
        Thresholds.for_precision(bad)   # today: silently the loosest (int8) bars


def test_int8_bars_are_the_export_floors_and_the_same_for_export_and_verify():
    """The fidelity report's floors (export) and Thresholds.for_precision (verify) are one policy."""
    assert Thresholds.for_precision("int8") == Thresholds(max_abs=None, cosine=0.90, top1_agreement=None,
                                                          sqnr_db=8.0)
    assert AcceptancePolicy.for_variant(QuantMode.INT8_DYNAMIC).thresholds.sqnr_db == 12.0
    pretrained = AcceptancePolicy.for_variant("w8", pretrained=True).thresholds
    assert pretrained.top1_agreement == 0.90 and pretrained.cosine == 0.995


def test_tighter_flags_apply_silently_looser_ones_apply_and_are_listed():
    tight = AcceptancePolicy.for_variant("int8", flags=ThresholdFlags(min_cosine=0.99, min_sqnr=20, max_abs=0.5))
    assert tight.thresholds.cosine == 0.99 and tight.thresholds.sqnr_db == 20 and tight.thresholds.max_abs == 0.5
    assert tight.loosened == []
    loose = AcceptancePolicy.for_variant("fp32", flags=ThresholdFlags(max_abs=0.3, min_top1=0.5, min_cosine=0.99999))
    assert loose.thresholds.max_abs == 0.3 and loose.thresholds.top1_agreement == 0.5
    assert len(loose.loosened) == 2
    assert any("--max-abs 0.3" in s and "0.0001" in s for s in loose.loosened)
    assert any("--min-top1 0.5" in s for s in loose.loosened)
    assert loose.to_dict()["policy"]["max_abs"] == 1e-4   # the policy's own bar stays visible


@pytest.mark.parametrize("flags", [ThresholdFlags(max_abs=0), ThresholdFlags(min_top1=90),
                                   ThresholdFlags(min_cosine=2)])
def test_nonsense_flags_are_bad_input(flags):
    with pytest.raises(UnsupportedOptionError):
        AcceptancePolicy.for_variant("fp32", flags=flags)


def test_a_claim_looser_than_the_contents_is_detected():
    fp32 = frozenset({Variant.FP32})
    assert looser_than_contents(Variant.INT8, fp32) and looser_than_contents(Variant.FP16, fp32)
    assert not looser_than_contents(Variant.FP32, fp32)
    assert not looser_than_contents(Variant.FP32, frozenset({Variant.FP16}))   # stricter is allowed
    assert looser_than_contents(Variant.INT8, frozenset({Variant.INT8_DYNAMIC}))
    assert not looser_than_contents(Variant.W8, frozenset({Variant.INT8}))


# ------------------------------------------------------------------------------------ the one runner
class _Session:
    executor = "fake-runtime 1.0"

    def __init__(self, exc: BaseException | None):
        self.exc = exc

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.exc is not None:
            raise self.exc
        return np.zeros((x.shape[0], CFG.num_classes), np.float32)


class _Host:
    name = "fake"
    raises: BaseException | None = None
    at_load = False

    def unavailable_reason(self):
        return None

    def load(self, path: Path, threads: int = 1, **options):
        if self.at_load and self.raises is not None:
            raise self.raises
        return _Session(self.raises)


class CrashingOpHost(_Host):
    raises = MilOpExecutionError("reshape", "reshape_3", ValueError("cannot reshape array of size 12"))


class UnknownOpHost(_Host):
    raises, at_load = UnsupportedMilOpError("relu"), True


class RejectingHost(_Host):
    raises, at_load = RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : bad node"), True


class NoNativeHost(_Host):
    raises, at_load = RuntimeUnavailableError("--coreml-executor native needs macOS"), True


def _spec(host: type) -> object:
    return replace(get_spec("coreml"), host_runtime=f"{__name__}:{host.__name__}")


@pytest.mark.parametrize("host,word", [(CrashingOpHost, "reshape_3"), (UnknownOpHost, "'relu'"),
                                       (RejectingHost, "INVALID_GRAPH")])
def test_a_crash_a_rejected_file_or_an_unknown_op_is_a_failure_with_the_reason(host, word):
    out = run_artifact(_spec(host), Path("x.mlpackage"), np.zeros((2, 3, SIZE, SIZE), np.float32))
    assert not out.ok and out.executed and word in out.reason
    report = out.report()
    assert report.executed and not report.passed and word in report.reason


def test_not_executed_only_when_the_runtime_cannot_exist_here():
    out = run_artifact(_spec(NoNativeHost), Path("x.mlpackage"), np.zeros((1, 3, SIZE, SIZE), np.float32))
    assert not out.ok and not out.executed and "macOS" in out.reason
    assert out.report().executed is False


def test_fidelity_report_of_a_crashing_quantized_program_fails(tmp_path):
    """Today the fidelity path records an op crash as "not executed", so the export comes out ok."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, CFG.num_classes)).eval()
    x = np.random.default_rng(0).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    held = CalibrationSet(x, "test views", names=["a", "a", "b", "b"])
    artifact = tmp_path / "x.mlpackage"
    artifact.mkdir()
    result = QuantResult(artifact, "int8")
    report = build_report(model, CFG, _spec(CrashingOpHost), result, None, held, held, pretrained=False)
    assert report.parity.executed and not report.parity.passed
    assert "reshape_3" in report.parity.reason
    assert report.parity.variant == "int8"


def test_fidelity_report_is_judged_by_the_policy(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, CFG.num_classes)).eval()

    class ExactHost(_Host):
        def load(self, path, threads=1, **options):
            class S:
                executor = "exact"

                def run(self, x):
                    with torch.no_grad():
                        return model(torch.from_numpy(x)).numpy()
            return S()

    globals()["ExactHost"] = ExactHost
    x = np.random.default_rng(0).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    held = CalibrationSet(x, "test views", names=["a", "a", "b", "b"])
    (tmp_path / "x.onnx").write_bytes(b"stand-in")   # only its size is read
    spec = replace(get_spec("onnx"), host_runtime=f"{__name__}:ExactHost")
    report = build_report(model, CFG, spec, QuantResult(tmp_path / "x.onnx", "w8"), None, held, held, pretrained=True)
    assert report.parity.passed
    assert report.parity.thresholds == {"max_abs": None, "cosine": 0.995, "top1_agreement": 0.90, "sqnr_db": 20.0}


# ------------------------------------------------------------------------- what the file holds (ONNX)
def _onnx_graph(path: Path, kind: str) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float16 if kind == "fp16" else np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    elem = TensorProto.FLOAT16 if kind == "fp16" else TensorProto.FLOAT
    if kind == "int8":
        inits += [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                 helper.make_node("MatMul", ["xd", "w"], ["y"])]
    elif kind == "int8-dynamic":
        inits = [numpy_helper.from_array(np.ones((4, 2), np.int8), "w"),
                 numpy_helper.from_array(np.int8(0), "wz")]
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                 helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["yi"]),
                 helper.make_node("Cast", ["yi"], ["y"], to=TensorProto.FLOAT)]
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [1, 4])],
                              [helper.make_tensor_value_info("y", elem, [1, 2])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8", "int8-dynamic"])
def test_onnx_contents_show_the_variant(tmp_path, kind):
    contents = get_spec("onnx").load_host_runtime().inspect(_onnx_graph(tmp_path / f"{kind}.onnx", kind))
    assert contents.allowed == {Variant(kind)}
    if kind == "fp32":
        assert "no quantize ops" in contents.evidence
        assert looser_than_contents(Variant.INT8, contents.allowed)
