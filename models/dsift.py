"""Dense SIFT (4×4 spatial bins × 8 orientations = 128-D) as a network of minigrad ops,
matching VLFeat's ``vl_dsift`` (Gaussian window, windowSize 2, bounds = whole image).

Layers (one, ``"dsift"``), for a grey input x (N, 1, H, W) in the papers' input space:

1. **Gradient**: (x[+1] − x[−1])/2 in the interior, one-sided differences x[1] − x[0] and
   x[L−1] − x[L−2] on the first/last row and column (VLFeat). Implemented as the 3×3 filter
   bank [dx/2, dy/2] on the image padded by linear extrapolation (2·x[0] − x[1]).
2. **Orientation binning**: 8 directed bins at 2πt/8, bilinear in the angle; the angle uses
   VLFeat's fast cubic atan2 approximation by default (``fast_atan=True``; max error 0.0061
   rad), so that the descriptors match VLFeat; ``fast_atan=False`` uses the exact atan2.
3. **Spatial bins**: for spatial bin i (0..3) along each axis, a filter of 2b−1 taps
   k_i(u) = (1 − |u|/b)·exp(−(u + b(i − 1.5))²/(2σ²)), σ = 2b (Gaussian window σ = 2 bins,
   centred on the descriptor), applied with edge-replicate padding (VLFeat's "padding by
   continuity"), sampled at the bin centres. The 4 filters of an axis form one bank of length
   5b − 1 and stride ``step`` (``StridedFilterBank1d``, once along y and once along x).
4. **Normalisation** (``SiftNormalize``): L2 (norm + FLT_EPSILON), clamp 0.2, L2 again.

Geometry: frame (r, c) has its upper-left bin centre at pixel (x, y) = (c·step, r·step) and
its centre at (c·step + 1.5b, r·step + 1.5b) (0-based (column, row)); there are
cols = (W − 1 − 3b)//step + 1 by rows = (H − 1 − 3b)//step + 1 frames.
Output (N, 128, rows, cols); channel = t + 8·bx + 32·by (VLFeat's element order: orientation
fastest, then x bin, then y bin). ``to_vlfeat`` gives VLFeat's (rows·cols, 128) array with
frames ordered x fastest, and ``frames`` their centres.
"""
from minigrad import F, backend
from minigrad.tensor import Tensor

from .base import Representation
from .features_common import cached_constant, deprocess_image, preprocess_image
from .features_ops import (
    CentralDifferences,
    OrientationBinning,
    SiftNormalize,
    StridedFilterBank1d,
)


def spatial_bank(bin_size, num_bins=4, window_size=2.0):
    """(num_bins, (num_bins + 1)·b − 1) correlation filters: row i holds k_i at offset i·b.

    k_i(u) = (1 − |u|/b)·exp(−½((u + δ_i)/σ)²), u = −(b−1)..(b−1), δ_i = b·(i − (n−1)/2),
    σ = b·window_size: VLFeat's kernel for bin i, flipped (VLFeat convolves)."""
    np = backend.np
    b = bin_size
    u = np.arange(-b + 1, b)
    bank = np.zeros((num_bins, (num_bins + 1) * b - 1))
    sigma = b * window_size
    for i in range(num_bins):  # four spatial bins
        delta = b * (i - 0.5 * (num_bins - 1))
        bank[i, i * b:i * b + 2 * b - 1] = (1 - np.abs(u) / b) * np.exp(
            -0.5 * ((u + delta) / sigma) ** 2)
    return bank


def extrapolate_pad(x):
    """Pad H and W by one sample of linear extrapolation, 2·x[0] − x[1] (and at the end), so
    that a central difference there equals VLFeat's one-sided difference."""
    left = 2 * x[:, :, :, 0:1] - x[:, :, :, 1:2]
    right = 2 * x[:, :, :, -1:] - x[:, :, :, -2:-1]
    x = F.concat([left, x, right], dim=3)
    top = 2 * x[:, :, 0:1] - x[:, :, 1:2]
    bottom = 2 * x[:, :, -1:] - x[:, :, -2:-1]
    return F.concat([top, x, bottom], dim=2)


def num_frames(size, bin_size, step):
    return (size - 1 - 3 * bin_size) // step + 1


class DSIFT(Representation):
    """Dense SIFT with VLFeat's defaults; ``bin_size`` b and ``step`` (default b) in pixels."""

    kind = "dsift"
    name = "dsift"
    layers = ("dsift",)
    input_size = None
    channels = 1

    def __init__(self, bin_size=8, step=None, fast_atan=True, renormalize=True,
                 normalize=True, window_size=2.0, device="cpu"):
        if bin_size < 1 or (step is not None and step < 1):
            raise ValueError(f"bin_size and step must be >= 1, got {bin_size}, {step}")
        self.bin_size = int(bin_size)
        self.step = int(step) if step is not None else self.bin_size
        self.fast_atan = bool(fast_atan)
        self.renormalize = bool(renormalize)
        self.normalize = bool(normalize)
        self.window_size = float(window_size)
        self.device = backend.check_device(device)

    def output_shape(self, layer="dsift", hw=None):
        """(128, rows, cols) for an image of size ``hw`` = (H, W) (required: any size works)."""
        self.check_layer(layer)
        height, width = self._size(hw)
        b, s = self.bin_size, self.step
        return 128, num_frames(height, b, s), num_frames(width, b, s)

    def forward(self, x, layer="dsift"):
        self.check_layer(layer)
        x = x if isinstance(x, Tensor) else Tensor(x)
        N, C, H, W = x.shape
        b, step = self.bin_size, self.step
        if C != 1:
            raise ValueError(f"dsift expects a grey input (N, 1, H, W), got {x.shape}")
        rows, cols = num_frames(H, b, step), num_frames(W, b, step)
        if rows < 1 or cols < 1:
            raise ValueError(f"dsift with bin_size {b} needs an image of at least {3 * b + 1} "
                             f"pixels per side, got {H}x{W}")
        dev, dt = x.device, x.dtype
        g = CentralDifferences.apply(extrapolate_pad(x), scale=0.5)  # (N, 2, H, W)
        votes = OrientationBinning.apply(g[:, 0:1], g[:, 1:2], num_bins=8, bilinear=True,
                                         fast_atan=self.fast_atan)  # (N, 8, H, W)
        spatial = cached_constant(("bins", b, self.window_size),
                          lambda: spatial_bank(b, 4, self.window_size), dev, dt)
        K = spatial.shape[1]
        before = b - 1  # bin 0 of frame 0 is centred on pixel 0; its filter starts at −(b−1)
        pad_x = (before, (cols - 1) * step + K - before - W)
        pad_y = (before, (rows - 1) * step + K - before - H)
        h = StridedFilterBank1d.apply(votes, weight=spatial, stride=step, pad=pad_y,
                                      mode="edge", axis=-2)  # (N, 8·4, rows, W): t·4 + by
        h = StridedFilterBank1d.apply(h, weight=spatial, stride=step, pad=pad_x, mode="edge",
                                      axis=-1)  # (N, 128, rows, cols): (t·4 + by)·4 + bx
        h = h.reshape(N, 8, 4, 4, rows, cols).permute(0, 2, 3, 1, 4, 5)  # (N, by, bx, t, ...)
        h = h.reshape(N, 128, rows, cols)  # channel t + 8·bx + 32·by
        if not self.normalize:
            return h
        return SiftNormalize.apply(h, renormalize=self.renormalize)

    def frames(self, height, width):
        """(rows·cols, 2) descriptor centres (x, y), 0-based pixels, x fastest (VLFeat)."""
        np = backend.np
        b, s = self.bin_size, self.step
        rows, cols = num_frames(height, b, s), num_frames(width, b, s)
        ys, xs = np.meshgrid(np.arange(rows) * s + 1.5 * b, np.arange(cols) * s + 1.5 * b,
                             indexing="ij")
        return np.stack([xs.ravel(), ys.ravel()], axis=1)

    def to_vlfeat(self, features):
        """(1, 128, rows, cols) -> VLFeat's (rows·cols, 128) descriptors, frames x fastest."""
        f = backend.asnumpy(backend.unwrap(features))[0]
        return f.reshape(128, -1).T

    # --- interface ----------------------------------------------------------------------------
    def preprocess(self, image):
        return preprocess_image(image, 1, self.device)

    def deprocess(self, x):
        return deprocess_image(x)

    def receptive_field(self, layer="dsift"):
        """One descriptor reads 5b − 1 pixels of votes (4 bins + a tent each side) plus the
        gradient's pixel each side: 5b + 1 pixels, stride ``step``."""
        self.check_layer(layer)
        return 5 * self.bin_size + 1, self.step

    def to(self, device):
        self.device = backend.check_device(device)
        return self


def dsift(weights=None, bin_size=8, step=None, fast_atan=True, renormalize=True,
          device="cpu"):
    """Dense SIFT (``weights`` is ignored); b = 5 is the CVPR15 setting, b = 8 the IJCV16 one."""
    return DSIFT(bin_size=bin_size, step=step, fast_atan=fast_atan, renormalize=renormalize,
                 device=device)

