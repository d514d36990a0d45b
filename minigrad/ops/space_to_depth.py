"""A strided convolution as a stride-1 one: space-to-depth of the input and of the kernel.

With stride s, write each kernel offset i = s·a + dy (0 ≤ dy < s). Then

    y[o, u, v] = Σ_{c,i,j} W[o, c, i, j] x_pad[c, s·u + i, s·v + j]
               = Σ_{(c,dy,dx),a,b} W2[o, (c,dy,dx), a, b] X2[(c,dy,dx), u + a, v + b],

X2[(c, dy, dx), p, q] = x_pad[c, s·p + dy, s·q + dx] (C·s² channels, 1/s the size) and
W2[o, (c, dy, dx), a, b] = W[o, c, s·a + dy, s·b + dx] (the kernel zero-padded to a multiple
of s, ceil(k/s) wide). AlexNet's conv1, 11×11 stride 4 on 3 channels, becomes a 3×3 stride-1
conv on 48 channels, which Winograd then runs. The channel order (c, dy, dx) keeps groups
contiguous.
"""
from ..backend import get_array_module
from ..tensor import Function
from .winograd import _pad_or_crop


def folded_size(out, k, s):
    """Rows of X2 a conv with output size ``out``, kernel k and stride s reads."""
    return out - 1 + -(-k // s)


def fold_weight(W, s):
    """(O, C, kh, kw) -> (O, C·s², ceil(kh/s), ceil(kw/s)): W2 above."""
    xp = get_array_module(W)
    O, C, kh, kw = W.shape
    ah, aw = -(-kh // s), -(-kw // s)
    padded = xp.zeros((O, C, ah * s, aw * s), dtype=W.dtype)
    padded[:, :, :kh, :kw] = W
    folded = padded.reshape(O, C, ah, s, aw, s).transpose(0, 1, 3, 5, 2, 4)
    return xp.ascontiguousarray(folded).reshape(O, C * s * s, ah, aw)


class SpaceToDepth(Function):
    """X2 = fold(pad(x)): (N, C, H, W) -> (N, C·s², Hs, Ws), X2[n, (c,dy,dx), p, q] =
    x_pad[n, c, s·p + dy, s·q + dx], x_pad zero-padded by ``top``/``left`` and padded or
    cropped at the bottom/right to exactly s·Hs × s·Ws. The backward is the inverse reshape."""

    def forward(self, x, s, top, left, Hs, Ws):
        N, C, H, W = x.shape
        x_pad = _pad_or_crop(x, top, Hs * s - H - top, left, Ws * s - W - left)
        folded = x_pad.reshape(N, C, Hs, s, Ws, s).transpose(0, 1, 3, 5, 2, 4)
        self.geometry = (x.shape, s, top, left, Hs, Ws)
        return get_array_module(x).ascontiguousarray(folded).reshape(N, C * s * s, Hs, Ws)

    def backward(self, g):
        (N, C, H, W), s, top, left, Hs, Ws = self.geometry
        unfolded = g.reshape(N, C, s, s, Hs, Ws).transpose(0, 1, 4, 2, 5, 3)
        g_pad = unfolded.reshape(N, C, Hs * s, Ws * s)  # a copy (the transpose is not a view)
        return _pad_or_crop(g_pad, -top, H + top - Hs * s, -left, W + left - Ws * s)


class FoldWeight(Function):
    """W2 = fold_weight(W, s) as an op, for a trainable weight; the backward unfolds and crops."""

    def forward(self, W, s):
        self.shape, self.s = W.shape, s
        return fold_weight(W, s)

    def backward(self, g):
        O, C, kh, kw = self.shape
        s, ah, aw = self.s, g.shape[2], g.shape[3]
        unfolded = g.reshape(O, C, s, s, ah, aw).transpose(0, 1, 4, 2, 5, 3)
        return unfolded.reshape(O, C, ah * s, aw * s)[:, :, :kh, :kw]
