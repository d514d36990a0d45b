"""Stride-1 2-D convolution by Winograd minimal filtering (Lavin & Gray, CVPR 2016).

F(m×m, r×r) computes an m×m output tile of an r×r cross-correlation from an α×α input tile,
α = m + r - 1, with α² multiplications instead of m²r²:

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,

g the r×r kernel, d the input tile. Over channels the ⊙ becomes, for each of the α² frequencies
(ξ, ν), one matrix product U[ξν] (O × C) @ V[ξν] (C × tiles): a single batched GEMM. The
transformed kernel U = G g Gᵀ is computed once (in float64) for a constant weight.

The matrices come from Toom-Cook interpolation (``toom_cook``): linear convolution of a
degree-(r-1) and a degree-(m-1) polynomial, evaluated at α points (``points``: 0, ±1, ±2, 1/2
and ∞ in that order, but 0, ±2, ±1/2 and ∞ for F(4, 3)) and interpolated back; correlation is
its transpose. They are generated exactly with fractions.

Tile sizes (``tile_size``): F(4, 3) when the output is at least 16 px (2.25× fewer multiplies
than the direct 3×3), F(2, 3) below (fewer wasted tile pixels on 13 px maps), F(3, 5) for 5×5
(3.1× fewer; AlexNet's 27 px conv2 is exactly 9 tiles, and F(4, 5), 4× fewer on paper, wastes
a tile row there and measured no faster), F(2, r) otherwise while α ≤ 8. Error: the transforms
add up products with coefficients up to max|Aᵀ|·max|Bᵀ|·max|G|, so the float32 rounding error
grows with α. Norm-wise relative errors against float64, on AlexNet/VGG-sized layers, output
and input gradient (``python -m benchmarks.winograd_error``): F(2,3) 4–5e-7, F(4,3) 1.0–2.0e-6
(with Lavin & Gray's 0, ±1, ±2: 1.6–3.1e-6), F(3,5) 2.6–4.0e-6 (im2col 2–3e-7); the largest
single element is off by up to 4× that. In float64 all are ~1e-14.

The input gradient of a stride-1 convolution is a stride-1 convolution of the output gradient
with the flipped kernel, input and output channels swapped in each group: it runs on the same
engine. Where the points are closed under p -> 1/p (F(2,3), F(4,3)), the flipped kernel's
transform is the forward U re-indexed (``reflection``), so the gradient uses the forward U with
permuted Aᵀ, Bᵀ and keeps no second copy (VGG-16: 122 MB less). A weight gradient, when asked
for, comes from im2col columns (``conv``).

In a parallel block (``backend.parallel``) the bands of tile rows run on the workers, or, for a
layer with too few rows for a band per worker, its channels are shared out
(``_correlate_by_channels``).
"""
import functools
import math
from fractions import Fraction

from .. import backend
from ..backend import get_array_module
from ..tensor import Function
from . import conv

POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))  # ∞ is the last point
MAX_ALPHA = len(POINTS) + 1
# α = 6, F(4, 3): 0, ±2, ±1/2 (and ∞) instead of 0, ±1, ±2. p -> 1/p maps this set onto itself,
# so the input gradient reuses the forward's transformed weights (``reflection``), and its
# float32 error is lower: 1.9e-6 against 3.0e-6 (``python -m benchmarks.winograd_error``).
POINT_SETS = {6: (0, 2, -2, Fraction(1, 2), Fraction(-1, 2))}


def points(alpha):
    """The α - 1 finite interpolation points of an F(m, r) with m + r - 1 = α (∞ is added)."""
    return POINT_SETS.get(alpha, POINTS[:alpha - 1])


def _vandermonde(points, n):
    """Rows [1, p, …, p^(n-1)] per finite point, then [0, …, 0, 1] for the point ∞."""
    return [[Fraction(p) ** j for j in range(n)] for p in points] + [[Fraction(0)] * (n - 1)
                                                                     + [Fraction(1)]]


def _inverse(M):
    """Exact inverse of a square matrix of Fractions (Gauss–Jordan)."""
    n = len(M)
    A = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(M)]
    for c in range(n):
        pivot = next(r for r in range(c, n) if A[r][c] != 0)
        A[c], A[pivot] = A[pivot], A[c]
        A[c] = [v / A[c][c] for v in A[c]]
        for r in range(n):
            if r != c and A[r][c] != 0:
                A[r] = [a - A[r][c] * b for a, b in zip(A[r], A[c])]
    return [row[n:] for row in A]


def toom_cook(m, r):
    """(Aᵀ (m×α), G (α×r), Bᵀ (α×α)) of F(m, r), exact Fractions, with y = Aᵀ[(G g) ⊙ (Bᵀ d)].

    Linear convolution h = g * e at the points: V h = (V_r g) ⊙ (V_m e), V the α×α Vandermonde
    matrix; so h = V⁻¹ diag(V_r g) V_m e. Correlation y_i = Σ_j g_j d_(i+j) is the transpose of
    e ↦ h, hence Aᵀ = V_mᵀ, G = V_r, Bᵀ = V⁻ᵀ. Each row of Bᵀ is then scaled to coprime
    integers and the matching row of G divided by the same factor (the fractions go into G,
    which is applied once, to the weights).
    """
    alpha = m + r - 1
    if m < 1 or r < 1 or alpha > MAX_ALPHA:
        raise ValueError(f"winograd: F({m}, {r}) needs 1 <= m, r and m + r - 1 <= {MAX_ALPHA}")
    finite = points(alpha)
    inv = _inverse(_vandermonde(finite, alpha))
    BT = [[inv[k][xi] for k in range(alpha)] for xi in range(alpha)]
    G = _vandermonde(finite, r)
    AT = [list(col) for col in zip(*_vandermonde(finite, m))]
    for xi, row in enumerate(BT):
        denominators = math.lcm(*(v.denominator for v in row))
        numerators = math.gcd(*(v.numerator for v in row)) or 1
        scale = Fraction(denominators, numerators)
        BT[xi] = [v * scale for v in row]
        G[xi] = [v / scale for v in G[xi]]
    return AT, G, BT


@functools.lru_cache(maxsize=None)
def reflection(m, r):
    """(π, c) with G[ξ] reversed = c[ξ] · G[π(ξ)] for every frequency ξ, π a permutation; None
    when F(m, r)'s points are not closed under p -> 1/p.

    A row of G is [1, p, …, p^(r-1)] up to a scale; reversed it is p^(r-1) times the row of
    1/p (0 and ∞ swap). So the flipped kernel g' = J g J has G g' Gᵀ[ξ, ν] = c[ξ] c[ν] ·
    G g Gᵀ[π(ξ), π(ν)]: the forward's U, re-indexed and scaled (see ``reflected_matrices``).
    """
    _, G, _ = toom_cook(m, r)
    perm, scale = [], []
    for xi, row in enumerate(G):
        flipped = row[::-1]
        for eta in [xi] + [k for k in range(len(G)) if k != xi]:
            ratio = _ratio(flipped, G[eta])
            if ratio is not None:
                perm.append(eta)
                scale.append(ratio)
                break
        else:
            return None
    return (tuple(perm), tuple(scale)) if sorted(perm) == list(range(len(G))) else None


def _ratio(a, b):
    """c with a = c · b (rows of Fractions), or None."""
    k = next((i for i, v in enumerate(b) if v != 0), None)
    if k is None:
        return None
    c = a[k] / b[k]
    return c if all(u == c * v for u, v in zip(a, b)) else None


def tile_size(r, out_size):
    """The output tile m of F(m, r) used for an r×r kernel and an output of out_size px."""
    if r == 3:
        return 4 if out_size >= 16 else 2
    if r == 5:
        return 3
    return 2


def supports(kernel, stride, dilation):
    """Whether the Winograd engine can run a conv of this geometry."""
    (kh, kw), (sy, sx), (dy, dx) = kernel, stride, dilation
    return kh == kw and (sy, sx, dy, dx) == (1, 1, 1, 1) and kh + 1 <= MAX_ALPHA


_MATRICES = {}


def _matrices(m, r, dtype, xp, reflected=False):
    """Aᵀ and Bᵀ as arrays of dtype on xp's device (cached); ``reflected``: those that make
    the forward U compute the flipped kernel's correlation (``reflected_matrices``)."""
    key = (m, r, str(dtype), xp.__name__, reflected)
    if key not in _MATRICES:
        if reflected:
            AT, BT = reflected_matrices(m, r)
        else:
            AT, _, BT = toom_cook(m, r)
        as_array = lambda M: xp.asarray([[float(v) for v in row] for row in M],  # noqa: E731
                                        dtype=dtype)
        _MATRICES[key] = (as_array(AT), as_array(BT))
    return _MATRICES[key]


def reflected_matrices(m, r):
    """(Aᵀ', Bᵀ'): Aᵀ'[:, κ] = c[ξ] Aᵀ[:, ξ] and Bᵀ'[κ] = Bᵀ[ξ] for κ = π(ξ).

    With U the forward kernel's transform, Aᵀ' [U ⊙ (Bᵀ' d Bᵀ'ᵀ)] Aᵀ'ᵀ = Σ_ξν Aᵀ[:, ξ] c[ξ]
    U[π(ξ), π(ν)] c[ν] (Bᵀ d B)[ξ, ν] Aᵀ[:, ν]ᵀ, the flipped kernel's correlation (``reflection``).
    """
    AT, _, BT = toom_cook(m, r)
    perm, scale = reflection(m, r)
    AT2 = [[None] * len(perm) for _ in AT]
    BT2 = [None] * len(perm)
    for xi, (kappa, c) in enumerate(zip(perm, scale)):
        BT2[kappa] = BT[xi]
        for i, row in enumerate(AT):
            AT2[i][kappa] = c * row[xi]
    return AT2, BT2


def transform_weights(W, groups, m):
    """(O, Cg, r, r) -> U (α², G, O/G, Cg) = G g Gᵀ per (output, input) channel, in W's dtype.

    Computed in float64 whatever W's dtype, so a float32 network only rounds once.
    """
    xp = get_array_module(W)
    O, Cg, r, _ = W.shape
    alpha = m + r - 1
    G = xp.asarray([[float(v) for v in row] for row in toom_cook(m, r)[1]], dtype="float64")
    g = W.astype("float64").reshape(O * Cg, r, r)
    U = G @ g @ G.T  # (O·Cg, α, α)
    U = U.reshape(groups, O // groups, Cg, alpha * alpha).transpose(3, 0, 1, 2)
    return xp.ascontiguousarray(U, dtype=W.dtype)


def flip_transpose(W, groups):
    """(O, Cg, r, r) -> (C, O/G, r, r): the kernel of the input gradient (see module doc)."""
    O, Cg, kh, kw = W.shape
    Wg = W.reshape(groups, O // groups, Cg, kh, kw)[..., ::-1, ::-1]
    return Wg.transpose(0, 2, 1, 3, 4).reshape(groups * Cg, O // groups, kh, kw)


# Tile rows are transformed and multiplied in bands of about this many input-transform elements
# (~1 MB in float32): each band's intermediates then stay in the L2 cache. Unbanded, VGG-16's
# 224 px layers run the whole pipeline from memory, 2–3× slower.
BAND_BUDGET = 2 ** 18
# ...but a band holds at least this many tiles: every band streams all of U (α²·O·C values,
# 38 MB for a 512-channel layer) through its α² GEMMs, so bands of a few tiles (14 on VGG's
# 28 px conv4_x at the budget alone) are bound by reading U, and tiny GEMMs pay OpenBLAS's
# thread hand-off at 2 threads. Measured (fwd + dx, 2 threads, benchmarks.bench_ops): conv4_3
# 60 -> 33 ms, conv3_3 64 -> 41 ms at 64 tiles. 128 then gave (``python -m
# benchmarks.bench_bands``, two runs) VGG's 56 px layer 30 -> 28 and 42 -> 37 ms in the parallel
# mode (one-thread GEMMs want a larger N), 28 px 41 -> 36 and 45 -> 41, at a cost of 5–8 % on
# the 224 px layer: about 4 % off VGG-16 to conv5_3, nothing to conv3_3.
MIN_GEMM_TILES = 128


def band_rows(alpha, N, C, th, tw):
    """Tile rows per band: BAND_BUDGET input-transform elements, but MIN_GEMM_TILES tiles at
    least, and th at most."""
    band = max(BAND_BUDGET // (alpha * alpha * N * C * tw), -(-MIN_GEMM_TILES // tw), 1)
    return min(band, th)


def correlate(x, pads, U, m, r, groups, reflected=False, bias=None):
    """Valid cross-correlation of x (N, C, H, W), zero-padded by pads ((top, bottom), (left,
    right), negative = crop), with transformed weights U (α², G, Og, Cg): a new contiguous
    (N, G·Og, oh, ow), plus ``bias`` (G·Og,) if given. ``reflected``: with the flipped kernel
    of the one U was transformed from."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (top, bottom), (left, right) = pads
    oh, ow = H + top + bottom - r + 1, W + left + right - r + 1
    th, tw = -(-oh // m), -(-ow // m)
    alpha = m + r - 1
    x_pad = _pad_or_crop(x, top, th * m + r - 1 - H - top, left, tw * m + r - 1 - W - left)
    y = xp.empty((N, U.shape[1] * U.shape[2], oh, ow), dtype=x.dtype)
    threads, bands = backend.parallel_threads(x), -(-th // band_rows(alpha, N, C, th, tw))
    if bands < threads:  # too few tile rows to share out: the workers share the channels
        _correlate_by_channels(x_pad, U, m, r, th, tw, reflected, y, bias, threads)
        return y
    bands = min(th, -(-bands // threads) * threads)  # a multiple of the workers, if rows allow
    b = None if bias is None else bias.reshape(1, -1, 1, 1)

    def run_band(rows):
        t0, t1 = rows
        x_rows = x_pad[:, :, t0 * m:t1 * m + r - 1]
        tiles = _correlate_tiles(x_rows, U, m, r, t1 - t0, tw, reflected)
        _store(y[:, :, t0 * m:min(t1 * m, oh)], tiles, b)

    backend.parallel_map(run_band, backend.split_range(th, bands), like=x)
    return y


def _store(target, tiles, bias):
    """target (..., h, w) = the tiles' output (..., ≥ h, ≥ w) less what the last tile row and
    column add past it, plus ``bias`` if given."""
    h, w = target.shape[-2:]
    if bias is None:
        target[...] = tiles[..., :h, :w]
    else:
        get_array_module(target).add(tiles[..., :h, :w], bias, out=target)


def _correlate_by_channels(x_pad, U, m, r, th, tw, reflected, y, bias, threads):
    """All tiles at once, the work shared by the workers of a parallel block by channels: each
    transforms a range of the input channels, then multiplies and transforms back a range of
    every group's outputs (for layers of few tile rows: bands there would be short GEMMs, each
    reading all of U). Writes y (N, G·Og, oh, ow); ``threads``: the block's."""
    xp = get_array_module(x_pad)
    N, C = x_pad.shape[:2]
    alpha, (_, G, Og, Cg) = m + r - 1, U.shape
    v = xp.empty((alpha, alpha, N, C, th * tw), dtype=x_pad.dtype)

    def transform(bounds):
        c0, c1 = bounds
        v[:, :, :, c0:c1] = _input_transform(x_pad[:, c0:c1], m, r, th, tw, reflected)

    backend.parallel_map(transform, backend.split_range(C, threads), like=x_pad)
    v = v.reshape(alpha * alpha, N, G, Cg, th * tw)
    y_groups = y.reshape(N, G, Og, *y.shape[2:])
    b = None if bias is None else bias.reshape(1, G, Og, 1, 1)

    def outputs(bounds):
        o0, o1 = bounds
        M = U[:, None, :, o0:o1] @ v  # (α², N, G, o1 - o0, tiles)
        tiles = _output_tiles(M, m, r, th, tw, reflected)
        _store(y_groups[:, :, o0:o1], tiles, None if b is None else b[:, :, o0:o1])

    backend.parallel_map(outputs, backend.split_range(Og, threads), like=x_pad)


def _correlate_tiles(x_pad, U, m, r, th, tw, reflected):
    """(N, C, th·m + r - 1, tw·m + r - 1) -> (N, O, th·m, tw·m): transform, GEMMs, inverse."""
    N, C = x_pad.shape[:2]
    alpha, (_, G, Og, Cg) = m + r - 1, U.shape
    v = _input_transform(x_pad, m, r, th, tw, reflected).reshape(alpha * alpha, N, G, Cg,
                                                                  th * tw)
    M = U[:, None] @ v  # (α², N, G, Og, tiles): one GEMM per frequency and group
    return _output_tiles(M, m, r, th, tw, reflected).reshape(N, G * Og, th * m, tw * m)


def _input_transform(x_pad, m, r, th, tw, reflected):
    """(N, C, th·m + r - 1, tw·m + r - 1) -> V (α, α, N, C, th·tw) = Bᵀ d B for every tile d."""
    N, C = x_pad.shape[:2]
    _, BT = _matrices(m, r, x_pad.dtype, get_array_module(x_pad), reflected)
    return transform_tiles(gather_tiles(x_pad, m, r, th, tw), BT).reshape(
        m + r - 1, m + r - 1, N, C, th * tw)


def gather_tiles(x_pad, m, r, th, tw):
    """(N, C, th·m + r - 1, tw·m + r - 1) -> d (α, α, N, C, th, tw), contiguous, with
    d[k, l, n, c, ty, tx] = x_pad[n, c, ty·m + k, tx·m + l]: every α×α tile, tiles overlapping
    by r - 1 (a strided view, then one copy)."""
    N, C = x_pad.shape[:2]
    alpha = m + r - 1
    sN, sC, sH, sW = x_pad.strides
    tiles = backend.as_strided(x_pad, (alpha, alpha, N, C, th, tw),
                               (sH, sW, sN, sC, sH * m, sW * m))
    return get_array_module(x_pad).ascontiguousarray(tiles)


def transform_tiles(d, BT):
    """d (α, α, ...) -> v (α, α, ...) = Bᵀ d B over the two leading axes (two small GEMMs)."""
    alpha = d.shape[0]
    t = (BT @ d.reshape(alpha, -1)).reshape(alpha, alpha, -1)  # Bᵀ along the rows: t[ξ, l, …]
    return (BT @ t).reshape(d.shape)  # and along the columns: v[ξ, ν, …] = (Bᵀ d B)[ξ, ν]


def _output_tiles(M, m, r, th, tw, reflected):
    """M (α², N, G, Og, th·tw) -> (N, G, Og, th·m, tw·m): Aᵀ M A for every tile."""
    AT, _ = _matrices(m, r, M.dtype, get_array_module(M), reflected)
    return untile(inverse_transform(M, AT), th, tw)


def inverse_transform(M, AT):
    """M (α², ...) -> (m, m, ...) = Aᵀ M A over the frequencies (two small GEMMs)."""
    (m, alpha), rest = AT.shape, M.shape[1:]
    z = (AT @ M.reshape(alpha, -1)).reshape(m, alpha, -1)  # Aᵀ along the rows
    return (AT @ z).reshape((m, m) + rest)  # and along the columns


def untile(y, th, tw):
    """Output tiles y (m, m, N, G, Og, th·tw) -> (N, G, Og, th·m, tw·m), one transposing copy."""
    m, _, N, G, Og = y.shape[:5]
    y = y.reshape(m, m, N, G, Og, th, tw).transpose(2, 3, 4, 5, 0, 6, 1)
    return y.reshape(N, G, Og, th * m, tw * m)


def _pad_or_crop(x, top, bottom, left, right):
    """Zero-pad (positive) or crop (negative) the last two axes in one copy at most."""
    if min(top, bottom, left, right) < 0:
        H, W = x.shape[2:]
        x = x[:, :, max(-top, 0):H - max(-bottom, 0), max(-left, 0):W - max(-right, 0)]
        top, bottom, left, right = (max(v, 0) for v in (top, bottom, left, right))
    if top or bottom or left or right:
        x = backend.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    return x


class WinogradConv2d(Function):
    """y[n, o] = b[o] + Σ_{c,i,j} W[o, c, i, j] · x_pad[n, g·Cg + c, u + i, v + j], stride 1.

    x (N, C, H, W), W (O, C/G, r, r), y (N, O, H + 2p - r + 1, ...).
    ``transformed(direction, m)``, when the caller caches transformed constant weights, returns
    U for "forward" or the input-gradient kernel's U for "backward"; otherwise they are
    computed here on each call.
    """

    def forward(self, x, W, b=None, padding=0, groups=1, transformed=None):
        conv._check_conv(x, W, b, groups)
        (ph, pw), r = conv.pair(padding, "padding"), W.shape[2]
        if not supports(W.shape[2:], (1, 1), (1, 1)):
            raise ValueError(f"winograd: needs a square kernel of at most {MAX_ALPHA - 1} px, "
                             f"got {W.shape[2:]}")
        oh, ow = x.shape[2] + 2 * ph - r + 1, x.shape[3] + 2 * pw - r + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"conv2d: kernel {r}x{r} is larger than the padded input "
                             f"{x.shape[2] + 2 * ph}x{x.shape[3] + 2 * pw} (input {x.shape})")
        m = tile_size(r, min(oh, ow))
        if transformed is None:
            transformed = _transformer(W, groups)
        U = transformed("forward", m)
        y = correlate(x, ((ph, ph), (pw, pw)), U, m, r, groups, bias=b)
        self.geometry = (x.shape, (ph, pw), r, groups, m)
        self.transformed = transformed if self.needs_input_grad[0] else None
        self.x = x if self.needs_input_grad[1] else None
        return y

    def backward(self, gy):
        (N, C, H, W_), (ph, pw), r, groups, m_forward = self.geometry
        gx = gW = gb = None
        if self.needs_input_grad[0]:
            q, qw = r - 1 - ph, r - 1 - pw  # the full correlation's padding, less the forward's
            m = tile_size(r, min(H, W_))
            # the forward's U, re-indexed, where F(m, r) allows it: no second U to keep
            reflected = m == m_forward and reflection(m, r) is not None
            U = (self.transformed("forward", m).swapaxes(2, 3) if reflected
                 else self.transformed("backward", m))
            gx = correlate(gy, ((q, q), (qw, qw)), U, m, r, groups, reflected)
        if self.needs_input_grad[1]:
            gW = _weight_gradient(self.x, gy, ph, pw, r, groups)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gW, gb


def _transformer(W, groups):
    """transformed(direction, m) for a weight that is not cached: computed on each call."""
    def transformed(direction, m):
        kernel = W if direction == "forward" else flip_transpose(W, groups)
        return transform_weights(kernel, groups, m)
    return transformed


def _weight_gradient(x, gy, ph, pw, r, groups):
    """dW[o, c, i, j] = Σ gy[n, o, u, v] x_pad[n, g·Cg + c, u + i, v + j], from im2col columns."""
    N, O, oh, ow = gy.shape
    x_pad = backend.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    cols = conv.im2col(x_pad, r, r, 1, 1, 1, 1, oh, ow, groups)
    cols = cols.reshape(N, groups, -1, oh * ow)  # (N, G, K, L)
    gW = (gy.reshape(N, groups, O // groups, oh * ow) @ cols.swapaxes(2, 3)).sum(axis=0)
    return gW.reshape(O, r, r, -1).transpose(0, 3, 1, 2)
