"""Pooling: max, average and adaptive average, over NCHW inputs.

Output size is floor((H + 2p - k) / s) + 1, or with ``ceil_mode=True`` (Caffe's nets) the
ceiling, dropping a last window that would start inside the right padding (PyTorch's rule).
Max-pool ties send the whole gradient to the first maximum in scan order, as PyTorch does.
"""
import math

from .. import backend
from ..backend import get_array_module
from ..tensor import Function
from .conv import pair, window_slices


def pool_output_size(n, k, stride, pad=0, ceil_mode=False):
    """Output length of a pooling along one axis of input length ``n``.

    floor((n + 2·pad − k) / stride) + 1, or with ``ceil_mode`` the ceiling, less one when the
    last window would start in the right padding: it must start inside the input (or the left
    padding), Caffe's and PyTorch's rule.
    """
    if ceil_mode:
        out = math.ceil((n + 2 * pad - k) / stride) + 1
        if (out - 1) * stride >= n + pad:  # the last window would start in the padding
            out -= 1
    else:
        out = (n + 2 * pad - k) // stride + 1
    return out


def _pool_geometry(x, kernel_size, stride, padding, ceil_mode, name):
    (kh, kw) = pair(kernel_size, "kernel_size")
    (sy, sx) = pair(stride if stride is not None else (kh, kw), "stride")
    (ph, pw) = pair(padding, "padding")
    if x.ndim != 4:
        raise ValueError(f"{name} expects a 4-D input (N, C, H, W), got shape {x.shape}")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: padding {(ph, pw)} must be at most half the kernel {(kh, kw)}")
    H, W = x.shape[2:]
    oh, ow = pool_output_size(H, kh, sy, ph, ceil_mode), pool_output_size(W, kw, sx, pw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{name}: kernel {(kh, kw)} is larger than the padded input "
            f"{(H + 2 * ph, W + 2 * pw)} (input shape {x.shape}, padding {(ph, pw)})"
        )
    # total padding: the symmetric p, plus what ceil mode's last window needs on the right
    extra_h = max((oh - 1) * sy + kh - (H + 2 * ph), 0)
    extra_w = max((ow - 1) * sx + kw - (W + 2 * pw), 0)
    pads = ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w))
    rows, cols = window_slices(kh, sy, 1, oh), window_slices(kw, sx, 1, ow)
    offsets = [(r, c) for r in rows for c in cols]
    return pads, offsets


def _max_along(a, axis, k, s, out, best=None):
    """Max over k strided windows along one axis (into ``best`` if given), and per offset
    t ≥ 1 where it beat the max of offsets 0..t-1 (boolean masks: two passes per offset,
    against five for winner indices)."""
    xp = get_array_module(a)
    index = [slice(None)] * a.ndim
    beats = []
    for t, window in enumerate(window_slices(k, s, 1, out)):
        index[axis] = window
        candidate = a[tuple(index)]
        if t == 0:
            best = candidate.copy() if best is None else _assign(best, candidate)
            continue
        beats.append(candidate > best)  # strict: ties keep the first maximum
        xp.maximum(best, candidate, out=best)
    return best, beats


def _assign(out, value):
    out[...] = value
    return out


def _route_back(g, beats, axis, k, s, out):
    """Adjoint of _max_along, into ``out`` (the input's shape): the winner is the last offset
    whose mask is set (else offset 0), so walk the offsets backwards, each taking the gradient
    it won from what is left."""
    tiled = k == s and out.shape[axis] == k * g.shape[axis]  # windows partition the axis
    if not tiled:
        out[...] = 0
    index = [slice(None)] * g.ndim
    windows = window_slices(k, s, 1, g.shape[axis])
    left = g
    for t in range(k - 1, 0, -1):
        index[axis] = windows[t]
        won = left * beats[t - 1]
        if tiled:
            out[tuple(index)] = won  # disjoint windows: assign, no zero fill and no add
        else:
            out[tuple(index)] += won
        left = left - won
    index[axis] = windows[0]
    if tiled:
        out[tuple(index)] = left
    else:
        out[tuple(index)] += left
    return out


class MaxPool2d(Function):
    """Max over each window, computed separably: over the rows of a window, then its columns.

    The max over a kh×kw window equals the max over columns of the per-column maxima, so two
    passes of kh and kw slices replace kh·kw slices. Ties go to one element (the first row in
    the winning column, the first such column), which is all a subgradient needs. Pieces of
    the batch or channels run on the workers of a parallel block (``backend.parallel_for``).
    """

    def forward(self, x, kernel_size, stride=None, padding=0, ceil_mode=False):
        xp = get_array_module(x)
        (kh, kw), (sy, sx) = pair(kernel_size), pair(stride if stride is not None else kernel_size)
        pads, offsets = _pool_geometry(x, kernel_size, stride, padding, ceil_mode, "max_pool2d")
        oh = _count(offsets[0][0])
        ow = _count(offsets[0][1])
        padded = any(p for pair_ in pads for p in pair_)
        x_pad = backend.pad(x, pads, -xp.inf) if padded else x  # (N, C, Hp, Wp)
        y = xp.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        self.pieces = []  # (index, row masks, column masks) per piece

        def piece(i):
            rows_max, row_beats = _max_along(x_pad[i], 2, kh, sy, oh)  # (N, C, oh, Wp)
            _, col_beats = _max_along(rows_max, 3, kw, sx, ow, best=y[i])  # (N, C, oh, ow)
            self.pieces.append((i, row_beats, col_beats))
        backend.parallel_for(piece, x_pad)
        self.geometry = (kh, kw, sy, sx, pads, x_pad.shape)
        return y

    def backward(self, gy):
        kh, kw, sy, sx, pads, padded_shape = self.geometry
        xp = get_array_module(gy)
        gx = xp.empty(padded_shape, dtype=gy.dtype)

        def piece(entry):
            i, row_beats, col_beats = entry
            rows_shape = gx[i].shape[:2] + (gy.shape[2], padded_shape[3])
            g_rows = _route_back(gy[i], col_beats, 3, kw, sx,
                                 xp.empty(rows_shape, dtype=gy.dtype))  # (N, C, oh, Wp)
            _route_back(g_rows, row_beats, 2, kh, sy, gx[i])  # (N, C, Hp, Wp)
        backend.parallel_map(piece, self.pieces, like=gy)
        return _crop(gx, pads)


def _count(window):
    return (window.stop - window.start - 1) // window.step + 1


class AvgPool2d(Function):
    """Mean over each window; with count_include_pad the zero padding counts (PyTorch's default).

    Windows that ceil mode lets run past the padded input divide by their in-bounds size only.
    """

    def forward(self, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True):
        xp = get_array_module(x)
        pads, self.offsets = _pool_geometry(x, kernel_size, stride, padding, ceil_mode,
                                            "avg_pool2d")
        x_pad = backend.pad(x, pads)
        ones = xp.ones((1, 1) + x.shape[2:], dtype=x.dtype)  # which positions count
        ph, pw = pads[2][0], pads[3][0]
        counted = xp.pad(ones, ((0, 0), (0, 0), (ph, ph), (pw, pw)),
                         constant_values=1.0 if count_include_pad else 0.0)
        counted = xp.pad(counted, ((0, 0), (0, 0), (0, pads[2][1] - ph), (0, pads[3][1] - pw)))
        y = sum(x_pad[:, :, r, c] for r, c in self.offsets)  # (N, C, oh, ow)
        self.divisor = sum(counted[:, :, r, c] for r, c in self.offsets)  # (1, 1, oh, ow)
        self.pads, self.padded_shape = pads, x_pad.shape
        return y / self.divisor

    def backward(self, gy):
        xp = get_array_module(gy)
        g = gy / self.divisor
        gx = xp.zeros(self.padded_shape, dtype=gy.dtype)
        for rows, cols in self.offsets:
            gx[:, :, rows, cols] += g
        return _crop(gx, self.pads)


def _crop(gx_pad, pads):
    (top, bottom), (left, right) = pads[2], pads[3]
    return gx_pad[:, :, top:gx_pad.shape[2] - bottom, left:gx_pad.shape[3] - right]


def adaptive_bins(size, out, xp, dtype):
    """(out, size) averaging matrix: bin i covers [floor(i·size/out), ceil((i+1)·size/out))."""
    i = xp.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    pos = xp.arange(size)
    member = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])  # (out, size)
    return (member / (end - start)[:, None]).astype(dtype)


class AdaptiveAvgPool2d(Function):
    """PyTorch's adaptive average pooling, as two small matrix products: P_h · x · P_wᵀ."""

    def forward(self, x, output_size):
        xp = get_array_module(x)
        if x.ndim != 4:
            raise ValueError(f"adaptive_avg_pool2d expects (N, C, H, W), got {x.shape}")
        oh, ow = pair(output_size, "output_size")
        if oh < 1 or ow < 1:
            raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {(oh, ow)}")
        self.P_h = adaptive_bins(x.shape[2], oh, xp, x.dtype)  # (oh, H)
        self.P_w = adaptive_bins(x.shape[3], ow, xp, x.dtype)  # (ow, W)
        return self.P_h @ x @ self.P_w.T  # (N, C, oh, ow)

    def backward(self, gy):
        return self.P_h.T @ gy @ self.P_w  # (N, C, H, W)
