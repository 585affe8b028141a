"""pytest's warning filters (pyproject.toml) silence third-party deprecations by module, never ours: a
DeprecationWarning or FutureWarning raised in edgevit_deploy must reach the test summary."""
from __future__ import annotations

import warnings

import pytest


def _shown(category: type[Warning], module: str, message: str = "old spelling") -> bool:
    """Whether the filters in force for this test (pyproject's, applied by pytest) let the warning through."""
    with warnings.catch_warnings(record=True) as seen:  # keeps the filters, records instead of printing
        warnings.warn_explicit(message, category, filename=f"{module.replace('.', '/')}.py", lineno=1,
                               module=module, registry={})
    return bool(seen)


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_our_deprecations_show(category):
    assert _shown(category, "edgevit_deploy.models._registry")
    assert _shown(category, "edgevit_deploy.converters.onnx")


@pytest.mark.parametrize("module", ["torch.onnx.utils", "torchvision.models", "timm.layers", "onnxruntime.capi",
                                    "coremltools.models._deprecation", "executorch.exir", "litert_torch.convert",
                                    "tensorflow.python.framework"])
def test_third_party_deprecations_are_silenced(module):
    assert not _shown(DeprecationWarning, module)
    assert not _shown(FutureWarning, module)


def test_other_warnings_of_third_parties_still_show():
    assert _shown(UserWarning, "torch.nn.modules.module")
