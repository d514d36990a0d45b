"""What HOG and dense SIFT share: the constant cache, the grey input space and the gradient
filter banks.

Both feature networks read a grey (or colour) image mapped to the papers' input space
255·gray − 128, and both start with central differences [-1, 0, 1] along x and y: HOG
without the 1/2 factor (as VLFeat's vl_hog), dense SIFT with it (as vl_dsift).
"""
from minigrad import backend
from minigrad.tensor import Tensor

_CACHE = {}


def cached_constant(key, build, device, dtype):
    """A filter bank built once on the host by ``build()``, per (key, device, dtype)."""
    full = (key, device, str(dtype))
    if full not in _CACHE:
        _CACHE[full] = backend.to_device(build().astype(dtype), device)
    return _CACHE[full]


def gradient_bank(channels):
    """(2·C, 1, 3, 3) filters [dx, dy] per channel (central differences, no 1/2): what
    ``features_ops.CentralDifferences`` computes, kept for the PyTorch reference and tests."""
    np = backend.np
    d = np.zeros((2, 1, 3, 3))
    d[0, 0, 1] = [-1, 0, 1]
    d[1, 0, :, 1] = [-1, 0, 1]
    return np.tile(d, (channels, 1, 1, 1))


def half_gradient_bank():
    """(2, 1, 3, 3): [dx/2, dy/2], dx = [-1, 0, 1] along the row."""
    np = backend.np
    d = np.zeros((2, 1, 3, 3))
    d[0, 0, 1] = [-0.5, 0, 0.5]
    d[1, 0, :, 1] = [-0.5, 0, 0.5]
    return d


# --- images in and out ----------------------------------------------------------------------
def rgb_to_gray(image):
    """ITU-R 709 luma, as scikit-image's rgb2gray (which made the reference images)."""
    np = backend.np
    return image[..., :3].astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])


def preprocess_image(image, channels, device="cpu"):
    """uint8 HxW or HxWx3 -> float32 Tensor (1, C, H, W) = 255·gray − 128 (gray in [0, 1])."""
    np = backend.np
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {a.shape}")
    scale = 255.0 / np.iinfo(a.dtype).max if a.dtype.kind in "ui" else 255.0
    if channels == 1:
        a = rgb_to_gray(a) if a.ndim == 3 else a.astype(np.float64)
        x = (a * scale)[None, None]
    else:
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        x = (a[..., :3].astype(np.float64) * scale).transpose(2, 0, 1)[None]
    return Tensor(backend.to_device((x - 128.0).astype(np.float32), device))


def deprocess_image(x):
    """(1, C, H, W) or (C, H, W) in the input space -> uint8 HxW (grey) or HxWx3."""
    np = backend.np
    a = backend.asnumpy(backend.unwrap(x))
    if a.ndim == 4:
        a = a[0]
    a = np.clip(np.rint(a + 128.0), 0, 255).astype(np.uint8)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
