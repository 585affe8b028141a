"""EdgeViT XXS / XS / S against the authors' implementation: keys, shapes, counts, GMACs, logits."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from edgevit_deploy.analysis import count_macs
from edgevit_deploy.errors import CheckpointError, InputSizeError, UnknownModelError
from edgevit_deploy.models import count_params, create_model, get_model_config, list_models

VARIANTS = ("edgevit_xxs", "edgevit_xs", "edgevit_s")
ARCH = {  # widths, depths, head dim: from the paper / the authors' code
    "edgevit_xxs": ((36, 72, 144, 288), (1, 1, 3, 2), 36),
    "edgevit_xs": ((48, 96, 240, 384), (1, 1, 3, 1), 48),
    "edgevit_s": ((48, 96, 240, 384), (1, 2, 5, 3), 48),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_keys_shapes_and_order_match_authors(name, official_manifest):
    ref = official_manifest[name]["state_dict"]
    ours = create_model(name).state_dict()
    assert list(ours) == list(ref)
    mismatched = {k: (list(v.shape), ref[k]) for k, v in ours.items() if list(v.shape) != ref[k]}
    assert not mismatched


@pytest.mark.parametrize("name", VARIANTS)
def test_param_count_and_gmacs_match_authors(name, official_manifest):
    m = create_model(name)
    assert count_params(m) == official_manifest[name]["num_params"] == get_model_config(name).num_params
    gmacs = count_macs(m, 224) / 1e9
    assert gmacs == pytest.approx(official_manifest[name]["gmacs_224"], abs=5e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_authors_checkpoint_loads_strict(name, official_manifest, tmp_path):
    """A state dict with exactly the authors' keys and shapes (what their code saves) loads strictly."""
    g = torch.Generator().manual_seed(1)
    state = {k: (torch.randn(shape, generator=g) if shape else torch.tensor(3))
             for k, shape in official_manifest[name]["state_dict"].items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    path = tmp_path / "authors.pth"
    torch.save({"model": state}, path)  # the authors' training script nests it under "model"
    m = create_model(name, checkpoint=path)
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k]), k
    m.load_state_dict(state, strict=True)
    assert len(m.checkpoint_sha256) == 64


def _functional_edgevit(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """An independent, functional transcription of the authors' forward pass, from the state dict alone."""
    widths, depths, head_dim = ARCH[name]
    ratios = (4, 2, 2, 1)

    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, 1e-5)

    def ln(t, p, eps):
        return F.layer_norm(t, t.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)

    def conv(t, p, groups=1, stride=1, padding=0):
        return F.conv2d(t, sd[p + ".weight"], sd[p + ".bias"], stride, padding, 1, groups)

    for s in range(4):
        p = f"patch_embed{s + 1}"
        k = 4 if s == 0 else 2
        x = conv(x, p + ".proj", stride=k)
        B, C, H, W = x.shape
        x = ln(x.flatten(2).transpose(1, 2), p + ".norm", 1e-5).reshape(B, H, W, C).permute(0, 3, 1, 2)
        r, heads = ratios[s], widths[s] // head_dim
        for b in range(depths[s]):
            q = f"blocks{s + 1}.{b}"
            if r > 1:
                a = q + ".LocalAgg"
                x = x + conv(x, a + ".pos_embed", groups=C, padding=1)
                x = x + conv(conv(conv(bn(x, a + ".norm1"), a + ".conv1"), a + ".attn", groups=C, padding=2),
                             a + ".conv2")
                x = x + conv(F.gelu(conv(bn(x, a + ".norm2"), a + ".mlp.fc1")), a + ".mlp.fc2")
            a = q + ".SelfAttn"
            x = x + conv(x, a + ".pos_embed", groups=C, padding=1)
            t = x.flatten(2).transpose(1, 2)
            y = ln(t, a + ".norm1", 1e-6)
            if r > 1:
                y = y.transpose(1, 2).reshape(B, C, H, W)[:, :, ::r, ::r].flatten(2).transpose(1, 2)
            qkv = F.linear(y, sd[a + ".attn.qkv.weight"], sd[a + ".attn.qkv.bias"])
            qkv = qkv.reshape(B, -1, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
            att = (qkv[0] @ qkv[1].transpose(-2, -1) * (C // heads) ** -0.5).softmax(-1)
            y = (att @ qkv[2]).transpose(1, 2).reshape(B, -1, C)
            if r > 1:
                y = y.transpose(1, 2).reshape(B, C, H // r, W // r)
                y = F.conv_transpose2d(y, sd[a + ".attn.LocalProp.weight"], sd[a + ".attn.LocalProp.bias"],
                                       stride=r, groups=C)
                y = ln(y.flatten(2).transpose(1, 2), a + ".attn.norm", 1e-5)
            t = t + F.linear(y, sd[a + ".attn.proj.weight"], sd[a + ".attn.proj.bias"])
            m = F.gelu(F.linear(ln(t, a + ".norm2", 1e-6), sd[a + ".mlp.fc1.weight"], sd[a + ".mlp.fc1.bias"]))
            t = t + F.linear(m, sd[a + ".mlp.fc2.weight"], sd[a + ".mlp.fc2.bias"])
            x = t.transpose(1, 2).reshape(B, C, H, W)
    x = bn(x, "norm").flatten(2).mean(-1)
    return F.linear(x, sd["head.weight"], sd["head.bias"])


@pytest.mark.parametrize("name,size", [("edgevit_xxs", 224), ("edgevit_xs", 64), ("edgevit_s", 96)])
def test_logits_equal_functional_transcription_of_authors_code(name, size):
    torch.manual_seed(0)
    m = create_model(name, img_size=size)
    for mod in m.modules():  # non-trivial BN statistics so that every term matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours = m(x)
        ref = _functional_edgevit(m.state_dict(), name, x)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [32, 64, 160, 256])
def test_any_multiple_of_32_works(size):
    m = create_model("edgevit_xxs", img_size=size)
    with torch.no_grad():
        assert m(torch.randn(1, 3, size, size)).shape == (1, 1000)
    assert m.deploy_cfg.input_size == (3, size, size)


def test_size_not_multiple_of_32_is_a_clear_error():
    with pytest.raises(InputSizeError, match=r"not a multiple of 32; use 96 or 128"):
        create_model("edgevit_xxs", img_size=100)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError) as e:
        create_model("edgevit_xxxs")
    assert "edgevit_xxs" in e.value.suggestions
    assert "--list-models" in str(e.value)


def test_list_models_pattern():
    assert list_models("edgevit_*") == ["edgevit_s", "edgevit_xs", "edgevit_xxs"]


def test_preprocessing_config_is_carried():
    cfg = create_model("edgevit_xs", img_size=160).deploy_cfg
    assert cfg.input_size == (3, 160, 160)
    assert cfg.mean == pytest.approx((0.485, 0.456, 0.406)) and cfg.interpolation == "bicubic"
    assert 0 < cfg.crop_pct <= 1


def test_checkpoint_round_trip_strict(tmp_path):
    torch.manual_seed(3)
    src = create_model("edgevit_xxs", img_size=64)
    path = tmp_path / "ck.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    dst = create_model("edgevit_xxs", img_size=64, checkpoint=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_checkpoint_with_other_head_is_dropped_with_warning(tmp_path, caplog):
    src = create_model("edgevit_xxs", num_classes=10)
    path = tmp_path / "ten.pth"
    torch.save(src.state_dict(), path)
    with caplog.at_level(logging.WARNING):
        m = create_model("edgevit_xxs", checkpoint=path)
    assert m.head.out_features == 1000
    assert "dropping the classifier" in caplog.text and "head.weight" in caplog.text
    torch.testing.assert_close(m.patch_embed1.proj.weight, src.patch_embed1.proj.weight)


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    state = create_model("edgevit_xxs").state_dict()
    state.pop("norm.weight")
    state["extra.layer"] = torch.zeros(1)
    state["patch_embed1.proj.weight"] = torch.zeros(36, 3, 2, 2)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        create_model("edgevit_xxs", checkpoint=path)
    assert e.value.missing == ["norm.weight"] and e.value.unexpected == ["extra.layer"]
    assert "patch_embed1.proj.weight" in str(e.value) and "missing keys" in str(e.value)


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("edgevit_xxs", checkpoint=tmp_path / "nope.pth")


def test_pickled_object_checkpoint_is_refused(tmp_path):
    """weights_only=True: a checkpoint that needs arbitrary unpickling is rejected, not executed."""
    path = tmp_path / "evil.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a whole module, not a state dict
    with pytest.raises(CheckpointError, match="weights_only"):
        create_model("edgevit_xxs", checkpoint=path)


def test_random_init_is_reproducible():
    """Artifacts exported without a checkpoint can be re-verified later: the same weights every time."""
    a, b = create_model("edgevit_xxs", img_size=64), create_model("edgevit_xxs", img_size=64)
    torch.manual_seed(99)  # the caller's RNG state does not matter
    c = create_model("edgevit_xxs", img_size=64)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]) and torch.equal(v, c.state_dict()[k]), k
    assert a.checkpoint_sha256 == "random-init"
