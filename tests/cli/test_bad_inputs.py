"""Bad input beyond docs/errors.md's table: the library API's checks, warnings shown by the CLI, calibration
folders with a decompression bomb among good images, and the ONNX opset range of the target table."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import edgevit_deploy
from edgevit_deploy.converters.table import ONNX_OPSETS
from edgevit_deploy.errors import InputSizeError
from edgevit_deploy.models import create_model, get_model_config
from edgevit_deploy.models._registry import MAX_IMG_SIZE
from edgevit_deploy.quantize.base import CalibrationDataError
from edgevit_deploy.quantize.calibration import check_calib_folder, load_calibration

CFG = get_model_config("edgevit_xxs").with_img_size(32)


@pytest.mark.parametrize("size", [0, -32, MAX_IMG_SIZE + 32])
def test_create_model_rejects_sizes_outside_1_to_the_maximum(size):
    with pytest.raises(InputSizeError, match="positive multiple of 32|larger than the maximum"):
        create_model("edgevit_xxs", img_size=size)


@pytest.mark.parametrize("n", [0, -1])
def test_create_model_rejects_class_counts_below_one(n):
    with pytest.raises(InputSizeError, match="--num-classes must be at least 1"):
        create_model("edgevit_xxs", num_classes=n)


def test_export_of_a_module_rejects_img_size_0_before_creating_out(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with pytest.raises(InputSizeError, match="positive multiple of 32"):
        edgevit_deploy.export(model, "onnx", tmp_path / "out", img_size=0)
    with pytest.raises(InputSizeError, match="--num-classes"):
        edgevit_deploy.export(model, "onnx", tmp_path / "out", num_classes=0)
    assert not (tmp_path / "out").exists()


def test_onnx_opset_range_is_torchs():
    from torch.onnx import _constants

    assert ONNX_OPSETS == (17, _constants.ONNX_MAX_OPSET)


def test_cli_shows_the_dropped_classifier_warning_once_on_stderr(tmp_path, restore_logging):
    from edgevit_deploy.cli.export_cmd import main

    torch.save(create_model("edgevit_xxs", num_classes=10, img_size=64).state_dict(), tmp_path / "ten.pth")
    r = CliRunner().invoke(main, ["-m", "edgevit_xxs", "-t", "onnx", "--img-size", "64", "--checkpoint",
                                  str(tmp_path / "ten.pth"), "--no-verify", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if "dropping the classifier" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: edgevit_xxs: dropping the classifier"), r.stderr
    assert "head.weight" in lines[0]
    # nothing else on stderr but the toolkit's own one-line warnings (no third-party log chatter)
    assert all(line.startswith("warning: ") for line in r.stderr.splitlines() if line.strip()), r.stderr


def _images(folder, n, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


def _bomb(path):
    """A real PNG of 3000 x 3000 pixels (9 M): a decompression bomb once PIL's limit is lowered to 1 M."""
    Image.new("RGB", (3000, 3000)).save(path)


def test_decompression_bombs_and_broken_files_are_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # 3000 x 3000 is over twice the limit
    _images(tmp_path, 3)
    _bomb(tmp_path / "huge.png")
    (tmp_path / "broken.jpg").write_text("not a jpeg")
    with caplog.at_level(logging.WARNING):
        calib, held = load_calibration(CFG, tmp_path, calib_size=10)
    # 5 files: one held out by the seeded split, the others calibrate; both sets skip what they cannot read
    assert calib.count + held.count == 3
    assert sorted(calib.skipped_files + held.skipped_files) == ["broken.jpg", "huge.png"]
    assert "decompression bomb" in caplog.text and "huge.png" in caplog.text


def test_a_bomb_between_the_limit_and_twice_it_is_skipped_too(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000_000)  # 9 M pixels: PIL only warns, and would decode it
    _images(tmp_path, 2)
    _bomb(tmp_path / "huge.png")
    with caplog.at_level(logging.WARNING):
        calib, _ = load_calibration(CFG, tmp_path, calib_size=10)  # 3 files: too few to hold any out
    assert calib.count == 2 and calib.skipped_files == ["huge.png"]
    assert "decompression bomb" in caplog.text


def test_a_folder_of_bombs_only_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    tmp_path.joinpath("d").mkdir()
    _bomb(tmp_path / "d" / "huge.png")
    with pytest.raises(CalibrationDataError, match="none of its 1 image files could be read"):
        check_calib_folder(tmp_path / "d")
    with pytest.raises(CalibrationDataError, match="none of its 1 image files could be read"):
        load_calibration(CFG, tmp_path / "d", calib_size=4)
    _images(tmp_path / "d", 1)
    check_calib_folder(tmp_path / "d")  # one good image is enough
