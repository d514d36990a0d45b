"""2-D convolution by im2col + GEMM.

Conventions: NCHW input, OIHW weights (out, in/groups, kh, kw), cross-correlation (as in
PyTorch and Caffe), zero padding, output size floor((H + 2p - d(k-1) - 1) / s) + 1.
im2col copies one strided slice per kernel offset (kh·kw copies, no loop over pixels or
channels); col2im is the mirror with ``+=``.
"""
from .. import backend
from ..backend import get_array_module
from ..tensor import Function
from . import linalg


def pair(v, name="argument"):
    """2 -> (2, 2); (2, 3) stays (2, 3)."""
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(e) for e in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def window_slices(k, s, d, out):
    """For each kernel offset along one axis, the strided slice of the padded input it reads."""
    return [slice(i * d, i * d + s * (out - 1) + 1, s) for i in range(k)]


def im2col(x_pad, kh, kw, sy, sx, dy, dx, oh, ow, groups=1):
    """(N, C, Hp, Wp) padded input -> (N, G, kh, kw, C/G, oh, ow) columns.

    A strided view picks every window element without copying; one copy then lays the
    columns out contiguously. The kernel offset comes before the channel so that col2im adds
    whole (C/G, oh, ow) blocks; the weights are reordered to match (see ``weight_matrix``).
    """
    N, C, Hp, Wp = x_pad.shape
    sN, sC, sH, sW = x_pad.strides
    Cg = C // groups
    windows = backend.as_strided(  # windows[n, g, i, j, c, u, v] = x_pad[n, g·Cg + c, ...]
        x_pad, (N, groups, kh, kw, Cg, oh, ow),
        (sN, sC * Cg, sH * dy, sW * dx, sC, sH * sy, sW * sx))
    return get_array_module(x_pad).ascontiguousarray(windows)


def col2im(cols, out, sy, sx, dy, dx):
    """Adjoint of im2col: add (N, G, kh, kw, C/G, oh, ow) columns into out (N, C, Hp, Wp),
    or (N, G, C/G, Hp, Wp)."""
    N, G, kh, kw, Cg, oh, ow = cols.shape
    out_groups = out if out.ndim == 5 else out.reshape(N, G, Cg, *out.shape[2:])  # a view
    for i, rows in enumerate(window_slices(kh, sy, dy, oh)):
        for j, columns in enumerate(window_slices(kw, sx, dx, ow)):
            out_groups[..., rows, columns] += cols[:, :, i, j]
    return out


def weight_matrix(W, groups):
    """(O, Cg, kh, kw) -> (G, O/G, kh·kw·Cg), in the column order of im2col."""
    O, Cg, kh, kw = W.shape
    W = W.reshape(groups, O // groups, Cg, kh, kw).transpose(0, 1, 3, 4, 2)  # (G, Og, kh, kw, Cg)
    return W.reshape(groups, O // groups, kh * kw * Cg)


def conv_output_size(n, k, stride=1, pad=0, dilation=1):
    """Output length of a convolution along one axis of input length ``n``:
    floor((n + 2·pad − dilation·(k − 1) − 1) / stride) + 1 (below 1: the kernel does not fit)."""
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


# im2col buffers above this many elements are built in blocks of output rows (when no weight
# gradient needs them kept): VGG-16's conv1_2 would otherwise take 115 MB of columns.
COLS_BUDGET = 2 ** 23


def row_blocks(oh, elements_per_row, whole=False):
    """Ranges of output rows whose im2col columns fit in COLS_BUDGET elements."""
    rows = oh if whole else max(1, min(oh, COLS_BUDGET // elements_per_row))
    return [(r, min(r + rows, oh)) for r in range(0, oh, rows)]


def input_rows(r0, r1, sy, dy, kh):
    """The padded-input rows that output rows [r0, r1) read."""
    return slice(r0 * sy, (r1 - 1) * sy + dy * (kh - 1) + 1)


# in a parallel block the input gradient splits input channels over the workers when each gets
# at least this many (its kh·kw GEMMs of that many rows); VGG's conv1_1 (3 channels) splits
# the rows of its one GEMM instead: 9 GEMMs of 1–2 rows made it 1.5× slower
MIN_SPLIT_CHANNELS = 16


class Conv2d(Function):
    """y[n, o] = b[o] + Σ_{c,i,j} W[o, c, i, j] · x_pad[n, g·Cg + c, s·u + d·i, s·v + d·j].

    One GEMM per group, (Og, K) @ (K, L), with K = kh·kw·Cg and L the output pixels; large
    inputs run it over blocks of output rows so that the columns stay within COLS_BUDGET.
    """

    def forward(self, x, W, b=None, stride=1, padding=0, dilation=1, groups=1, W_mat=None):
        (sy, sx), (ph, pw), (dy, dx) = pair(stride, "stride"), pair(padding, "padding"), pair(
            dilation, "dilation")
        _check_conv(x, W, b, groups)
        xp = get_array_module(x, W)
        N, C, H, Wd = x.shape
        O, Cg, kh, kw = W.shape
        G, K = groups, kh * kw * Cg
        oh, ow = conv_output_size(H, kh, sy, ph, dy), conv_output_size(Wd, kw, sx, pw, dx)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"conv2d: kernel {kh}x{kw} (dilation {dy}x{dx}) is larger than the padded input "
                f"{H + 2 * ph}x{Wd + 2 * pw} (input shape {x.shape})"
            )
        x_pad = backend.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        if W_mat is None:  # a constant weight passes its cached matrix (functional.conv2d)
            W_mat = weight_matrix(W, G)  # (G, Og, K)
        blocks = row_blocks(oh, N * G * K * ow, whole=self.needs_input_grad[1])
        y = None if len(blocks) == 1 else xp.empty((N, G, O // G, oh, ow), dtype=x.dtype)
        for r0, r1 in blocks:
            x_rows = x_pad[:, :, input_rows(r0, r1, sy, dy, kh)]
            cols = im2col(x_rows, kh, kw, sy, sx, dy, dx, r1 - r0, ow, G)  # (N,G,kh,kw,Cg,rb,ow)
            cols = cols.reshape(N, G, K, (r1 - r0) * ow)  # (N, G, K, L)
            y_rows = linalg.split_matmul(W_mat, cols)  # (N, G, Og, L)
            if y is None:
                y = y_rows
            else:
                y[:, :, :, r0:r1] = y_rows.reshape(N, G, O // G, r1 - r0, ow)
        y = y.reshape(N, O, oh, ow)
        if b is not None:
            y += b.reshape(1, O, 1, 1)
        self.params = (x_pad.shape, (sy, sx), (ph, pw), (dy, dx), G, (kh, kw), blocks)
        self.W_mat = W_mat if self.needs_input_grad[0] else None
        self.cols = cols if self.needs_input_grad[1] else None  # kept only for the weight gradient
        return y

    def backward(self, gy):
        padded_shape, (sy, sx), (ph, pw), (dy, dx), G, (kh, kw), blocks = self.params
        N, O, oh, ow = gy.shape
        gx = gW = gb = None
        if self.needs_input_grad[0]:
            gx = self._input_gradient(gy)
            gx = gx[:, :, ph:padded_shape[2] - ph, pw:padded_shape[3] - pw]
        if self.needs_input_grad[1]:
            gy_mat = gy.reshape(N, G, O // G, oh * ow)  # (N, G, Og, L)
            gW = (gy_mat @ self.cols.swapaxes(2, 3)).sum(axis=0)  # (G, Og, K)
            gW = gW.reshape(O, kh, kw, -1).transpose(0, 3, 1, 2)  # (O, Cg, kh, kw)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gW, gb

    def _input_gradient(self, gy):
        """gx_pad = col2im(Wᵀ gy), per block of output rows. In a parallel block, with enough
        input channels, each worker takes a range of them: its rows of Wᵀ, then col2im into its
        own channels of gx (no two workers add into one element)."""
        padded_shape, (sy, sx), _, (dy, dx), G, (kh, kw), blocks = self.params
        N, O, oh, ow = gy.shape
        gx = get_array_module(gy).zeros(padded_shape, dtype=gy.dtype)
        gx_groups = gx.reshape(N, G, -1, *padded_shape[2:])  # (N, G, Cg, Hp, Wp)
        Cg, threads = gx_groups.shape[2], backend.parallel_threads(gy)
        by_channel = threads > 1 and Cg >= MIN_SPLIT_CHANNELS * threads
        W_t = self.W_mat.swapaxes(1, 2)  # (G, K, Og)
        W_t = W_t.reshape(G, kh * kw, Cg, O // G) if by_channel else W_t
        gy_groups = gy.reshape(N, G, O // G, oh, ow)
        for r0, r1 in blocks:
            g_rows = gy_groups[:, :, :, r0:r1].reshape(N, G, O // G, (r1 - r0) * ow)
            rows = input_rows(r0, r1, sy, dy, kh)
            if not by_channel:  # one GEMM (its rows split over any workers), one col2im
                gcols = linalg.split_matmul(W_t, g_rows)  # (N, G, K, L)
                col2im(gcols.reshape(N, G, kh, kw, Cg, r1 - r0, ow), gx_groups[..., rows, :],
                       sy, sx, dy, dx)
                continue

            def channels(bounds, g_rows=g_rows, rows=rows, height=r1 - r0):
                c0, c1 = bounds
                gcols = W_t[:, :, c0:c1] @ g_rows[:, :, None]  # (N, G, kh·kw, cc, L)
                col2im(gcols.reshape(N, G, kh, kw, c1 - c0, height, ow),
                       gx_groups[:, :, c0:c1, rows], sy, sx, dy, dx)
            backend.parallel_map(channels, backend.split_range(Cg, threads), like=gy)
        return gx


def _check_conv(x, W, b, groups):
    if x.ndim != 4 or W.ndim != 4:
        raise ValueError(
            f"conv2d expects a 4-D input (N, C, H, W) and 4-D weight (O, C/groups, kh, kw), "
            f"got {x.shape} and {W.shape}"
        )
    C, O, Cg = x.shape[1], W.shape[0], W.shape[1]
    if C % groups or O % groups:
        raise ValueError(
            f"conv2d: input channels {C} and output channels {O} must both be divisible by "
            f"groups={groups}"
        )
    if C // groups != Cg:
        raise ValueError(
            f"conv2d: weight {W.shape} expects {Cg * groups} input channels "
            f"({Cg} per group, groups={groups}) but the input {x.shape} has {C}"
        )
    if b is not None and b.shape != (O,):
        raise ValueError(f"conv2d: bias shape {b.shape} does not match {O} output channels")
