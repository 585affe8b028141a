"""onnx int8 speaks module paths (quantize/onnx_modules.py): ONNX node names map back to the modules that
made them, ``--exclude MODULE`` keeps that module's nodes in float and out of the bias correction, a float node
of a bias-corrected layer gets its uncorrected bias back, and ``--target-sqnr`` runs the module-block search
of every target (quantize/fallback.py). A small seeded conv / token-MLP model at 32 px."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgevit_deploy.converters.base import ArtifactMetadata, ExportOptions, QuantMode
from edgevit_deploy.converters.table import get_spec
from edgevit_deploy.models._config import ModelConfig
from edgevit_deploy.quantize.calibration import load_calibration
from edgevit_deploy.quantize.onnx import export_float
from edgevit_deploy.quantize.onnx_modules import ModuleNodes, node_module, split_patterns
from edgevit_deploy.quantize.pipeline import run_quantizer

CFG = ModelConfig(name="tiny_mixed", family="test", input_size=(3, 32, 32), num_classes=10)


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.pw = nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.BatchNorm2d(2 * c))
        self.act = nn.ReLU6()  # a separate module, as timm's BatchNormAct2d: onnxruntime folds it into pw
        self.proj = nn.Conv2d(2 * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.act(self.pw(x)))


class Mixer(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.fc2(nn.functional.gelu(self.fc1(t)))
        return t.transpose(1, 2).reshape(b, c, h, w)


class TinyMixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6())
        self.blocks = nn.Sequential(Block(16), Block(16))
        self.mix = Mixer(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.blocks(self.stem(x))).mean((2, 3)))


@cache
def tiny() -> nn.Module:
    torch.manual_seed(0)
    m = TinyMixed().eval()
    with torch.no_grad():
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.2, 0.2)
        for lin in (x for x in m.modules() if isinstance(x, (nn.Linear, nn.Conv2d)) and x.bias is not None):
            lin.bias.uniform_(-0.3, 0.3)
    return m


@cache
def calib():
    return load_calibration(CFG, None, 24, 0)[0]


def _meta() -> ArtifactMetadata:
    return ArtifactMetadata(model=CFG.name, input_shape=(1, *CFG.input_size), layout="NCHW", mean=CFG.mean,
                            std=CFG.std, toolkit_version="test", checkpoint_sha256="random-init",
                            precision="int8", num_classes=10)


def _quantize(tmp_path: Path, **quant):
    spec = get_spec("onnx")
    options = ExportOptions(quantize=QuantMode.INT8, precision=spec.default_precision, quant=quant)
    example = torch.from_numpy(calib().data[:1].copy())
    return run_quantizer(spec, tiny(), example, tmp_path / "m.onnx", options, _meta(), calib())


def _graph(path: Path):
    g = onnx.load(str(path)).graph
    return g, {i.name: numpy_helper.to_array(i) for i in g.initializer}


def _float_layers(g) -> set[str]:
    """Conv / Gemm / MatMul nodes whose weight is a float initializer (not behind a DequantizeLinear)."""
    inits = {i.name for i in g.initializer}
    return {n.name for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in inits}


def test_node_names_map_back_to_the_modules_that_made_them(tmp_path):
    modules = frozenset(n for n, _ in tiny().named_modules() if n)
    assert node_module("/blocks/blocks.0/pw/pw.0/Conv", modules) == "blocks.0.pw.0"
    assert node_module("/blocks/blocks.1/Add", modules) == "blocks.1"
    assert node_module("/mix/fc1/MatMul", modules) == "mix.fc1"
    assert node_module("/no_such/Conv", modules) is None and node_module("node_conv2d_3", modules) is None
    assert split_patterns(["/head/*", "blocks.0", "mix*"]) == (["/head/*"], ["blocks.0", "mix*"])

    path = export_float(tiny(), torch.zeros(1, 3, 32, 32), tmp_path / "f.onnx", ExportOptions(), _meta())
    mods = ModuleNodes(tiny(), path)
    by_op = {}
    for n in onnx.load(str(path)).graph.node:
        by_op.setdefault(n.op_type, []).append(n.name)
    convs = {mods.module_of[n] for n in by_op["Conv"]}
    assert convs == {"stem.0", "blocks.0.pw.0", "blocks.0.proj", "blocks.1.pw.0", "blocks.1.proj"}
    # the ReLU6 of a separate module belongs to the conv it follows (onnxruntime folds it into its range)
    clips = sorted(mods.module_of[n] for n in by_op["Clip"])
    assert clips == ["blocks.0.pw.0", "blocks.1.pw.0", "stem.0"]
    assert mods.covers(["stem", "blocks.0", "blocks.1", "mix", "head"])
    assert set(mods.nodes_of(["blocks.1"])) >= {n for n in by_op["Conv"] if n.startswith("/blocks/blocks.1/")}
    assert mods.match(["blocks.*", "nothing*"]) == (["blocks.0", "blocks.1"], ["nothing*"])


def test_a_module_path_exclude_keeps_the_module_float_and_out_of_the_bias_correction(tmp_path):
    result = _quantize(tmp_path, exclude=("mix",))
    details = result.details
    assert details["excluded_modules"] == ["mix"] and details["kept_in_float_layers"] == ["mix"]
    g, inits = _graph(result.path)
    floats = _float_layers(g)
    modules = frozenset(n for n, _ in tiny().named_modules() if n)
    assert sorted(node_module(n, modules) for n in floats) == ["mix.fc1", "mix.fc2"], floats  # (fused to Gemm)
    assert {"mix.fc1", "mix.fc2"} <= set(details["bias_correction"]["skipped_layers"])
    fc1 = next(n for n in g.node if n.name in floats and node_module(n.name, modules) == "mix.fc1")
    np.testing.assert_allclose(inits[fc1.input[2]], tiny().mix.fc1.bias.detach().numpy(), atol=1e-6)


def test_a_node_pattern_exclude_gives_the_float_layer_its_uncorrected_bias(tmp_path):
    result = _quantize(tmp_path, exclude=("/head/*",))
    assert "head" not in result.details["bias_correction"]["skipped_layers"]  # corrected before export...
    g, inits = _graph(result.path)
    assert _float_layers(g) == {"/head/Gemm"}
    gemm = next(n for n in g.node if n.name == "/head/Gemm")
    # ...and given its own bias back in the graph, where it runs in float
    np.testing.assert_allclose(inits[gemm.input[2]], tiny().head.bias.detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("limit", [2])
def test_target_sqnr_searches_module_blocks_as_every_target_does(tmp_path, limit):
    result = _quantize(tmp_path, target_sqnr=99.0, max_float_layers=limit)
    details = result.details
    search = details["target_sqnr"]
    assert search["units"] == "modules"
    rows = {r["layer"] for r in details["block_analysis"]["layers"]}
    assert rows == {"stem", "blocks", "mix", "head"}  # find_blocks: modules of at most 12 layers
    plan = details["kept_in_float_layers"]
    assert len(plan) == limit and set(plan) <= rows and plan == search["kept_in_float_layers"]
    assert details["bias_correction_redone_for_the_plan"]
    g, _ = _graph(result.path)
    floated = {n for n in _float_layers(g)}
    assert floated and all(any(n.startswith(f"/{p.split('.')[0]}/") for p in plan) for n in floated)
    # the search measured against the float model: its first step is the int8 model's SQNR, not infinity
    assert 5 < search["steps"][0]["sqnr_db"] < 60
