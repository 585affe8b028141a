"""Export to ONNX / TFLite / Core ML, parity, metadata, report, and the validator's ability to fail."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgevit_deploy
from edgevit_deploy.converters import ExportOptions, Precision, get_spec
from edgevit_deploy.errors import ConversionError, OutputDirError, UnsupportedOptionError
from edgevit_deploy.verify.artifact import verify_artifact

VARIANTS = ("edgevit_xxs", "edgevit_xs", "edgevit_s")


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_fp32_parity_every_variant(edgevit_exports, name, target):
    art = next(a for a in edgevit_exports[name].artifacts if a.target == target)
    assert art.error is None
    p = art.parity
    assert p.executed and p.passed, p.reason
    assert p.max_abs <= 1e-4 and p.top1_agreement == 1.0 and p.cosine > 0.9999
    assert p.num_inputs >= 3  # random tensors and natural photographs


def test_report_json_schema(edgevit_exports):
    res = edgevit_exports["edgevit_xxs"]
    report = json.loads((res.out_dir / "report.json").read_text())
    assert report["model"] == "edgevit_xxs"
    assert [a["target"] for a in report["artifacts"]] == ["onnx", "tflite"]
    for a in report["artifacts"]:
        assert {"target", "path", "precision", "size_bytes", "export_s", "parity"} <= set(a)
        assert {"executed", "max_abs", "cosine", "sqnr_db", "top1_agreement", "passed"} <= set(a["parity"])
        assert Path(a["path"]).stat().st_size == a["size_bytes"] > 1_000_000


def test_onnx_graph_names_opset_and_metadata(edgevit_exports):
    import onnx

    art = next(a for a in edgevit_exports["edgevit_xxs"].artifacts if a.target == "onnx")
    proto = onnx.load(str(art.path))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # the sampler on the token sequence: no AveragePool (and its transposes) left; onnxruntime's ConvTranspose kept
    ops = {n.op_type for n in proto.graph.node}
    assert "AveragePool" not in ops and "ConvTranspose" in ops and art.formulation["edgevit_sampler_on_tokens"] == 5
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 224, 224]  # fixed batch by default
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["edgevit_deploy.model"] == "edgevit_xxs"
    assert meta["edgevit_deploy.input_shape"] == "1,3,224,224" and meta["edgevit_deploy.layout"] == "NCHW"
    assert meta["edgevit_deploy.checkpoint_sha256"] == "random-init"
    assert meta["edgevit_deploy.version"] == edgevit_deploy.__version__
    assert [float(v) for v in meta["edgevit_deploy.mean"].split(",")] == pytest.approx([0.485, 0.456, 0.406])


def test_tflite_metadata_and_no_transpose_conv(edgevit_exports):
    from ai_edge_litert import schema_py_generated as schema

    from edgevit_deploy.converters.tflite import read_metadata

    art = next(a for a in edgevit_exports["edgevit_xxs"].artifacts if a.target == "tflite")
    assert read_metadata(art.path)["edgevit_deploy.model"] == "edgevit_xxs"
    model = schema.Model.GetRootAs(bytearray(art.path.read_bytes()), 0)
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = {builtin[model.OperatorCodes(i).BuiltinCode()] for i in range(model.OperatorCodesLength())}
    # the XNNPACK formulation: the depthwise transposed conv a broadcast product, the sampler a stride-1 token slice
    assert "TRANSPOSE_CONV" not in ops and "BROADCAST_TO" not in ops and "STRIDED_SLICE" not in ops
    assert art.formulation["depthwise_convtranspose_to_broadcast"] == 5
    assert art.formulation["edgevit_sampler_on_tokens"] == 5


def test_dynamic_batch_onnx(tmp_path):
    res = edgevit_deploy.export("edgevit_xxs", "onnx", tmp_path, img_size=64, options=ExportOptions(dynamic_batch=True))
    import onnxruntime as ort

    sess = ort.InferenceSession(str(res.artifacts[0].path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] == "batch"
    assert sess.run(None, {"image": np.zeros((3, 3, 64, 64), np.float32)})[0].shape == (3, 1000)
    assert res.artifacts[0].parity.passed


def test_dynamo_exporter_also_passes(tmp_path):
    res = edgevit_deploy.export("edgevit_xxs", "onnx", tmp_path, img_size=64,
                                options=ExportOptions(onnx_exporter="dynamo"))
    assert res.artifacts[0].error is None and res.artifacts[0].parity.passed, res.artifacts[0].parity.reason


@pytest.mark.slow
def test_tflite_fp16_and_nhwc(tmp_path):
    res16 = edgevit_deploy.export("edgevit_xxs", "tflite", tmp_path / "a", img_size=64,
                                  options=ExportOptions(precision=Precision.FP16))
    a = res16.artifacts[0]
    assert a.precision == "fp16" and a.parity.passed, a.parity.reason
    assert a.parity.cosine > 0.999 and a.parity.max_abs > 0  # really fp16 weights: not bit-exact
    resn = edgevit_deploy.export("edgevit_xxs", "tflite", tmp_path / "b", img_size=64, options=ExportOptions(nhwc=True))
    b = resn.artifacts[0]
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(b.path))
    assert tuple(interp.get_input_details()[0]["shape"]) == (1, 64, 64, 3)
    assert b.parity.passed and b.parity.max_abs <= 1e-4
    assert a.size_bytes < 0.6 * b.size_bytes


@pytest.fixture(scope="module")
def coreml_packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("coreml")
    plain = edgevit_deploy.export("edgevit_xxs", "coreml", d / "plain", img_size=64)
    image = edgevit_deploy.export("edgevit_xxs", "coreml", d / "image", img_size=64,
                                  options=ExportOptions(image_input=True, minimum_deployment_target="iOS17"))
    return plain.artifacts[0], image.artifacts[0]


def test_coreml_plain_package(coreml_packages):
    import coremltools as ct

    art, _ = coreml_packages
    assert art.error is None and art.path.suffix == ".mlpackage" and art.path.is_dir()
    spec = ct.utils.load_spec(str(art.path))
    assert spec.WhichOneof("Type") == "mlProgram"
    assert [i.name for i in spec.description.input] == ["image"]
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 3, 64, 64]
    assert [o.name for o in spec.description.output] == ["logits"]
    meta = dict(spec.description.metadata.userDefined)
    assert meta["edgevit_deploy.model"] == "edgevit_xxs" and meta["edgevit_deploy.precision"] == "fp16"
    assert art.precision == "fp16"  # Core ML's default compute precision


def test_coreml_image_input_package(coreml_packages):
    import coremltools as ct

    _, art = coreml_packages
    spec = ct.utils.load_spec(str(art.path))
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert spec.description.input[0].type.imageType.width == 64
    assert spec.description.predictedFeatureName == "classLabel"
    outputs = {o.name: o.type.WhichOneof("Type") for o in spec.description.output}
    assert outputs["classLabel"] == "stringType" and "dictionaryType" in outputs.values()
    assert spec.specificationVersion >= 8  # iOS17
    assert dict(spec.description.metadata.userDefined)["edgevit_deploy.std"].startswith("0.229")


def test_coreml_report_never_claims_a_pass_it_did_not_run(coreml_packages):
    for art in coreml_packages:
        p = art.parity
        if p.executed:
            assert p.executor and "coreml" in p.executor
        else:
            assert not p.passed and p.reason


def _perturb_onnx(src: Path, dst: Path) -> None:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    init = next(i for i in proto.graph.initializer if i.name.endswith("head.bias") or "head" in i.name)
    arr = numpy_helper.to_array(init).copy()
    arr[: arr.size // 2] += 0.5
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(proto, str(dst))


def test_perturbed_artifact_fails_parity(edgevit_exports, tmp_path):
    art = next(a for a in edgevit_exports["edgevit_xxs"].artifacts if a.target == "onnx")
    bad = tmp_path / "perturbed.onnx"
    _perturb_onnx(art.path, bad)
    v = verify_artifact(bad, "edgevit_xxs")
    assert v.parity.executed and not v.parity.passed
    assert any("max abs error" in f for f in v.parity.failures)
    good = verify_artifact(art.path, "edgevit_xxs")
    assert good.parity.passed and good.precision == "fp32"


def test_unsupported_option_lists_what_target_has():
    with pytest.raises(UnsupportedOptionError, match=r"onnx does not support: precision fp16 \(has: fp32\)"):
        get_spec("onnx").validate(ExportOptions(precision=Precision.FP16))
    with pytest.raises(UnsupportedOptionError, match="--nhwc"):
        edgevit_deploy.export("edgevit_xxs", "coreml", "/tmp/unused", options=ExportOptions(nhwc=True))


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match="cannot write to output folder"):
        edgevit_deploy.export("edgevit_xxs", "onnx", blocker / "sub", img_size=64)


USER_MODEL = '''
import torch
from torch import nn

class UsesSvd(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x):
        s = torch.linalg.svdvals(x.mean((2,)))  # (B, 3): no ONNX / TFLite lowering
        return self.fc(s)

def factory(num_classes=1000, img_size=224):
    return UsesSvd(num_classes)
'''


def test_conversion_failure_names_target_and_op(tmp_path):
    f = tmp_path / "user_model.py"
    f.write_text(USER_MODEL)
    res = edgevit_deploy.export(f"{f}:factory", "onnx", tmp_path / "out", img_size=32)
    art = res.artifacts[0]
    assert not res.ok and art.path is None
    assert "Conversion to onnx failed" in art.error and "svd" in art.error.lower()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["artifacts"][0]["error"] == art.error  # the failure is on disk too


def test_export_accepts_a_module_object(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
    res = edgevit_deploy.export(model, "onnx", tmp_path, img_size=64)
    assert res.artifacts[0].parity.passed and res.config.num_classes == 5


def test_conversion_error_type():
    err = ConversionError("coreml", "boom", op="aten::foo")
    assert "coreml" in str(err) and "aten::foo" in str(err)
