"""HOG (UoCTTI variant, 31-D) and HOGb as networks of minigrad ops, matching VLFeat's vl_hog.

Layers (one, ``"hog"``), for an input x of shape (N, C, H, W) in the papers' input space
(255·gray − 128; colour inputs have C = 3):

1. **Gradient**: a 3×3 filter bank [dx, dy], dx = [-1, 0, 1] (no 1/2 factor, as VLFeat),
   applied without padding: pixels on the image border get no gradient (VLFeat skips them).
   Colour: at each pixel the channel with the largest |∇|² (the first one on ties).
2. **Orientation binning** into 2·O = 18 directed bins at angles kπ/O: hard (HOG) or bilinear
   in the angle (HOGb), ``OrientationBinning``.
3. **Spatial pooling**: bilinear splatting into cells = a separable triangular filter of
   length 2s, stride s (``StridedFilterBank1d`` along y then x). Cell (i, j) is centred on
   pixel (s·i + (s−1)/2, s·j + (s−1)/2); hogH = (H + s//2)//s, hogW = (W + s//2)//s.
4. **Normalisation** (``UocttiNormalize``): block energies from undirected histograms,
   1/sqrt(Σ + 1e-4), clamp 0.2, 0.5·sum over the 4 blocks, 4 texture features.

Output (N, 31, hogH, hogW): channels 0–17 directed, 18–26 undirected, 27–30 texture; this is
VLFeat's own (31, hogH, hogW) layout (see ``to_vlfeat``).
"""
import math

from minigrad import F, backend
from minigrad.tensor import Tensor

from .base import Representation
from .features_common import cached_constant, deprocess_image, preprocess_image
from .features_ops import (
    CentralDifferences,
    OrientationBinning,
    StridedFilterBank1d,
    UocttiNormalize,
)


def tent_filter(cell_size):
    """(1, 2s) bilinear-splatting weights: tap i reads pixel s·c − s//2 + i for cell c."""
    np = backend.np
    s = cell_size
    i = np.arange(2 * s)
    return np.maximum(0.0, 1 - np.abs(i + 0.5 - s // 2 - s / 2) / s)[None]


def hog_size(height, width, cell_size):
    """VLFeat's cell counts: the last cell is at least half inside the image."""
    return (height + cell_size // 2) // cell_size, (width + cell_size // 2) // cell_size


def select_strongest_channel(g):
    """g (N, 2·C, h, w) = [gx_0, gy_0, gx_1, ...] -> gx, gy (N, 1, h, w) of the channel with
    the largest gx² + gy² at each pixel (VLFeat: strictly larger wins, so ties keep the first).
    The choice is a constant mask; the gradient flows through the chosen channel."""
    N, C2, h, w = g.shape
    C = C2 // 2
    if C == 1:
        return g[:, 0:1], g[:, 1:2]
    data = g.data.reshape(N, C, 2, h, w)
    xp = backend.get_array_module(data)
    mag2 = (data * data).sum(axis=2)  # (N, C, h, w)
    best = mag2.argmax(axis=1)[:, None]  # first maximum
    mask = (xp.arange(C).reshape(1, C, 1, 1) == best).astype(data.dtype)  # (N, C, h, w)
    gc = g.reshape(N, C, 2, h, w)
    gx = F.sum(gc[:, :, 0] * mask, axis=1, keepdims=True)
    gy = F.sum(gc[:, :, 1] * mask, axis=1, keepdims=True)
    return gx, gy


class HOG(Representation):
    """UoCTTI HOG; ``bilinear=True`` gives HOGb (bilinear orientation assignment)."""

    kind = "hog"
    layers = ("hog",)
    input_size = None

    def __init__(self, cell_size=8, num_orientations=9, bilinear=False, color=False,
                 device="cpu"):
        if cell_size < 1 or num_orientations < 1:
            raise ValueError(f"cell_size and num_orientations must be >= 1, got "
                             f"{cell_size}, {num_orientations}")
        self.cell_size = int(cell_size)
        self.num_orientations = int(num_orientations)
        self.bilinear = bool(bilinear)
        self.channels = 3 if color else 1
        self.name = "hogb" if bilinear else "hog"
        self.device = backend.check_device(device)

    @property
    def dimension(self):
        return 3 * self.num_orientations + 4

    def output_shape(self, layer="hog", hw=None):
        """(3·O + 4, hogH, hogW) for an image of size ``hw`` = (H, W) (required: any size works)."""
        self.check_layer(layer)
        height, width = self._size(hw)
        return (self.dimension,) + hog_size(height, width, self.cell_size)

    def forward(self, x, layer="hog"):
        self.check_layer(layer)
        x = x if isinstance(x, Tensor) else Tensor(x)
        N, C, H, W = x.shape
        s, O = self.cell_size, self.num_orientations
        if H < 4 or W < 4 or H < s or W < s:
            raise ValueError(f"HOG needs an image of at least max(4, cell_size) pixels per side, "
                             f"got {H}x{W} with cell_size {s}")
        dev, dt = x.device, x.dtype
        g = CentralDifferences.apply(x)  # (N, 2C, H-2, W-2): interior pixels only
        gx, gy = select_strongest_channel(g)
        votes = OrientationBinning.apply(gx, gy, num_bins=2 * O, bilinear=self.bilinear)
        hogH, hogW = hog_size(H, W, s)
        tent = cached_constant(("tent", s), lambda: tent_filter(s), dev, dt)
        # the votes start at pixel 1: tap i of cell c reads vote index s·c − s//2 − 1 + i
        before = s // 2 + 1
        pad_x = (before, s * (hogW - 1) + 2 * s - before - (W - 2))
        pad_y = (before, s * (hogH - 1) + 2 * s - before - (H - 2))
        h = StridedFilterBank1d.apply(votes, weight=tent, stride=s, pad=pad_y, axis=-2)
        h = StridedFilterBank1d.apply(h, weight=tent, stride=s, pad=pad_x, axis=-1)
        return UocttiNormalize.apply(h)  # (N, 3·O + 4, hogH, hogW)

    # --- interface ----------------------------------------------------------------------------
    def preprocess(self, image):
        return preprocess_image(image, self.channels, self.device)

    def deprocess(self, x):
        return deprocess_image(x)

    def receptive_field(self, layer="hog"):
        """A cell's value depends on its 3×3 neighbourhood of cells (block normalisation),
        each a 2s-pixel tent, plus one pixel each side for the gradient: 4s + 2 px, stride s."""
        self.check_layer(layer)
        return 4 * self.cell_size + 2, self.cell_size

    def to(self, device):
        self.device = backend.check_device(device)  # filter banks are cached per device
        return self

    def to_vlfeat(self, features):
        """(1, 31, hogH, hogW) -> VLFeat's (31, hogH, hogW) array (the same layout)."""
        return backend.asnumpy(backend.unwrap(features))[0]

    def render(self, features, glyph_size=21):
        """The classic HOG picture (uint8, (hogH·g, hogW·g)): see ``render_hog``."""
        return render_hog(features, self.num_orientations, glyph_size)


# --- glyphs -----------------------------------------------------------------------------------
def glyph_bank(num_orientations, size):
    """(O, size, size) bars: glyph o is a line through the centre at angle oπ/O + π/2 (the
    edge orientation, perpendicular to the gradient bin), drawn by dense sampling."""
    np = backend.np
    O = num_orientations
    glyphs = np.zeros((O, size, size))
    c = (size - 1) / 2
    t = np.linspace(-c, c, 4 * size)
    for o in range(O):  # a handful of orientations
        angle = o * math.pi / O + math.pi / 2
        xs = np.rint(c + t * math.cos(angle)).astype(int)
        ys = np.rint(c + t * math.sin(angle)).astype(int)
        glyphs[o, ys, xs] = 1.0
    return glyphs


def render_hog(features, num_orientations=9, glyph_size=21):
    """HOG features (1, 3·O + 4, h, w) or (3·O + 4, h, w) -> uint8 image (h·g, w·g).

    Each cell shows, for every undirected orientation o, a bar along the corresponding edge
    direction with intensity w_o = f[o] + f[o + O] + f[o + 2·O] (VLFeat's vl_hog_render);
    overlapping bars are clipped to the cell's [min w, max w], then the whole picture is scaled
    to 0..255.
    """
    np = backend.np
    f = backend.asnumpy(backend.unwrap(features))
    f = f[0] if f.ndim == 4 else f
    O = num_orientations
    weights = f[:O] + f[O:2 * O] + f[2 * O:3 * O]  # (O, h, w)
    glyphs = glyph_bank(O, glyph_size)  # (O, g, g)
    img = np.tensordot(weights, glyphs, axes=([0], [0]))  # (h, w, g, g)
    lo = np.minimum(weights.min(axis=0), 0)[:, :, None, None]
    hi = np.maximum(weights.max(axis=0), 0)[:, :, None, None]
    img = np.clip(img, lo, hi)
    h, w = weights.shape[1:]
    img = img.transpose(0, 2, 1, 3).reshape(h * glyph_size, w * glyph_size)  # (h·g, w·g)
    top = img.max()
    img = img / top if top > 0 else img
    return np.clip(np.rint(255 * img), 0, 255).astype(np.uint8)


# --- registry factories -----------------------------------------------------------------------
def hog(weights=None, cell_size=8, num_orientations=9, color=False, device="cpu"):
    """UoCTTI HOG with hard orientation assignment (``weights`` is ignored)."""
    return HOG(cell_size, num_orientations, bilinear=False, color=color, device=device)


def hogb(weights=None, cell_size=8, num_orientations=9, color=False, device="cpu"):
    """UoCTTI HOG with bilinear orientation assignment, differentiable through the angle."""
    return HOG(cell_size, num_orientations, bilinear=True, color=color, device=device)
