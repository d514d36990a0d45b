"""Local response normalisation across channels (AlexNet's LRN), PyTorch/Caffe semantics.

    y_c = x_c / (k + alpha/n · Σ_{c' ∈ window(c)} x_c'²)^beta,
    window(c) = [c - n//2, c + (n-1)//2] clipped to the channels.

MatConvNet's and Chainer's ``alpha`` is this alpha/n.
"""
from .. import backend
from ..backend import get_array_module
from ..tensor import Function


def window_sum(a, before, after):
    """s_c = Σ_{c'=c-before}^{c+after} a_c' over axis 1, zero outside (one slice add per offset)."""
    C = a.shape[1]
    padded = backend.pad(a, ((0, 0), (before, after), (0, 0), (0, 0)))
    total = padded[:, 0:C].copy()
    for shift in range(1, before + after + 1):
        total += padded[:, shift:shift + C]
    return total


# Up to this many channels the window sum runs as one band-matrix GEMM (2·C² flops per pixel,
# 0.63 vs 0.77 ms at CaffeNet's norm1, 96 channels); beyond, n shifted adds are cheaper (norm2,
# 256 channels: 1.0 vs 1.8 ms).
BAND_GEMM_CHANNELS = 128


def band_matrix(C, before, after, xp, dtype):
    """(C, C) B with B[c, c'] = 1 for c - before ≤ c' ≤ c + after: window_sum(a) = B @ a."""
    c = xp.arange(C)
    offset = c[None, :] - c[:, None]
    return ((offset >= -before) & (offset <= after)).astype(dtype)


def _power(s, beta, xp):
    """s^-β; for AlexNet's β = 0.75 as 1/(√s·√√s): two square roots cost a fifth of a pow."""
    if beta == 0.75:
        root = xp.sqrt(s)
        return 1.0 / (root * xp.sqrt(root))
    return xp.power(s, -beta)


def _band_sum(a, before, after, band):
    """window_sum(a, before, after), as band @ a when a band matrix is given."""
    if band is None:
        return window_sum(a, before, after)
    N, C, H, W = a.shape
    return (band @ a.reshape(N, C, H * W)).reshape(a.shape)


class LocalResponseNorm(Function):
    """y = x · s^-β, s = k + alpha/n · B x² with B the (C, C) band of each channel's window.

    The window sum over channels is one GEMM per image, (C, C) @ (C, H·W), for up to
    BAND_GEMM_CHANNELS channels, and n shifted adds above; the backward uses Bᵀ (the window run
    backwards). x, y: (N, C, H, W).
    """

    def forward(self, x, size, alpha=1e-4, beta=0.75, k=1.0):
        if x.ndim != 4:
            raise ValueError(f"local_response_norm expects (N, C, H, W), got shape {x.shape}")
        if size < 1:
            raise ValueError(f"local_response_norm: size must be >= 1, got {size}")
        xp = get_array_module(x)
        C, self.before, self.after = x.shape[1], size // 2, (size - 1) // 2
        self.band = None
        if C <= BAND_GEMM_CHANNELS:
            self.band = band_matrix(C, self.before, self.after, xp, x.dtype)
        self.scale, self.beta = alpha / size, beta
        sums = _band_sum(x * x, self.before, self.after, self.band)
        self.s = k + self.scale * sums  # (N, C, H, W)
        self.d = _power(self.s, beta, xp)  # (k + alpha/n Σx²)^-β, reused by backward
        self.x = x
        self.y = x * self.d
        return self.y

    def backward(self, gy):
        # dy_c/dx_j = δ_cj s_c^-β - 2β·(alpha/n)·x_c x_j s_c^(-β-1) for j in window(c); the
        # adjoint of the window sum is the transposed band.
        direct = gy * self.d
        band_t = None if self.band is None else self.band.T
        coupled = _band_sum(gy * self.y / self.s, self.after, self.before, band_t)
        return direct - 2 * self.beta * self.scale * self.x * coupled
