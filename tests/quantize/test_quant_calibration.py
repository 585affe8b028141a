"""Calibration and held-out sets: built-in photos, folders (flat and ImageFolder), bad input."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from edgevit_deploy.models import get_model_config
from edgevit_deploy.quantize.base import CalibrationDataError
from edgevit_deploy.quantize.calibration import (BUILTIN_CALIB_PHOTOS, BUILTIN_HELD_OUT_PHOTOS, BUILTIN_SOURCE,
                                                 load_calibration)

CFG = get_model_config("edgevit_xxs").with_img_size(32)


def _write_images(folder, n, seed, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(folder / f"img{i}.jpeg")


def test_builtin_default_reaches_n_with_deterministic_views_and_says_so():
    calib, held = load_calibration(CFG, calib_size=20, seed=3)
    again, _ = load_calibration(CFG, calib_size=20, seed=3)
    other, _ = load_calibration(CFG, calib_size=20, seed=4)
    assert calib.data.shape == (20, 3, 32, 32) and calib.data.dtype == np.float32
    np.testing.assert_array_equal(calib.data, again.data)
    assert not np.array_equal(calib.data, other.data)
    assert calib.builtin and calib.provenance()["builtin_default_used"] and calib.source == BUILTIN_SOURCE
    # crops / flips: no two views identical even though there are fewer photos than views
    flat = calib.data.reshape(20, -1)
    assert len({row.tobytes() for row in flat}) == 20


def test_builtin_held_out_photos_are_never_calibration_photos():
    calib, held = load_calibration(CFG, calib_size=40)
    assert set(calib.names).isdisjoint(held.names)
    assert set(held.names) <= set(BUILTIN_HELD_OUT_PHOTOS) and set(calib.names) <= set(BUILTIN_CALIB_PHOTOS)
    assert {"chelsea", "coffee"} <= set(held.names)
    # the held-out batch starts with each photo whole (what the classification checks look at)
    assert held.names[:len(set(held.names))] == list(dict.fromkeys(held.names))


def test_flat_folder_is_split_with_a_seed_and_unreadable_files_are_skipped_with_a_count(tmp_path, caplog):
    _write_images(tmp_path, 12, seed=0)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING):
        calib, held = load_calibration(CFG, tmp_path, calib_size=100, seed=0)
    assert calib.count + held.count + calib.skipped + held.skipped == 13
    assert calib.skipped + held.skipped == 1 and "broken.jpg" in calib.skipped_files + held.skipped_files
    assert set(calib.names).isdisjoint(held.names) and held.count >= 1
    assert "unreadable" in caplog.text
    assert calib.provenance()["builtin_default_used"] is False
    again, _ = load_calibration(CFG, tmp_path, calib_size=100, seed=0)
    assert again.names == calib.names


def test_calib_size_caps_the_sample(tmp_path):
    _write_images(tmp_path, 15, seed=1)
    calib, _ = load_calibration(CFG, tmp_path, calib_size=4)
    assert calib.count == 4


def test_imagefolder_layout_calibrates_on_train_and_holds_out_val(tmp_path):
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("n01440764", "n01443537"):
            _write_images(tmp_path / split / cls, n, seed=hash((split, cls)) % 100)
    calib, held = load_calibration(CFG, tmp_path, calib_size=8)
    assert calib.count == 8 and all(n.startswith("train/") for n in calib.names)
    assert held.count == 6 and all(n.startswith("val/") for n in held.names)


@pytest.mark.parametrize("case", ["missing", "empty", "only_unreadable", "a_file"])
def test_bad_calibration_folders_are_clear_errors(tmp_path, case):
    folder = tmp_path / "calib"
    if case == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("no images here")
    elif case == "only_unreadable":
        folder.mkdir()
        for i in range(3):
            (folder / f"x{i}.png").write_bytes(b"\x00garbage")
    elif case == "a_file":
        folder.write_text("a file, not a folder")
    with pytest.raises(CalibrationDataError) as err:
        load_calibration(CFG, folder, calib_size=4)
    assert str(folder) in str(err.value) and "--calib-data" in str(err.value)


@pytest.mark.parametrize("size", [0, -3])
def test_calib_size_must_be_positive(size):
    with pytest.raises(CalibrationDataError, match="--calib-size"):
        load_calibration(CFG, calib_size=size)
