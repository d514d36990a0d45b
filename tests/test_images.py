"""minigrad.images: conversions with notes, EXIF, size limits, errors, atomic writes, drawing."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from minigrad import images as im


def test_rgb_passes_through(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    b, notes = im.read_image(tmp_path / "a.png")
    assert np.array_equal(a, b) and notes == []


@pytest.mark.parametrize("mode,word", [("L", "grey"), ("P", "palette"), ("RGBA", "alpha"),
                                       ("LA", "alpha"), ("CMYK", "CMYK")])
def test_modes_are_converted_and_noted(tmp_path, mode, word):
    img = Image.new("RGB", (9, 7), (200, 100, 50)).convert(mode)
    p = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    img.save(p)
    a, notes = im.read_image(p)
    assert a.shape == (7, 9, 3) and a.dtype == np.uint8
    assert any(word in n for n in notes), notes


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    b, _ = im.read_image(tmp_path / "t.png")
    assert np.all(b == 255)


def test_16bit_scaled(tmp_path):
    a = np.array([[0, 65535], [32768, 257]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    b, notes = im.read_image(tmp_path / "g16.png")
    assert b.shape == (2, 2, 3)
    np.testing.assert_array_equal(b[:, :, 0], [[0, 255], [128, 1]])
    assert any("16-bit" in n for n in notes)


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)
    a[0, 0] = 255  # top-left marker
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    b, notes = im.read_image(tmp_path / "r.jpg")
    assert b.shape == (6, 4, 3) and any("EXIF" in n for n in notes)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(im.ImageReadError, match="nope.png.*no such file"):
        im.read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(im.ImageReadError, match="bad.png"):
        im.read_image(bad)
    with pytest.raises(im.ImageReadError, match="directory"):
        im.read_image(tmp_path)


def test_size_limit_before_decoding_and_resize(tmp_path):
    Image.new("RGB", (400, 300)).save(tmp_path / "big.png")
    with pytest.raises(im.ImageReadError, match=r"400x300.*limit of 0 megapixels.*--resize"):
        im.read_image(tmp_path / "big.png", max_pixels=100_000)
    a, notes = im.read_image(tmp_path / "big.png", max_pixels=100_000, resize=100)
    assert a.shape == (75, 100, 3) and any("resized" in n for n in notes)


def test_atomic_writes(tmp_path):
    im.save_png(tmp_path / "x.png", np.zeros((3, 4), np.uint8))
    im.save_json(tmp_path / "x.json", {"a": np.float32(1.5), "b": [1, 2]})
    im.save_csv(tmp_path / "x.csv", ["a", "b"], [[1, 2], [3, 4]])
    assert Image.open(tmp_path / "x.png").size == (4, 3)
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5, "b": [1, 2]}
    assert list(csv.reader(open(tmp_path / "x.csv"))) == [["a", "b"], ["1", "2"], ["3", "4"]]
    with pytest.raises(RuntimeError):
        with im.atomic_open(tmp_path / "y.txt", "w") as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["x.csv", "x.json", "x.png"]


def test_grid_and_plot():
    tiles = [np.zeros((10, 20, 3), np.uint8), np.full((5, 5), 255, np.uint8)]
    g = im.grid(tiles, ["a", "b"], cell=40, title="t")
    assert g.dtype == np.uint8 and g.ndim == 3 and g.shape[1] == 2 * 46 + 6
    assert g.min() == 0  # the black tile is there
    p = im.plot_curves({"e": [10.0, 1.0, 0.1], "z": [0.0, -1.0, float("nan")]}, title="x")
    assert p.shape == (400, 640, 3) and (p != 255).any()
