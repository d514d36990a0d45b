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


def _power(s, beta, xp):
    """s^-β; for AlexNet's β = 0.75 as 1/(√s·√√s): two square roots cost a fifth of a pow."""
    if beta == 0.75:
        root = xp.sqrt(s)
        return 1.0 / (root * xp.sqrt(root))
    return xp.power(s, -beta)


class LocalResponseNorm(Function):
    """y = x · s^-β, s = k + alpha/n · Σ_window x², x and y (N, C, H, W).

    The window sum is n shifted adds. (A band-matrix GEMM, (C, C) @ (C, H·W), was 0.14 ms
    faster at CaffeNet's norm1 and slower at norm2; its other summation order also flipped a
    near-tie in tests/test_bench_agreement.py's 20-iteration CaffeNet run, so it was dropped.)
    """

    def forward(self, x, size, alpha=1e-4, beta=0.75, k=1.0):
        if x.ndim != 4:
            raise ValueError(f"local_response_norm expects (N, C, H, W), got shape {x.shape}")
        if size < 1:
            raise ValueError(f"local_response_norm: size must be >= 1, got {size}")
        xp = get_array_module(x)
        self.before, self.after = size // 2, (size - 1) // 2
        self.scale, self.beta = alpha / size, beta
        self.s = k + self.scale * window_sum(x * x, self.before, self.after)  # (N, C, H, W)
        self.d = _power(self.s, beta, xp)  # (k + alpha/n Σx²)^-β, reused by backward
        self.x = x
        self.y = x * self.d
        return self.y

    def backward(self, gy):
        # dy_c/dx_j = δ_cj s_c^-β - 2β·(alpha/n)·x_c x_j s_c^(-β-1) for j in window(c); the
        # adjoint of the window sum runs the window backwards (after <-> before).
        direct = gy * self.d
        coupled = window_sum(gy * self.y / self.s, self.after, self.before)
        return direct - 2 * self.beta * self.scale * self.x * coupled
