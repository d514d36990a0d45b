"""Hand-written ops for HOG and dense SIFT, each with its backward.

* ``OrientationBinning``: gradient (gx, gy) -> per-pixel votes into B directed orientation
  bins, hard (nearest bin) or bilinear in the angle. Bin j is centred at angle 2πj/B, the angle
  being atan2(gy, gx) measured clockwise from the +x axis (image y points down).
* ``StridedFilterBank1d``: a depthwise strided 1-D convolution with a small fixed filter bank
  along the last or second-to-last axis (the triangular/Gaussian spatial pooling of HOG and
  DSIFT, applied once per axis: a separable convolution). Zero or edge-replicate padding.
* ``UocttiNormalize``: UoCTTI block normalisation, clamp at 0.2, projection to 27-D plus the
  4 texture features (VLFeat's ``vl_hog_extract``).
* ``SiftNormalize``: L2 normalise, clamp at 0.2, L2 normalise again (VLFeat's DSIFT).

The composed equivalents (built from minigrad.functional) live in the tests as oracles.
"""
import math

from minigrad import backend
from minigrad.backend import asnumpy, get_array_module
from minigrad.tensor import Function

FLT_EPSILON = 1.1920929e-07  # VLFeat's VL_EPSILON_F


# --- image gradient ----------------------------------------------------------------------------
class CentralDifferences(Function):
    """x (N, C, H, W) -> (N, 2C, H-2, W-2), per channel c the interior pixels' [dx, dy]:

        y[2c]   = s·(x[c, i+1, j+2] − x[c, i+1, j]),   y[2c+1] = s·(x[c, i+2, j+1] − x[c, i, j+1]).

    HOG's (s = 1) and DSIFT's (s = 1/2) [-1, 0, 1] filters as two slice differences: the values
    of the grouped 3×3 conv they replace, to the bit (one rounding of b − a, and s a power of
    two), without its im2col copy and GEMM. Backward: ∂x[c, i+1, j+2] += s·g[2c],
    ∂x[c, i+1, j] −= s·g[2c], and the same along the rows with g[2c+1].
    """

    def forward(self, x, scale=1.0):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        if H < 3 or W < 3:
            raise ValueError(f"central differences need at least 3x3 pixels, got {H}x{W}")
        y = xp.empty((N, C, 2, H - 2, W - 2), dtype=x.dtype)
        xp.subtract(x[:, :, 1:-1, 2:], x[:, :, 1:-1, :-2], out=y[:, :, 0])
        xp.subtract(x[:, :, 2:, 1:-1], x[:, :, :-2, 1:-1], out=y[:, :, 1])
        if scale != 1:
            y *= x.dtype.type(scale)
        self.x_shape, self.scale = x.shape, scale
        return y.reshape(N, 2 * C, H - 2, W - 2)

    def backward(self, g):
        xp = get_array_module(g)
        N, C, H, W = self.x_shape
        g = g.reshape(N, C, 2, H - 2, W - 2)
        if self.scale != 1:
            g = g * g.dtype.type(self.scale)
        gx = xp.zeros((N, C, H, W), dtype=g.dtype)
        gx[:, :, 1:-1, 2:] += g[:, :, 0]
        gx[:, :, 1:-1, :-2] -= g[:, :, 0]
        gx[:, :, 2:, 1:-1] += g[:, :, 1]
        gx[:, :, :-2, 1:-1] -= g[:, :, 1]
        return gx


# --- orientation binning ---------------------------------------------------------------------
def vlfeat_fast_atan2(y, x):
    """VLFeat's ``vl_fast_atan2_f`` (documented cubic approximation, max error 0.0061 rad).

    With a = |y| + eps: r = (x - a)/(x + a), θ0 = π/4 for x >= 0; r = (x + a)/(a - x),
    θ0 = 3π/4 otherwise; θ = θ0 + (0.1821 r² - 0.9675) r, negated when y < 0.
    Returns (θ, dθ/dx, dθ/dy) (the derivatives of this approximation, not of atan2).
    """
    xp = get_array_module(x)
    a = xp.abs(y) + x.dtype.type(FLT_EPSILON)
    pos = x >= 0
    den = xp.where(pos, x + a, a - x)
    r = xp.where(pos, x - a, x + a) / den
    theta0 = xp.where(pos, x.dtype.type(math.pi / 4), x.dtype.type(3 * math.pi / 4))
    angle = theta0 + (x.dtype.type(0.1821) * r * r - x.dtype.type(0.9675)) * r
    sign = xp.where(y < 0, x.dtype.type(-1), x.dtype.type(1))
    dangle_dr = x.dtype.type(3 * 0.1821) * r * r - x.dtype.type(0.9675)
    inv_den2 = 1 / (den * den)
    dr_dx = 2 * a * inv_den2  # the same expression on both branches
    dr_da = -2 * x * inv_den2
    # θ = sign·angle(|y|): dθ/dy = sign·angle'·dr/da·sign = angle'·dr/da
    return sign * angle, sign * dangle_dr * dr_dx, dangle_dr * dr_da


def angle(gx, gy):
    """atan2(gy, gx) in [0, 2π): arctan(gy / gx), plus π where gx's sign bit is set and 2π
    where the result was negative: half the time of arctan2 and a where() on HOG's 510²
    pixels (``python -m benchmarks.bench_idioms``; NumPy's float32 arctan2 is slow). The
    quotient adds one rounding, 6e-8 relative, which moves the angle by at most 3e-8 rad.
    gx = ±0 gives gy / gx = ±inf and ±π/2 as atan2 does; 0/0 is NaN (``OrientationBinning``
    sends it to bin 0, where its zero magnitude votes nothing)."""
    xp = get_array_module(gx)
    with backend.quiet_float_errors():  # x/0 is meant: ±inf, or NaN for 0/0
        theta = xp.arctan(gy / gx)
    pi = gx.dtype.type(math.pi)
    # arithmetic on the comparisons, not where(): a tenth of the time (bench_idioms)
    theta += pi * xp.signbit(gx)  # the left half-plane: (π/2, 3π/2), never negative
    theta += (2 * pi) * (theta < 0)
    return theta


def _vlfeat_near_ties(bins, gx, gy, p, B):
    """Redo the hard assignment of pixels within 1e-3 bin of a tie the way VLFeat's
    HOG does: scores s_k = ĝ·(cos kπ/O, sin kπ/O) in float32 for the O = B/2 undirected
    orientations, the first largest |s_k| wins, + O when s_k < 0. Elsewhere rounding p is
    the same choice; near a tie only VLFeat's own arithmetic decides (a vertical gradient,
    gx = 0, is an exact tie that goes to the lower orientation). Returns the new bins.

    On NumPy the few near-tie pixels are gathered (cheapest); on a GPU gathering them needs
    their count on the host (a sync per forward), so every pixel is scored and the near ones
    selected with ``where``: the same arithmetic per pixel, so the same bins.
    """
    xp = get_array_module(gx)
    if B % 2:
        return bins
    near = xp.abs(p - xp.floor(p) - 0.5) < 1e-3
    if xp is backend.np:
        picked = xp.nonzero(near)
        if picked[0].size:
            bins[picked] = _vlfeat_bins(gx[picked], gy[picked], B // 2, xp)
        return bins
    return xp.where(near, _vlfeat_bins(gx, gy, B // 2, xp), bins)


def _vlfeat_bins(x, y, O, xp):
    """VLFeat's directed bin of gradients (x, y), any shape: the first largest |s_k|, + O when
    s_k < 0, with s_k = ĝ·(cos kπ/O, sin kπ/O) in x's dtype."""
    dt = x.dtype
    grad = xp.sqrt(x * x + y * y)
    x, y = x / xp.maximum(grad, dt.type(1e-10)), y / xp.maximum(grad, dt.type(1e-10))
    angles = [k * math.pi / O for k in range(O)]
    column = (O,) + (1,) * x.ndim
    ox = xp.asarray([math.cos(a) for a in angles], dtype=dt).reshape(column)
    oy = xp.asarray([math.sin(a) for a in angles], dtype=dt).reshape(column)
    scores = x[None] * ox + y[None] * oy  # (O, ...)
    k = xp.abs(scores).argmax(axis=0)
    negative = xp.take_along_axis(scores, k[None], axis=0)[0] < 0
    return (k + O * negative).astype(xp.int32)


class OrientationBinning(Function):
    """(gx, gy) of shape (N, 1, H, W) -> (N, B, H, W) votes, magnitude n = sqrt(gx² + gy²).

    p = (θ mod 2π)·B/(2π) in [0, B), b = floor(p), f = p - b.
    * bilinear: bin b gets (1 - f)·n, bin (b + 1) mod B gets f·n; differentiable through the
      angle too (w.r.t. θ: n·(g[b+1] - g[b])·B/(2π)).
    * hard: bin round(p) gets n; within 1e-3 bin of a tie the choice is recomputed with
      VLFeat's float32 scores (``_vlfeat_near_ties``). The gradient flows through n only.
    ``fast_atan=True`` uses VLFeat DSIFT's cubic atan2 approximation (and its derivative).
    """

    def forward(self, gx, gy, num_bins=18, bilinear=True, fast_atan=False):
        xp = get_array_module(gx)
        B = num_bins
        n = xp.sqrt(gx * gx + gy * gy)
        if fast_atan:
            theta, dth_dx, dth_dy = vlfeat_fast_atan2(gy, gx)
            theta += gx.dtype.type(2 * math.pi) * (theta < 0)
        else:
            theta, dth_dx, dth_dy = angle(gx, gy), None, None
        p = theta * gx.dtype.type(B / (2 * math.pi))
        # a non-finite gradient (a diverged input) has a NaN angle, and NaN has no integer
        # bin: bin 0 gets its (non-finite) magnitude, so the output is non-finite where the
        # input was and the inversion stops cleanly (fmax: the non-NaN one; p >= 0 otherwise)
        p = xp.fmax(p, p.dtype.type(0))
        # p is in [0, B], so "mod B" is one subtraction; arithmetic on the comparison, not
        # where() (10× slower in NumPy: bench_idioms) nor a boolean-mask update (a GPU sync)
        if bilinear:
            b0 = xp.floor(p)
            frac = p - b0
            fB = p.dtype.type(B)
            b0 -= fB * (b0 >= fB)
            b1 = b0 + 1
            b1 -= fB * (b1 == fB)
            b0, b1 = b0.astype(xp.int64), b1.astype(xp.int64)
        else:
            b0 = xp.floor(p + gx.dtype.type(0.5)).astype(xp.int32)
            b0 -= (b0 >= B).astype(xp.int32) * B
            b0 = _vlfeat_near_ties(b0, gx, gy, p, B)
        N, _, H, W = gx.shape
        out = xp.zeros((N, B, H, W), dtype=gx.dtype)
        flat = out.reshape(-1)
        # flat index of (n, bin, y, x): ((n·B + bin)·H + y)·W + x = n·B·HW + bin·HW + pixel
        base = (xp.arange(N, dtype=xp.int64).reshape(N, 1, 1, 1) * (B * H * W)
                + xp.arange(H * W, dtype=xp.int64).reshape(1, 1, H, W))
        plane = xp.int64(H * W)  # typed: the int32 bins widen to int64 indices
        idx0 = base + b0 * plane  # (N, 1, H, W)
        if bilinear:
            idx1 = base + b1 * plane
            flat[idx0] = (1 - frac) * n
            flat[idx1] = frac * n  # b1 = b0 + 1 mod B != b0 (B >= 2): no index is written twice
            self.saved = (gx, gy, n, frac, idx0, idx1, dth_dx, dth_dy)
        else:
            flat[idx0] = n
            self.saved = (gx, gy, n, idx0)
        self.B, self.bilinear = B, bilinear
        return out

    def backward(self, g):
        flat = g.reshape(-1)
        if not self.bilinear:
            gx, gy, n, idx0 = self.saved
            gn = flat[idx0]
            scale = gn / (n + (n == 0))  # n, or 1 where n = 0 (no where(): see forward)
            return scale * gx, scale * gy
        gx, gy, n, frac, idx0, idx1, dth_dx, dth_dy = self.saved
        g0, g1 = flat[idx0], flat[idx1]
        gn = (1 - frac) * g0 + frac * g1
        gtheta = n * (g1 - g0) * gx.dtype.type(self.B / (2 * math.pi))
        safe_n = n + (n == 0)
        gn = gn / safe_n
        if dth_dx is None:  # exact atan2: dθ/dgx = -gy/n², dθ/dgy = gx/n²
            gtheta = gtheta / (safe_n * safe_n)
            return gn * gx - gtheta * gy, gn * gy + gtheta * gx
        return gn * gx + gtheta * dth_dx, gn * gy + gtheta * dth_dy


# --- separable spatial pooling ---------------------------------------------------------------
class StridedFilterBank1d(Function):
    """Depthwise strided 1-D filtering along ``axis`` (-2: height, -1: width).

    x (N, C, H, W), weight (O, K) -> y (N, C·O, ...) with channel c·O + o and, along the axis,
    y[p] = Σ_k weight[o, k] · x_pad[p·stride + k]   (cross-correlation),
    x_pad = x padded by ``pad = (before, after)`` (zeros, or the edge value with
    mode="edge"; a negative ``after`` crops). Output length (L + before + after - K)//stride + 1.

    Implementation (polyphase): the padded signal is cut into blocks of ``stride`` samples;
    one batched GEMM applies the m sub-filters of ``stride`` taps of every output to every
    block (leading all-zero blocks of a filter are skipped: DSIFT's four spatial bins sit at
    offsets 0, b, 2b, 3b of one bank), and the m partial results are added with a shift of
    one block each. Filtering along the height keeps rows contiguous; along the width the
    input is transposed once (inside the padding copy).
    """

    def forward(self, x, weight=None, stride=1, pad=(0, 0), mode="zero", axis=-2):
        xp = get_array_module(x)
        if axis == -1:
            x = x.swapaxes(-1, -2)  # filter along axis 2 from here on
        N, C, L, R = x.shape
        O, K = weight.shape
        s = stride
        before, after = pad
        P = (L + before + after - K) // s + 1
        if P < 1:
            raise ValueError(f"filter of length {K} longer than the padded signal "
                             f"({L + before + after})")
        shifts, wt, m = _polyphase_bank(weight, s, xp)  # wt (m·O, s)
        nb = P + m - 1 + max(shifts)  # blocks read
        z = _block_products(wt, x, before, after, nb, s, mode)  # (N, C, nb, m·O, R)
        y = xp.empty((N, C, O, P, R), dtype=x.dtype)
        for o in range(O):  # a handful of outputs and sub-filters
            d = shifts[o]
            y[:, :, o] = z[:, :, d:d + P, o]
            for j in range(1, m):
                y[:, :, o] += z[:, :, d + j:d + j + P, j * O + o]
        y = y.reshape(N, C * O, P, R)
        self.geom = (N, C, L, R, O, s, m, nb, P, before, after, mode, axis, shifts)
        self.wt = wt
        return y.swapaxes(-1, -2) if axis == -1 else y

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, L, R, O, s, m, nb, P, before, after, mode, axis, shifts = self.geom
        if axis == -1:
            gy = gy.swapaxes(-1, -2)
        gy = gy.reshape(N, C, O, P, R)
        gz = xp.zeros((N, C, nb, m * O, R), dtype=gy.dtype)
        for o in range(O):
            d = shifts[o]
            for j in range(m):
                gz[:, :, d + j:d + j + P, j * O + o] += gy[:, :, o]
        gpad = (self.wt.T @ gz).reshape(N, C, nb * s, R)  # (N, C, nb, s, R) -> padded
        Lp = before + L + max(after, 0)
        if gpad.shape[2] < Lp:
            gpad = _pad_axis2(gpad, 0, Lp - gpad.shape[2], "zero")
        gx = gpad[:, :, before:before + L]
        if mode == "edge":
            gx = gx.copy()
            if before:
                gx[:, :, 0] += gpad[:, :, :before].sum(axis=2)
            if after > 0:
                gx[:, :, -1] += gpad[:, :, before + L:Lp].sum(axis=2)
        return gx.swapaxes(-1, -2) if axis == -1 else gx


def _block_products(wt, x, before, after, nb, s, mode):
    """wt (k, s) @ the nb blocks of s samples of x (N, C, L, R) padded along axis 2 by
    (before, after) and cut (or zero-extended) to nb·s samples: (N, C, nb, k, R).

    Blocks that lie inside x are read in place, as a view: only the first and last blocks,
    which hold padding, are copied (HOG at 512 px: about half the time of padding the whole 18-bin
    vote volume, ``python -m benchmarks.bench_idioms``). A short or non-contiguous x, and an
    edge pad with no sample of x in its block, take the padded copy of the whole signal.
    """
    xp = get_array_module(x)
    N, C, L, R = x.shape
    first, last = -(-before // s), min((before + L) // s, nb)  # the blocks inside x
    head, tail = first * s - before, last * s - before  # where they start and end in x
    contiguous = x.strides[3] == x.itemsize and x.strides[2] == R * x.itemsize
    edge_alone = mode == "edge" and ((first and head == 0) or (last < nb and tail == L))
    if last - first < 2 or not contiguous or edge_alone:
        return wt @ _padded_blocks(x, before, after, nb, s, mode)
    z = xp.empty((N, C, nb, wt.shape[0], R), dtype=x.dtype)
    inner = x[:, :, head:tail].reshape(N, C, last - first, s, R)
    xp.matmul(wt, inner, out=z[:, :, first:last])
    if first:  # `before` padding rows, then x[:head]
        z[:, :, :first] = wt @ _padded_blocks(x[:, :, :head], before, 0, first, s, mode)
    if last < nb:  # x[tail:], then the padding after x (cut or zero-extended as the whole)
        z[:, :, last:] = wt @ _padded_blocks(x[:, :, tail:], 0, after, nb - last, s, mode)
    return z


def _padded_blocks(x, before, after, nb, s, mode):
    """x padded by (before, after), cut or zero-extended to nb·s samples: (N, C, nb, s, R)."""
    xp = get_array_module(x)
    N, C, L, R = x.shape
    total = nb * s
    # pad (or crop) to exactly nb·s samples: taps past K are zero, so cropping is exact
    end = min(after, total - before - L)
    xpad = _pad_axis2(x, before, max(end, 0), mode)[:, :, :total]
    if xpad.shape[2] < total:
        xpad = _pad_axis2(xpad, 0, total - xpad.shape[2], "zero")
    return xp.ascontiguousarray(xpad).reshape(N, C, nb, s, R)


def _pad_axis2(x, before, after, mode):
    xp = get_array_module(x)
    widths = ((0, 0), (0, 0), (before, after), (0, 0))
    return xp.pad(x, widths, mode="edge") if mode == "edge" else backend.pad(x, widths)


_POLYPHASE = {}  # (id(weight), stride) -> (weight, bank): filter banks are constants


def _polyphase_bank(weight, s, xp):
    """``_split_bank`` once per filter bank and stride: finding the zero pattern reads the
    bank on the host, a sync on a GPU, so it is done at the first forward only. The bank
    is kept with its entry, so its id cannot be reused while cached; like the conv weight
    matrix, this treats filter banks as immutable."""
    key = (id(weight), s)
    hit = _POLYPHASE.get(key)
    if hit is None or hit[0] is not weight:
        if len(_POLYPHASE) >= 64:  # tests make many banks; a run uses a handful
            _POLYPHASE.clear()
        hit = _POLYPHASE[key] = (weight, _split_bank(weight, s, xp))
    return hit[1]


def _split_bank(weight, s, xp):
    """Split each filter o into m sub-filters of s taps after skipping its d_o leading blocks
    of zeros (DSIFT's four bins sit at offsets 0, b, 2b, 3b of one bank): returns the shifts
    d_o and Wt (m·O, s) with Wt[j·O + o, r] = weight[o, (d_o + j)·s + r]."""
    O, K = weight.shape
    host = asnumpy(weight)  # the zero pattern, read once on the host
    nonzero = [[k for k in range(K) if float(host[o, k]) != 0.0] or [0] for o in range(O)]
    shifts = [taps[0] // s for taps in nonzero]
    m = max(-(-(taps[-1] + 1 - d * s) // s) for taps, d in zip(nonzero, shifts))
    wall = xp.zeros((m * s, O), dtype=weight.dtype)
    for o, d in enumerate(shifts):
        taps = weight[o, d * s:(d + m) * s]
        wall[:taps.shape[0], o] = taps
    wt = wall.reshape(m, s, O).transpose(0, 2, 1).reshape(m * O, s)  # (m·O, s)
    return shifts, xp.ascontiguousarray(wt), m


# --- UoCTTI block normalisation ---------------------------------------------------------------
def _edge_pad1(a):
    """Replicate-pad the last two axes by one cell (VLFeat clamps block indices at borders)."""
    xp = get_array_module(a)
    return xp.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")


def _edge_pad1_adjoint(g):
    """Adjoint of _edge_pad1: fold the padded border back onto the edge cells."""
    g = g.copy()
    g[:, :, 1, :] += g[:, :, 0, :]
    g[:, :, -2, :] += g[:, :, -1, :]
    g[:, :, :, 1] += g[:, :, :, 0]
    g[:, :, :, -2] += g[:, :, :, -1]
    return g[:, :, 1:-1, 1:-1]


# block q of a cell: (row offset, col offset) into the (Hc+1, Wc+1) block grid, in VLFeat's
# order: up-left, up-right, down-left, down-right
BLOCK_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


class UocttiNormalize(Function):
    """h (N, 2·O, Hc, Wc) directed cell histograms -> (N, 3·O + 4, Hc, Wc) UoCTTI features.

    u = h[:O] + h[O:] (undirected), c = Σ_o u_o² per cell; the block energy of each 2×2 block
    is the sum of its cells' c, where cells outside the grid are replaced by the nearest border
    cell (VLFeat's clamped indices); f = 1/sqrt(energy + 1e-4). For the four blocks q around a
    cell, v_q = min(f_q·[h, u], 0.2); output = [0.5·Σ_q v_q (3·O channels),
    (1/√18)·Σ_o v_q[u_o] for q = 1..4 (texture)].
    """

    def forward(self, h, eps=1e-4, clamp=0.2):
        xp = get_array_module(h)
        N, O2, Hc, Wc = h.shape
        O = O2 // 2
        u = h[:, :O] + h[:, O:]
        hu = xp.concatenate([h, u], axis=1)  # (N, 3·O, Hc, Wc)
        c = (u * u).sum(axis=1, keepdims=True)  # (N, 1, Hc, Wc)
        cp = _edge_pad1(c)  # (N, 1, Hc+2, Wc+2)
        energy = cp[:, :, :-1, :-1] + cp[:, :, 1:, :-1] + cp[:, :, :-1, 1:] + cp[:, :, 1:, 1:]
        f = 1 / xp.sqrt(energy + h.dtype.type(eps))  # (N, 1, Hc+1, Wc+1)
        out = xp.zeros((N, 3 * O + 4, Hc, Wc), dtype=h.dtype)
        masks = []
        for q, (dy, dx) in enumerate(BLOCK_OFFSETS):
            v = f[:, :, dy:dy + Hc, dx:dx + Wc] * hu
            below = v < clamp
            v = xp.where(below, v, h.dtype.type(clamp))
            out[:, :3 * O] += v
            out[:, 3 * O + q] = v[:, 2 * O:].sum(axis=1)
            masks.append(below)
        out[:, :3 * O] *= h.dtype.type(0.5)
        out[:, 3 * O:] *= h.dtype.type(1 / math.sqrt(18))
        self.saved = (hu, f, masks, O)
        return out

    def backward(self, g):
        xp = get_array_module(g)
        hu, f, masks, O = self.saved
        N, _, Hc, Wc = hu.shape
        ghu = xp.zeros_like(hu)
        gf = xp.zeros_like(f)
        half = g.dtype.type(0.5)
        tex = g.dtype.type(1 / math.sqrt(18))
        for q, (dy, dx) in enumerate(BLOCK_OFFSETS):
            gv = half * g[:, :3 * O]
            gv[:, 2 * O:] += tex * g[:, 3 * O + q:3 * O + q + 1]
            gv *= masks[q]
            fq = f[:, :, dy:dy + Hc, dx:dx + Wc]
            ghu += gv * fq
            gf[:, :, dy:dy + Hc, dx:dx + Wc] += (gv * hu).sum(axis=1, keepdims=True)
        genergy = gf * (g.dtype.type(-0.5) * f * f * f)
        gcp = xp.zeros((N, 1, Hc + 2, Wc + 2), dtype=g.dtype)
        gcp[:, :, :-1, :-1] += genergy
        gcp[:, :, 1:, :-1] += genergy
        gcp[:, :, :-1, 1:] += genergy
        gcp[:, :, 1:, 1:] += genergy
        gc = _edge_pad1_adjoint(gcp)
        u = hu[:, 2 * O:]
        gu = ghu[:, 2 * O:] + 2 * u * gc
        gh = ghu[:, :2 * O]
        gh[:, :O] += gu
        gh[:, O:] += gu
        return gh


# --- SIFT normalisation -----------------------------------------------------------------------
class SiftNormalize(Function):
    """x (N, D, R, C) -> y: per descriptor (over axis 1), y1 = x/(‖x‖ + eps),
    m = min(y1, clamp), y = m/(‖m‖ + eps); with ``renormalize=False`` y = m.
    eps = FLT_EPSILON as in VLFeat (which adds it to the norm, not under the root).
    """

    def forward(self, x, clamp=0.2, eps=FLT_EPSILON, renormalize=True):
        xp = get_array_module(x)
        s1 = xp.sqrt((x * x).sum(axis=1, keepdims=True))
        n1 = s1 + x.dtype.type(eps)
        y1 = x / n1
        below = y1 < clamp
        m = xp.where(below, y1, x.dtype.type(clamp))
        self.saved = [x, s1, n1, below, None, None, None]
        if not renormalize:
            return m
        s2 = xp.sqrt((m * m).sum(axis=1, keepdims=True))
        n2 = s2 + x.dtype.type(eps)
        self.saved[4:] = [m, s2, n2]
        return m / n2

    def backward(self, g):
        xp = get_array_module(g)
        x, s1, n1, below, m, s2, n2 = self.saved
        if m is not None:  # through the second normalisation
            dot = (g * m).sum(axis=1, keepdims=True)
            g = g / n2 - m * (dot / (n2 * n2 * xp.where(s2 > 0, s2, 1)))
        g = g * below
        dot = (g * x).sum(axis=1, keepdims=True)
        return g / n1 - x * (dot / (n1 * n1 * xp.where(s1 > 0, s1, 1)))
