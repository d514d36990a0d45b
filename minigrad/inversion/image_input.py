"""The one rule for an input image, shared by ``invert(rep, image)`` and the command line.

``as_image(array)`` returns what a representation's ``preprocess`` is given:

* **uint8 only**, values 0–255. A float image is *refused*, never rescaled by a guess
  about its range: its message says how to convert a 0–1 image, and that a precomputed code
  goes in ``code=``. Other integer types are refused the same way.
* (H, W) and (H, W, 1): grey, returned as (H, W). (H, W, 3): RGB, returned as it is.
* (H, W, 2) grey+alpha and (H, W, 4) RGBA are **composited on white**, exactly:
  ``c' = round((c·a + 255·(255 − a)) / 255)`` per channel, the result (H, W) or (H, W, 3).
  ``minigrad.images.read_image`` uses this same function for transparent files.
"""
from ..backend import np
from .presets import InversionError

FLOAT_HINT = ("pass a uint8 image with values 0-255 (a float image in 0-1 converts as "
              "np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)), or a precomputed code "
              "as invert(rep, code=...)")


def composite_on_white(colour, alpha):
    """uint8 ``colour`` (..., C) over opaque white with uint8 ``alpha`` (..., 1), rounded."""
    c = colour.astype(np.uint32)
    a = alpha.astype(np.uint32)
    return ((c * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def as_image(image, name="image"):
    """The uint8 (H, W) or (H, W, 3) array of ``image`` under the rules above."""
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise InversionError(f"{name} must be a uint8 array (H, W) or (H, W, 3), got "
                             f"{type(image).__name__}; {FLOAT_HINT}")
    if image.dtype != np.uint8:
        raise InversionError(f"{name} has dtype {image.dtype}, shape {image.shape}: "
                             f"{FLOAT_HINT}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        if min(image.shape[:2]) < 1:
            raise InversionError(f"{name} is empty (shape {image.shape})")
        return image
    if image.ndim == 3 and image.shape[2] in (2, 4):
        out = composite_on_white(image[:, :, :-1], image[:, :, -1:])
        return out[:, :, 0] if out.shape[2] == 1 else out
    raise InversionError(f"{name} has shape {image.shape}; expected (H, W) grey, (H, W, 3) "
                         "RGB, or (H, W, 2)/(H, W, 4) with alpha")
