"""Every registered model builds, runs at a small input, and matches its recorded figures; the timm zoo's
names, ``timm:NAME`` and the user's own model resolve."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from edgevit_deploy.analysis import count_macs
from edgevit_deploy.errors import InputSizeError, UnknownModelError, UnsupportedOptionError
from edgevit_deploy.models import create_model, get_model_config, list_models, resolve
from edgevit_deploy.models.timm_zoo import TIMM_SPECS
from helpers.zoo_fixtures import ALL_MODELS, default_size_params, small_model, small_size

TIMM_NAMES = [s.arch for s in TIMM_SPECS]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_builds_and_runs_at_a_small_input(name):
    model = small_model(name)
    s = small_size(name)
    assert not model.training
    assert model.deploy_cfg.input_size == (3, s, s)
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, model.deploy_cfg.num_classes)
    assert torch.isfinite(y).all()
    assert not torch.equal(y[0], y[1]), "the logits do not depend on the input"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_recorded_param_count_matches_the_built_model(name):
    cfg = get_model_config(name)
    assert cfg.num_params is not None, f"{name} has no recorded num_params"
    assert default_size_params(name) == cfg.num_params


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_has_what_list_models_shows(name):
    cfg = get_model_config(name)
    assert cfg.family and cfg.gmacs and cfg.gmacs > 0
    assert cfg.input_size[0] == 3 and cfg.input_size[1] == cfg.input_size[2] > 0
    assert cfg.input_size[-1] % cfg.size_divisor == 0
    assert cfg.paper is not None and cfg.paper.source and cfg.paper.top1 is not None
    assert len(cfg.mean) == len(cfg.std) == 3 and all(v > 0 for v in cfg.std)


@pytest.mark.parametrize("spec", TIMM_SPECS, ids=TIMM_NAMES)
def test_recorded_gmacs_of_timm_models(spec):
    """Counted on the meta device (no compute): the same counter as analysis.count_macs."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = get_model_config(spec.arch)
    with torch.device("meta"):
        model = resolve(spec.arch).factory(num_classes=1000, img_size=cfg.img_size).eval()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, *cfg.input_size))
    assert counter.get_total_flops() / 2e9 == pytest.approx(spec.gmacs, abs=5.01e-4)  # recorded to 3 decimals


def test_timm_zoo_is_registered_with_timm_preprocessing():
    import timm

    names = set(list_models())
    assert set(TIMM_NAMES) <= names
    for arch in ("mobilevit_xxs", "tnt_s_patch16_224", "mobilenetv3_large_075"):
        pc = timm.models.get_pretrained_cfg(arch)
        cfg = get_model_config(arch)
        assert cfg.input_size == tuple(pc.input_size)
        assert cfg.mean == tuple(pc.mean) and cfg.std == tuple(pc.std)
        assert (cfg.interpolation, cfg.crop_pct) == (pc.interpolation, pc.crop_pct)


def test_paper_figures_of_the_edgevit_baselines_come_from_the_reference_table(official_table):
    by_timm = {r["timm_name"]: r for r in official_table["rows"] if r["timm_name"]}
    checked = 0
    for arch in TIMM_NAMES:
        if arch in by_timm:
            paper = get_model_config(arch).paper
            assert (paper.top1, paper.mobile_latency_ms) == (by_timm[arch]["top1"], by_timm[arch]["cpu_ms"])
            checked += 1
    assert checked == 10


@pytest.fixture(scope="module")
def official_table():
    """The paper's table as the package ships it (``edgevit_deploy/data/``), read as a file of the clone."""
    import json
    from importlib import resources

    return json.loads(resources.files("edgevit_deploy").joinpath("data/edgevit_paper_table.json").read_text())


# ------------------------------------------------------------------------------------------ img_size
def test_fixed_size_vits_take_img_size():
    model = small_model("deit_tiny_patch16_224")
    assert model.pos_embed.shape[1] == 1 + (small_size("deit_tiny_patch16_224") // 16) ** 2


def test_size_agnostic_cnn_runs_at_its_small_size_without_img_size_kwarg():
    model = create_model("mobilenetv2_100", img_size=96)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 96, 96)).shape == (1, 1000)


def test_efficientformer_v1_only_runs_at_224():
    with pytest.raises(InputSizeError, match="224"):
        create_model("efficientformer_l1", img_size=448)
    with pytest.raises(InputSizeError):
        create_model("efficientformer_l1", img_size=96)


def test_bad_img_size_is_rejected_with_a_suggestion():
    with pytest.raises(InputSizeError, match="use 64 or 96"):
        create_model("mobilevit_xxs", img_size=80)


# ----------------------------------------------------------------------------------------- timm:NAME
def test_timm_prefix_builds_any_timm_architecture():
    model = create_model("timm:resnet18", img_size=64, num_classes=10)
    assert model.deploy_cfg.family == "timm:resnet"
    assert model.checkpoint_sha256 == "random-init"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_timm_prefix_of_a_registered_name_keeps_its_paper_figures():
    assert resolve("timm:mobilevit_xxs").config.paper == get_model_config("mobilevit_xxs").paper


def test_unknown_timm_name_suggests_close_timm_names():
    with pytest.raises(UnknownModelError) as info:
        resolve("timm:resnet_18")
    assert "timm:resnet18" in info.value.suggestions
    with pytest.raises(UnknownModelError):
        resolve("timm:")


def test_weights_are_never_downloaded():
    with pytest.raises(UnsupportedOptionError, match="checkpoint"):
        create_model("mobilenetv2_100", pretrained=True, img_size=64)


def test_timm_checkpoint_round_trip(tmp_path):
    src = create_model("mobilenetv3_large_075", img_size=64)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    dst = create_model("mobilenetv3_large_075", checkpoint=path, img_size=64)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    assert len(dst.checkpoint_sha256) == 64


# ------------------------------------------------------------------------------------- user's model
USER_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    def tiny(num_classes=1000):
        return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, num_classes))

    NOT_CALLABLE = 3
""")


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(USER_FILE)
    return path


def test_user_model_from_a_file(user_file):
    model = create_model(f"{user_file}:tiny", num_classes=7, img_size=64)
    assert model.deploy_cfg.family == "user" and model.deploy_cfg.num_classes == 7
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_user_model_from_a_module(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    monkeypatch.delitem(sys.modules, "my_net", raising=False)
    model = create_model("my_net:tiny", num_classes=3, img_size=64)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize("ref, match", [
    ("{dir}/missing.py:tiny", "no such file"),
    ("{file}:nope", "no callable 'nope'"),
    ("{file}:NOT_CALLABLE", "no callable"),
    ("no_such_module_xyz:tiny", "cannot import"),
])
def test_user_model_errors_say_what_is_wrong(user_file, ref, match):
    with pytest.raises(UnknownModelError, match=match):
        create_model(ref.format(dir=user_file.parent, file=user_file), img_size=64)


# ------------------------------------------------------------------------------------------ analysis
def test_count_macs_of_known_layers():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, 16) == 8 * 3 * 9 * 16 * 16
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    assert count_macs(lin, 4) == 3 * 4 * 4 * 10


def test_count_macs_counts_fused_attention_like_explicit_matmuls():
    class Fused(torch.nn.Module):
        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)  # (1, HW, C)
            return torch.nn.functional.scaled_dot_product_attention(t, t, t)

    class Explicit(torch.nn.Module):
        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)
            return (t @ t.transpose(1, 2)).softmax(-1) @ t

    assert count_macs(Fused(), 8) == count_macs(Explicit(), 8) == 2 * 64 * 64 * 3


def test_count_macs_restores_training_mode_and_rejects_bad_sizes():
    m = torch.nn.Conv2d(3, 4, 1).train()
    count_macs(m, 8)
    assert m.training
    with pytest.raises(ValueError, match="positive"):
        count_macs(m, 0)


def test_edgevit_xxs_gmacs_match_the_authors():
    assert count_macs(create_model("edgevit_xxs"), 224) / 1e9 == pytest.approx(0.551, abs=5e-4)
