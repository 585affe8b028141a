"""MobileViG / EfficientMod / FcaFormer / VCMamba: build, forward, recorded figures, paper figures, keys."""
from __future__ import annotations

import pytest
import torch
from helpers.zoo_papers_fixtures import ALL_MODELS, FAMILIES, SMALL, SMALLEST, meta_model, small_model  # noqa: F401

from edgevit_deploy.analysis import count_macs
from edgevit_deploy.errors import CheckpointError, InputSizeError
from edgevit_deploy.models import count_params, create_model, get_model_config, list_models
from edgevit_deploy.models import vcmamba as vcm


def _paper_close(ours: float, paper: float) -> bool:
    """Within 2% of the paper, or equal to it at the precision it is printed with (one decimal): the
    papers round e.g. 0.662 GMACs to "0.7", which is 5% away."""
    return abs(ours - paper) <= max(0.02 * paper, 0.05 + 1e-9)


def test_all_registered_with_configs():
    registered = set(list_models())
    for family, names in FAMILIES.items():
        for name in names:
            assert name in registered
            cfg = get_model_config(name)
            assert cfg.family == family
            assert cfg.num_params and cfg.gmacs and cfg.paper is not None
            assert cfg.paper.top1 and cfg.paper.params_m and cfg.paper.gmacs
            assert cfg.input_size == (3, 224, 224) and cfg.size_divisor == 32


@pytest.mark.parametrize("name", ALL_MODELS)
def test_recorded_and_paper_figures_at_224(name):
    """Parameters and GMACs of the default config (224, 1000 classes) equal the recorded figures and are
    within 2% of the paper's (or equal at the paper's printed precision)."""
    cfg = get_model_config(name)
    model = meta_model(name)
    assert count_params(model) == cfg.num_params
    assert _paper_close(cfg.num_params / 1e6, cfg.paper.params_m), (cfg.num_params, cfg.paper.params_m)
    with torch.device("meta"):  # count_macs' input on the meta device too
        gmacs = count_macs(model, 224) / 1e9
        assert gmacs == pytest.approx(cfg.gmacs, rel=5e-3)
        if cfg.family == "vcmamba":  # the paper's counter cannot see the CUDA scan kernel: count its recurrence
            gmacs = _scan_as_recurrence_gmacs(model, 224)
            assert gmacs < cfg.gmacs  # the exported chunked form does more MACs (those are recorded)
    assert _paper_close(gmacs, cfg.paper.gmacs), (gmacs, cfg.paper.gmacs)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_builds_and_runs_at_a_small_input(name, small_model):
    # the smallest variants are built once for the session (the ONNX tests reuse them)
    model = small_model(name) if name in SMALLEST else create_model(name, img_size=SMALL, num_classes=10)
    with torch.no_grad():
        y = model(torch.randn(1, 3, SMALL, SMALL))
    assert y.shape == (1, model.num_classes) and torch.isfinite(y).all()


def _scan_as_recurrence_gmacs(model: torch.nn.Module, img_size: int) -> float:
    """GMACs with the selective scan counted as its recurrence (3 MACs per step, channel and state:
    ``delta*B*u``, the decay update and the ``C . h`` read-out) instead of the chunked form's matmuls."""
    chunked = vcm.PlainMamba2D.scan
    scan_macs = 0

    def counted(self, u, delta, A, B, C, D):
        nonlocal scan_macs
        scan_macs += 3 * u.numel() * A.shape[1]
        return vcm.selective_scan_reference(u, delta, A, B, C, D)

    vcm.PlainMamba2D.scan = counted
    try:
        macs = count_macs(model, img_size)
    finally:
        vcm.PlainMamba2D.scan = chunked
    return (macs + scan_macs) / 1e9


@pytest.mark.parametrize("name,size", [("mobilevig_ti", 96), ("fcaformer_l1", 96), ("vcmamba_s", 96)])
def test_other_input_sizes(name, size):
    model = create_model(name, img_size=size, num_classes=5)
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


def test_fcaformer_rejects_an_input_of_another_size():
    model = create_model("fcaformer_l1", img_size=SMALL)
    with pytest.raises(InputSizeError, match="built for 64x64"):
        model(torch.randn(1, 3, 96, 96))


# authors' key names and shapes, read from their public code (SLDGroup/MobileViG, ma-xu/EfficientMod,
# hkzhang-git/FcaFormer, Wertyuui345/VCMamba)
AUTHOR_KEYS = {
    "mobilevig_ti": {
        "stem.stem.3.weight": (42, 21, 3, 3),
        "local_backbone.0.mlp.mid.weight": (168, 1, 3, 3),
        "local_backbone.0.layer_scale_2": (42, 1, 1),
        "backbone.0.0.graph_conv.nn.0.weight": (512, 512, 1, 1),
        "backbone.0.0.graph_conv.nn.1.running_var": (512,),
        "backbone.1.1.fc2.1.weight": (256,),
        "prediction.1.weight": (512, 256, 1, 1),
        "dist_head.weight": (1000, 512, 1, 1),
    },
    "efficientmod_xxs": {
        "patch_embed.proj.weight": (32, 3, 7, 7),
        "layers.0.blocks.1.mlp.context_layer.context_list.0.weight": (32, 1, 7, 7),
        "layers.0.blocks.1.mlp.fc1.weight": (192, 32),
        "layers.0.blocks.0.gamma_1": (32,),
        "layers.0.downsample.norm.weight": (64,),
        "layers.2.blocks.6.attn.qkv.weight": (3 * 8 * 32, 128),
        "layers.3.blocks.3.mlp.fc2.weight": (256, 1024),
        "head.weight": (1000, 256),
    },
    "fcaformer_l1": {
        "patch_embed.seq.0.c.weight": (32, 3, 3, 3),
        "layer_0.blocks.0.norm.weight": (64,),
        "layer_0.downsample.conv2.bn.running_mean": (128,),
        "layer_2.blocks.0.attention_biases": (6, 196),
        "layer_2.blocks.0.dw_conv.weight": (192, 1, 7, 7),
        "layer_2.blocks.2.s_token_bias": (1, 6, 1, 32),
        "layer_2.blocks.2.s_scale_factors": (1, 32, 1),
        "layer_2.blocks.5.mlp.norm.weight": (192,),
        "layer_3.blocks.1.s_token_bias": (1, 10, 1, 4),
        "norm_head.weight": (320,),
    },
    "vcmamba_s": {
        "patch_embed.0.weight": (16, 3, 3, 3),
        "network.0.0.layer_scale_2": (32, 1, 1),
        "network.1.proj.weight": (64, 32, 3, 3),
        "network.6.3.mlp.mid_norm.running_mean": (1152,),
        "network.6.4.norm.weight": (288,),
        "network.6.4.mamba.in_conv.0.weight": (576, 288, 1, 1),
        "network.6.4.mamba.x_proj.weight": (18 + 32, 576),
        "network.6.4.mamba.dt_proj.bias": (576,),
        "network.6.4.mamba.A_log": (576, 16),
        "network.6.7.mamba.direction_Bs": (5, 16),
        "network.6.7.mamba.out_conv.2.running_var": (288,),
        "pos_embed": (1, 288, 7, 7),
        "dist_head.weight": (1000, 288),
    },
}


@pytest.mark.parametrize("name", SMALLEST)
def test_state_dict_uses_the_authors_key_names(name):
    state = meta_model(name).state_dict()
    for key, shape in AUTHOR_KEYS[name].items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key


@pytest.mark.parametrize("name", SMALLEST)
def test_checkpoint_round_trip_through_the_filter(name, small_model, tmp_path):
    """A checkpoint saved the authors' way (nested under 'model', DataParallel prefix, entries their
    filter drops) loads strictly into a fresh model; a foreign key is refused."""
    src = small_model(name)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    if name == "efficientmod_xxs":
        state["module.dist_head.weight"] = torch.zeros(1000, 256)  # teacher head of a distillation run
    if name == "fcaformer_l1":
        state["module.layer_2.blocks.0.attention_bias_idxs"] = torch.zeros(16, 16, dtype=torch.long)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state, "epoch": 300}, path)
    loaded = create_model(name, checkpoint=path, img_size=SMALL).state_dict()
    assert loaded.keys() == src.state_dict().keys()
    for k, v in src.state_dict().items():
        assert torch.equal(loaded[k], v), k
    torch.save({"model": {**state, "module.extra.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="unexpected"):
        create_model(name, checkpoint=path, img_size=SMALL)


@pytest.mark.parametrize("name,features", [("mobilevig_ti", (2, 256, 2, 2)), ("vcmamba_s", (2, 4, 288))])
def test_distillation_heads_pair_in_training_mean_in_eval(name, features, small_model):
    model = small_model(name)
    feats = torch.randn(*features)
    try:
        with torch.no_grad():
            y = model.forward_head(feats)
            model.training = True  # the top module only: the heads return the pair, the layers stay in eval
            cls, dist = model.forward_head(feats)
    finally:
        model.training = False
    assert cls.shape == dist.shape == y.shape == (2, 1000)
    assert not torch.allclose(cls, dist)
    torch.testing.assert_close(y, (cls + dist) / 2)


def _fca_layer_as_authors(layer, x):
    """FcaLayer.forward as the authors write it: a list of cross-token groups, its last ``cab_max_d``
    entries concatenated anew for every block."""
    cross = []
    for i, blk in enumerate(layer.blocks):
        x, s = blk(x, torch.cat(cross[-layer.cab_max_d:], dim=1) if i > 0 else None)
        if s is not None:
            cross.append(s)
    return layer.downsample(x, layer.resolution) if layer.downsample is not None else x


@pytest.mark.parametrize("depth,cab_max_d", [(6, 12), (5, 2), (4, 1)])
def test_fcaformer_running_cross_tokens_equal_the_authors_list(depth, cab_max_d):
    """The running concatenation (one consumer per cross-token group, what int8 TFLite needs) gives the
    authors' tensor, also past ``cab_max_d`` where the oldest groups are dropped (a block's cross-token
    bias is sized for ``min(inner_depth, cab_max_d)`` groups, so a wrong drop fails on shapes)."""
    from edgevit_deploy.models.fcaformer import FcaLayer

    torch.manual_seed(0)
    layer = FcaLayer(32, 32, (8, 8), depth, 2, 2.0, [0.0] * depth, downsample=False, cab_max_d=cab_max_d).eval()
    for p in layer.parameters():  # non-zero biases and layer scales, so every cross-token group matters
        if p.dim() == 1 and p.numel() == 32:
            p.data.uniform_(0.5, 1.5)
        else:
            torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        ours, theirs = layer(x), _fca_layer_as_authors(layer, x)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-5)
