"""Sample images: loading, names, sizes, licences, and their identity with the VLFeat inputs."""
from pathlib import Path

import numpy as np
import pytest

from minigrad import samples

REF = Path(__file__).resolve().parent / "data" / "vlfeat"  # VLFeat's inputs and outputs
SHAPES = {"astronaut": (256, 256, 3), "chelsea": (203, 301, 3), "coffee": (160, 240, 3),
          "rocket": (171, 256, 3)}


def test_names():
    assert samples.names() == ["astronaut", "chelsea", "coffee", "rocket"]


@pytest.mark.parametrize("name", list(SHAPES))
def test_load_shape_dtype_and_size(name):
    img = samples.load(name)
    assert img.dtype == np.uint8 and img.shape == SHAPES[name]
    assert img.std() > 20  # a photograph, not a constant image
    p = samples.path(name)
    assert p.suffix == ".png" and p.stat().st_size < 200_000


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown sample image 'lena'.*astronaut, chelsea"):
        samples.load("lena")
    with pytest.raises(ValueError, match="valid names"):
        samples.path("nope")


def test_licences_listed():
    text = (Path(samples.__file__).parent / "data" / "LICENSES.md").read_text()
    for name in SHAPES:
        assert f"`{name}.png`" in text
    assert "public domain" in text and "CC0" in text


def _grey(img):
    return img.astype(np.float64) / 255 @ np.array([0.2125, 0.7154, 0.0721]) * 255


@pytest.mark.parametrize("name,ref", [("astronaut", "astronaut_grey_256x256.npz"),
                                      ("chelsea", "chelsea_grey_203x301.npz")])
def test_grey_samples_equal_vlfeat_reference_images(name, ref):
    expected = np.load(REF / ref, allow_pickle=False)["image"]
    np.testing.assert_allclose(_grey(samples.load(name)), expected, atol=1e-3)


def test_coffee_equals_vlfeat_reference_image():
    expected = np.load(REF / "coffee_rgb_160x240.npz", allow_pickle=False)["image"]
    np.testing.assert_array_equal(samples.load("coffee").transpose(2, 0, 1), expected)
