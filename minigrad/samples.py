"""Four small sample photographs shipped with the package (see ``minigrad/data/LICENSES.md``).

======================  ==========  ==============================================
name                    H x W       source / licence
======================  ==========  ==============================================
``astronaut``           256 x 256   NASA, public domain (crop of scikit-image's)
``chelsea``             203 x 301   Stefan van der Walt, CC0 (crop)
``coffee``              160 x 240   Rachel Michetti, CC0 (crop)
``rocket``              171 x 256   SpaceX, public domain (resized)
======================  ==========  ==============================================

The astronaut, chelsea and coffee crops are the exact images behind the VLFeat reference
outputs in ``tests/data/vlfeat/``.
"""
from pathlib import Path

import numpy as np

_DATA = Path(__file__).resolve().parent / "data"
_NAMES = ("astronaut", "chelsea", "coffee", "rocket")


def names():
    """The sample names, in a fixed order."""
    return list(_NAMES)


def path(name):
    """Path of the PNG file of sample ``name``."""
    if name not in _NAMES:
        raise ValueError(f"unknown sample image {name!r}; valid names: {', '.join(_NAMES)}")
    return _DATA / f"{name}.png"


def load(name):
    """Sample ``name`` as a uint8 array of shape (H, W, 3), RGB."""
    from PIL import Image

    with Image.open(path(name)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
