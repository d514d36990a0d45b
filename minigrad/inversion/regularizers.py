"""Image priors of the inversion: the α-norm and the total variation TV^β (paper-spec §1, §3).

Both are fused ops with a hand-written backward (one vectorised pass each way over the whole
array), because they run at every iteration on the full canvas. The tests check them with
``minigrad.gradcheck`` in float64 and against the same formula composed from ``F`` ops.

Shapes: ``x`` is (N, C, H, W). ``reduction="sum"`` returns a scalar Tensor summed over the
batch; ``reduction="none"`` returns one value per image, shape (N,), which is what the
inversion loop uses to keep restarts independent.
"""
from ..backend import get_array_module
from ..tensor import Function


def _ipow(a, k):
    """a**k for a non-negative integer k by repeated squaring (far faster than pow)."""
    result = None
    while k:
        if k & 1:
            result = a if result is None else result * a
        k >>= 1
        if k:
            a = a * a
    return get_array_module(a).ones_like(a) if result is None else result


def _even(a):
    return a == int(a) and int(a) % 2 == 0 and a >= 2


def _reduce(per_image, reduction):
    if reduction == "none":
        return per_image
    if reduction == "sum":
        return per_image.sum()
    raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")


class AlphaNorm(Function):
    """Element-wise Σ|x|^α (CVPR15), or per-pixel colour norm Σ_uv ‖x_uv‖₂^α (IJCV16).

    Per image: value (N,). ``scale`` multiplies the result (1/HW for the IJCV16 form).
    """

    def forward(self, x, alpha, per_pixel, scale):
        xp = get_array_module(x)
        self.x, self.alpha, self.per_pixel, self.scale = x, alpha, per_pixel, scale
        if per_pixel:
            self.sq = (x * x).sum(axis=1, keepdims=True)  # (N, 1, H, W): ‖x_uv‖²
            val = _ipow(self.sq, int(alpha) // 2) if _even(alpha) else self.sq ** (alpha / 2)
        elif _even(alpha):
            val = _ipow(x * x, int(alpha) // 2)
        else:
            val = xp.abs(x) ** alpha
        return val.reshape(x.shape[0], -1).sum(axis=1) * scale  # (N,)

    def backward(self, gy):
        x, a = self.x, self.alpha
        xp = get_array_module(x)
        g = (gy * self.scale).reshape(-1, 1, 1, 1)  # (N,) -> (N, 1, 1, 1)
        if self.per_pixel:
            # d‖x‖^α/dx = α ‖x‖^(α-2) x; at x = 0 the gradient is 0 for α > 1
            if _even(a):
                w = _ipow(self.sq, int(a) // 2 - 1)
            elif a >= 2:
                w = self.sq ** (a / 2 - 1)
            else:
                w = xp.where(self.sq > 0, self.sq, 1) ** (a / 2 - 1)
            return (g * a) * w * x
        if _even(a):  # even α (the papers' α = 6): α x^(α-1) = α (x²)^(α/2-1) x, no abs
            return (g * a) * _ipow(x * x, int(a) // 2 - 1) * x
        return g * a * xp.abs(x) ** (a - 1) * xp.sign(x)


def alpha_norm(x, alpha=6.0, per_pixel=False, normalize=False, reduction="sum"):
    """The α-norm prior.

    - ``per_pixel=False``: R_α(x) = Σ_{n,c,u,v} |x|^α (CVPR15, element-wise).
    - ``per_pixel=True``: N_α(x) = Σ_uv ‖x_uv‖₂^α with the norm over the colour axis (IJCV16).
    - ``normalize=True`` divides by H·W (the IJCV16 (1/HW) factor).

    x: Tensor (N, C, H, W). Returns a scalar (``reduction="sum"``) or (N,) (``"none"``).
    """
    h, w = x.shape[-2:]
    scale = 1.0 / (h * w) if normalize else 1.0
    return _reduce(AlphaNorm.apply(x, alpha=float(alpha), per_pixel=bool(per_pixel),
                                   scale=scale), reduction)


class TotalVariation(Function):
    """Σ_{c,i,j} (dx² + dy²)^(β/2) with forward differences and a replicate boundary.

    dx[i, j] = x[i, j+1] - x[i, j] (0 in the last column), dy likewise (0 in the last row);
    each channel separately (paper-spec §1). Per image: (N,).
    """

    def forward(self, x, beta, scale):
        xp = get_array_module(x)
        dx = xp.zeros_like(x)
        dy = xp.zeros_like(x)
        dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]  # (N, C, H, W-1) into (N, C, H, W)
        dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]  # (N, C, H-1, W) into (N, C, H, W)
        s = dx * dx + dy * dy
        self.dx, self.dy, self.s, self.beta, self.scale = dx, dy, s, beta, scale
        val = s if beta == 2 else s ** (beta / 2)
        return val.reshape(x.shape[0], -1).sum(axis=1) * scale  # (N,)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = (gy * self.scale).reshape(-1, 1, 1, 1)  # (N,) -> (N, 1, 1, 1)
        b = self.beta
        if b == 2:
            w = 2 * g
        else:  # d s^(β/2) / d dx = β s^(β/2-1) dx; where s = 0 the subgradient 0 is used
            safe = xp.where(self.s > 0, self.s, 1)
            w = g * b * xp.where(self.s > 0, safe ** (b / 2 - 1), 0)
        gdx, gdy = w * self.dx, w * self.dy  # gradients w.r.t. the differences
        gx = -gdx - gdy
        gx[..., :, 1:] += gdx[..., :, :-1]  # x[i, j+1] gets +gdx[i, j]
        gx[..., 1:, :] += gdy[..., :-1, :]  # x[i+1, j] gets +gdy[i, j]
        return gx


def total_variation(x, beta=2.0, normalize=False, reduction="sum"):
    """TV^β(x) = Σ_{c,i,j} ((x[i,j+1]-x[i,j])² + (x[i+1,j]-x[i,j])²)^(β/2), per channel.

    Forward differences with a replicate boundary (the last row/column difference is 0).
    ``normalize=True`` divides by H·W (IJCV16). β = 2 in the papers; β < 2 uses the
    subgradient 0 where both differences vanish. x: Tensor (N, C, H, W).
    """
    h, w = x.shape[-2:]
    scale = 1.0 / (h * w) if normalize else 1.0
    return _reduce(TotalVariation.apply(x, beta=float(beta), scale=scale), reduction)
