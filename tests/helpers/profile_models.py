"""The small real models of the per-op profile and delegate-coverage tests (test_profiles.py, test_coverage.py):
the same 2-conv net as test_adb_standin.py's, exported with torch.onnx and litert_torch at 64x64."""

from __future__ import annotations

from pathlib import Path

IMG = 64
#: nodes of the net once in LiteRT (TRANSPOSE, PAD, CONV_2D, PAD, CONV_2D, MEAN, FULLY_CONNECTED) and in ONNX
TFLITE_NODES = 7


def export_tiny_models(out: Path) -> dict[str, Path]:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    x = torch.randn(1, 3, IMG, IMG)
    torch.onnx.export(net, (x,), str(out / "tiny.onnx"), dynamo=False, opset_version=17)
    import litert_torch

    litert_torch.convert(net, (x,)).export(str(out / "tiny.tflite"))
    return {"onnx": out / "tiny.onnx", "tflite": out / "tiny.tflite"}
