"""2-D convolution by im2col + GEMM.

Conventions: NCHW input, OIHW weights (out, in/groups, kh, kw), cross-correlation (as in
PyTorch and Caffe), zero padding, output size floor((H + 2p - d(k-1) - 1) / s) + 1.
im2col copies one strided slice per kernel offset (kh·kw copies, no loop over pixels or
channels); col2im is the mirror with ``+=``.
"""
from ..backend import get_array_module
from ..tensor import Function


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


def im2col(xp_pad, kh, kw, sy, sx, dy, dx, oh, ow):
    """(N, C, Hp, Wp) padded input -> (N, C, kh, kw, oh, ow) columns."""
    xp = get_array_module(xp_pad)
    N, C = xp_pad.shape[:2]
    cols = xp.empty((N, C, kh, kw, oh, ow), dtype=xp_pad.dtype)
    for i, rows in enumerate(window_slices(kh, sy, dy, oh)):
        for j, columns in enumerate(window_slices(kw, sx, dx, ow)):
            cols[:, :, i, j] = xp_pad[:, :, rows, columns]
    return cols


def col2im(cols, padded_shape, sy, sx, dy, dx):
    """Adjoint of im2col: (N, C, kh, kw, oh, ow) -> (N, C, Hp, Wp), summing overlaps."""
    xp = get_array_module(cols)
    N, C, kh, kw, oh, ow = cols.shape
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    for i, rows in enumerate(window_slices(kh, sy, dy, oh)):
        for j, columns in enumerate(window_slices(kw, sx, dx, ow)):
            out[:, :, rows, columns] += cols[:, :, i, j]
    return out


def conv_output_size(size, k, s, p, d=1):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class Conv2d(Function):
    """y[n, o] = b[o] + Σ_{c,i,j} W[o, c, i, j] · x_pad[n, g·Cg + c, s·u + d·i, s·v + d·j]."""

    def forward(self, x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
        (sy, sx), (ph, pw), (dy, dx) = pair(stride, "stride"), pair(padding, "padding"), pair(
            dilation, "dilation")
        _check_conv(x, W, b, groups)
        xp = get_array_module(x, W)
        N, C, H, Wd = x.shape
        O, Cg, kh, kw = W.shape
        oh, ow = conv_output_size(H, kh, sy, ph, dy), conv_output_size(Wd, kw, sx, pw, dx)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"conv2d: kernel {kh}x{kw} (dilation {dy}x{dx}) is larger than the padded input "
                f"{H + 2 * ph}x{Wd + 2 * pw} (input shape {x.shape})"
            )
        x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        cols = im2col(x_pad, kh, kw, sy, sx, dy, dx, oh, ow)  # (N, C, kh, kw, oh, ow)
        cols = cols.reshape(N, groups, Cg * kh * kw, oh * ow)  # (N, G, K, L)
        W_mat = W.reshape(groups, O // groups, Cg * kh * kw)  # (G, Og, K)
        y = (W_mat @ cols).reshape(N, O, oh, ow)  # (N, G, Og, L) -> (N, O, oh, ow)
        if b is not None:
            y += b.reshape(1, O, 1, 1)
        self.params = (x_pad.shape, (sy, sx), (ph, pw), (dy, dx), groups, (kh, kw))
        self.W_mat = W_mat if self.needs_input_grad[0] else None
        self.cols = cols if self.needs_input_grad[1] else None  # kept only for the weight gradient
        return y

    def backward(self, gy):
        padded_shape, (sy, sx), (ph, pw), (dy, dx), G, (kh, kw) = self.params
        N, O, oh, ow = gy.shape
        gy_mat = gy.reshape(N, G, O // G, oh * ow)  # (N, G, Og, L)
        gx = gW = gb = None
        if self.needs_input_grad[0]:
            gcols = self.W_mat.swapaxes(1, 2) @ gy_mat  # (N, G, K, L)
            C = padded_shape[1]
            gcols = gcols.reshape(N, C, kh, kw, oh, ow)
            gx = col2im(gcols, padded_shape, sy, sx, dy, dx)
            gx = gx[:, :, ph:padded_shape[2] - ph, pw:padded_shape[3] - pw]
        if self.needs_input_grad[1]:
            gW = (gy_mat @ self.cols.swapaxes(2, 3)).sum(axis=0)  # (G, Og, K)
            gW = gW.reshape(O, -1, kh, kw)  # (O, Cg, kh, kw)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gW, gb


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
