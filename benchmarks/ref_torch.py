"""The same feature inversion as ``minigrad.invert``, written in PyTorch: a faithful reference.

    from benchmarks.ref_torch import TorchInversion
    ref = TorchInversion.build(rep, image, "conv5", preset="cvpr15", iters=20)
    ref.run()            # or ref.step() per iteration
    ref.result()         # (R, C, H, W) float32, input space: compare with invert(...).x

Same problem (``benchmarks.ref_common.Problem``: options, schedule, initial x from the same
seeded NumPy generator, mask, input scale, σ and weights of the terms), and in PyTorch:

- **the network** built from the minigrad representation's own arrays: CNNs layer for layer
  from ``models.cnn`` as torch.nn.functional calls on the same arrays (conv2d with groups,
  max_pool2d with ceil_mode, local_response_norm, linear after flatten/adaptive pool), HOG, HOGb
  and DSIFT from ``benchmarks.torch_features`` (fixed filter banks + autograd);
- **the energy** E = C·‖M(Φ(crop_J(s·x)) − Φ0)‖²/‖MΦ0‖² + w_α·R_α(x) + w_TV·TV_β(x), per
  image, summed over restarts. The α-norm and TV are ``torch.autograd.Function``s with
  minigrad's formulas and guards (forward differences, replicate boundary, subgradient 0 where
  s = 0 for β < 2; ‖x_uv‖^(α−2) with 0 at x_uv = 0 for per-pixel α < 2), so the gradients are
  the same, not merely equal almost everywhere;
- **the update**: CVPR15 momentum ``m ← μm − lr·σ²·g; x ← x + m`` (m reset when the rate
  changes), IJCV16 ``G ← ρG + g²; v ← μv − g/(1/η + √G); x ← x + v`` then the per-pixel
  projection onto ‖x_uv‖ ≤ B₊, with the same elementary float32 operations as
  ``minigrad/inversion/optim.py``.

Φ0 is computed by the PyTorch network from the same preprocessed image.
"""
import math
import time
import warnings

import numpy as np
import torch

from .ref_common import Problem


# --- regularisers: minigrad's formulas and guards (minigrad/inversion/regularizers.py) ------
def _ipow(a, k):
    """a**k by repeated squaring, the same products as minigrad's ``_ipow``."""
    result = None
    while k:
        if k & 1:
            result = a if result is None else result * a
        k >>= 1
        if k:
            a = a * a
    return torch.ones_like(a) if result is None else result


def _even(a):
    return a == int(a) and int(a) % 2 == 0 and a >= 2


class AlphaNorm(torch.autograd.Function):
    """Per image Σ|x|^α (or Σ_uv ‖x_uv‖^α with ``per_pixel``) · scale, shape (N,)."""

    @staticmethod
    def forward(ctx, x, alpha, per_pixel, scale):
        sq = None
        if per_pixel:
            sq = (x * x).sum(dim=1, keepdim=True)  # (N, 1, H, W)
            val = _ipow(sq, int(alpha) // 2) if _even(alpha) else sq ** (alpha / 2)
        elif _even(alpha):
            val = _ipow(x * x, int(alpha) // 2)
        else:
            val = torch.abs(x) ** alpha
        ctx.save_for_backward(x, sq if sq is not None else x)
        ctx.alpha, ctx.per_pixel, ctx.scale = alpha, per_pixel, scale
        return val.reshape(x.shape[0], -1).sum(dim=1) * scale

    @staticmethod
    def backward(ctx, gy):
        x, sq = ctx.saved_tensors
        a = ctx.alpha
        g = (gy * ctx.scale).reshape(-1, 1, 1, 1)
        if ctx.per_pixel:
            if _even(a):
                w = _ipow(sq, int(a) // 2 - 1)
            elif a >= 2:
                w = sq ** (a / 2 - 1)
            else:
                w = torch.where(sq > 0, sq, torch.ones_like(sq)) ** (a / 2 - 1)
            return (g * a) * w * x, None, None, None
        if _even(a):
            return (g * a) * _ipow(x * x, int(a) // 2 - 1) * x, None, None, None
        return g * a * torch.abs(x) ** (a - 1) * torch.sign(x), None, None, None


class TotalVariation(torch.autograd.Function):
    """Per image Σ (dx² + dy²)^(β/2) · scale, forward differences, last row/column 0."""

    @staticmethod
    def forward(ctx, x, beta, scale):
        dx = torch.zeros_like(x)
        dy = torch.zeros_like(x)
        dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
        dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
        s = dx * dx + dy * dy
        ctx.save_for_backward(dx, dy, s)
        ctx.beta, ctx.scale = beta, scale
        val = s if beta == 2 else s ** (beta / 2)
        return val.reshape(x.shape[0], -1).sum(dim=1) * scale

    @staticmethod
    def backward(ctx, gy):
        dx, dy, s = ctx.saved_tensors
        g = (gy * ctx.scale).reshape(-1, 1, 1, 1)
        b = ctx.beta
        if b == 2:
            w = 2 * g
        else:
            safe = torch.where(s > 0, s, torch.ones_like(s))
            w = g * b * torch.where(s > 0, safe ** (b / 2 - 1), torch.zeros_like(s))
        gdx, gdy = w * dx, w * dy
        gx = -gdx - gdy
        gx[..., :, 1:] += gdx[..., :, :-1]
        gx[..., 1:, :] += gdy[..., :-1, :]
        return gx, None, None


# --- orientation binning: minigrad's op (models/features_ops.py), guards included ------------
FLT_EPSILON = 1.1920929e-07


def _fast_atan2(y, x):
    """VLFeat's cubic atan2 and its analytic derivatives (no where-branch NaNs)."""
    a = torch.abs(y) + FLT_EPSILON
    pos = x >= 0
    den = torch.where(pos, x + a, a - x)
    r = torch.where(pos, x - a, x + a) / den
    theta0 = torch.where(pos, torch.full_like(x, math.pi / 4), torch.full_like(x, 3 * math.pi / 4))
    angle = theta0 + (0.1821 * r * r - 0.9675) * r
    sign = torch.where(y < 0, -torch.ones_like(x), torch.ones_like(x))
    dangle_dr = (3 * 0.1821) * r * r - 0.9675
    inv_den2 = 1 / (den * den)
    return sign * angle, sign * dangle_dr * (2 * a * inv_den2), dangle_dr * (-2 * x * inv_den2)


def _vlfeat_near_ties(bins, gx, gy, p, B):
    """Within 1e-3 bin of a hard-assignment tie, VLFeat's float32 scores decide (in place)."""
    near = torch.nonzero(torch.abs(p - torch.floor(p) - 0.5) < 1e-3, as_tuple=True)
    if near[0].numel() == 0 or B % 2:
        return
    O = B // 2
    x, y = gx[near], gy[near]
    grad = torch.sqrt(x * x + y * y)
    x, y = x / torch.clamp(grad, min=1e-10), y / torch.clamp(grad, min=1e-10)
    angles = [k * math.pi / O for k in range(O)]
    ox = torch.tensor([math.cos(t) for t in angles], dtype=gx.dtype)[:, None]
    oy = torch.tensor([math.sin(t) for t in angles], dtype=gx.dtype)[:, None]
    scores = x[None] * ox + y[None] * oy  # (O, n)
    k = torch.abs(scores).argmax(dim=0)
    negative = torch.gather(scores, 0, k[None])[0] < 0
    bins[near] = k + O * negative.long()


class OrientationBinning(torch.autograd.Function):
    """(gx, gy) (N, 1, H, W) -> (N, B, H, W) votes; hard (VLFeat ties) or bilinear in angle."""

    @staticmethod
    def forward(ctx, gx, gy, B, bilinear, fast_atan):
        n = torch.sqrt(gx * gx + gy * gy)
        if fast_atan:
            theta, dth_dx, dth_dy = _fast_atan2(gy, gx)
        else:
            theta, dth_dx, dth_dy = torch.atan2(gy, gx), None, None
        theta = torch.where(theta < 0, theta + 2 * math.pi, theta)
        p = theta * (B / (2 * math.pi))
        shape = (gx.shape[0], B) + tuple(gx.shape[2:])
        out = torch.zeros(shape, dtype=gx.dtype)
        ctx.B, ctx.bilinear, ctx.fast = B, bilinear, fast_atan
        if bilinear:
            b0 = torch.floor(p)
            frac = p - b0
            b0 = b0.long() % B
            b1 = (b0 + 1) % B
            out.scatter_(1, b0, (1 - frac) * n)
            out.scatter_(1, b1, frac * n)
            ctx.idx = (b0, b1)
            saved = (gx, gy, n, frac) + ((dth_dx, dth_dy) if fast_atan else ())
        else:
            b0 = torch.floor(p + 0.5).long() % B
            _vlfeat_near_ties(b0, gx, gy, p, B)
            out.scatter_(1, b0, n)
            ctx.idx = (b0,)
            saved = (gx, gy, n)
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    def backward(ctx, g):
        safe = lambda n: torch.where(n > 0, n, torch.ones_like(n))  # noqa: E731
        if not ctx.bilinear:
            gx, gy, n = ctx.saved_tensors
            scale = torch.gather(g, 1, ctx.idx[0]) / safe(n)
            return scale * gx, scale * gy, None, None, None
        gx, gy, n, frac, *dth = ctx.saved_tensors
        g0, g1 = torch.gather(g, 1, ctx.idx[0]), torch.gather(g, 1, ctx.idx[1])
        gn = ((1 - frac) * g0 + frac * g1) / safe(n)
        gtheta = n * (g1 - g0) * (ctx.B / (2 * math.pi))
        if not ctx.fast:
            gtheta = gtheta / (safe(n) * safe(n))
            return gn * gx - gtheta * gy, gn * gy + gtheta * gx, None, None, None
        return gn * gx + gtheta * dth[0], gn * gy + gtheta * dth[1], None, None, None


def _hog_and_dsift():
    """TorchHOG / TorchDSIFT (benchmarks/torch_features.py) with the binning op above."""
    from . import torch_features as tf

    class HOG(tf.TorchHOG):
        def __call__(self, x):
            N, C, H, W = x.shape
            s, O = self.s, self.O
            g = tf.TF.conv2d(x, self.grad)  # (N, 2, H-2, W-2)
            votes = OrientationBinning.apply(g[:, 0:1], g[:, 1:2], 2 * O, self.bilinear, False)
            hogH, hogW = tf.hog_size(H, W, s)
            before = s // 2 + 1
            votes = tf.TF.pad(votes, (before, s * (hogW - 1) + 2 * s - before - (W - 2),
                                      before, s * (hogH - 1) + 2 * s - before - (H - 2)))
            h = tf.TF.conv2d(votes, self.tx, stride=(1, s), groups=2 * O)
            h = tf.TF.conv2d(h, self.ty, stride=(s, 1), groups=2 * O)
            return tf.uoctti_normalize(h)

    class DSIFT(tf.TorchDSIFT):
        def __call__(self, x):
            N, _, H, W = x.shape
            b, step = self.b, self.step
            rows, cols = tf.num_frames(H, b, step), tf.num_frames(W, b, step)
            xe = torch.cat([2 * x[..., :1] - x[..., 1:2], x, 2 * x[..., -1:] - x[..., -2:-1]], 3)
            xe = torch.cat([2 * xe[:, :, :1] - xe[:, :, 1:2], xe,
                            2 * xe[:, :, -1:] - xe[:, :, -2:-1]], 2)
            g = tf.TF.conv2d(xe, self.grad)
            votes = OrientationBinning.apply(g[:, 0:1], g[:, 1:2], 8, True, True)
            K = self.wx.shape[-1]
            before = b - 1
            right = (cols - 1) * step + K - before - W
            bottom = (rows - 1) * step + K - before - H
            v = tf.TF.pad(votes, (before, max(right, 0), before, max(bottom, 0)),
                          mode="replicate")
            h = tf.TF.conv2d(v, self.wx, stride=(1, step), groups=8)
            h = tf.TF.conv2d(h, self.wy, stride=(step, 1), groups=32)[:, :, :rows, :cols]
            h = h.reshape(N, 8, 4, 4, rows, cols).permute(0, 3, 2, 1, 4, 5)
            h = h.reshape(N, 128, rows, cols)
            h = h / (torch.sqrt((h * h).sum(dim=1, keepdim=True)) + FLT_EPSILON)
            h = torch.clamp(h, max=0.2)
            return h / (torch.sqrt((h * h).sum(dim=1, keepdim=True)) + FLT_EPSILON)

    return HOG, DSIFT


# --- networks ----------------------------------------------------------------------------------
def _torch_cnn(rep, layer, device):
    """``rep``'s layers up to ``layer`` as torch.nn.functional calls on tensors that share the
    representation's weight arrays (``torch.from_numpy``: no copy on the CPU)."""
    from models.cnn import FC, LRN, Conv, MaxPool, ReLU

    TF = torch.nn.functional
    mods = rep.modules(layer)
    with warnings.catch_warnings():  # read-only arrays: shared, never written
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        w = {k: torch.from_numpy(v.numpy()).to(device) for k, v in rep.params.items()
             if any(k.startswith(m.name + ".") for m in mods)}

    def fc(m, x):
        if m.flatten:
            if m.pool is not None:
                x = TF.adaptive_avg_pool2d(x, m.pool)
            x = x.flatten(1)
        return TF.linear(x, w[f"{m.name}.weight"], w[f"{m.name}.bias"])

    table = {
        Conv: lambda m, x: TF.conv2d(x, w[f"{m.name}.weight"], w[f"{m.name}.bias"], m.stride,
                                     m.pad, 1, m.groups),
        ReLU: lambda m, x: TF.relu(x),
        MaxPool: lambda m, x: TF.max_pool2d(x, m.k, m.stride, ceil_mode=m.ceil_mode),
        LRN: lambda m, x: TF.local_response_norm(x, m.size, m.alpha, m.beta, m.k),
        FC: fc,
    }

    def net(x):
        for m in mods:
            x = table[type(m)](m, x)
        return x

    return net


def torch_representation(rep, layer, device="cpu"):
    """A callable x (N, C, H, W) -> Φ(x) at ``layer``, in PyTorch, with ``rep``'s weights."""
    kind = getattr(rep, "kind", "cnn")
    from models.onnx_net import OnnxNet

    if isinstance(rep, OnnxNet):  # the ONNX file itself, run op by op in torch
        from .torch_onnx import TorchOnnx

        ref = TorchOnnx(rep.path, dtype=torch.float32, device=device)
        return lambda x: ref.run(x, [layer])[layer]
    if kind == "cnn":
        return _torch_cnn(rep, layer, device)
    TorchHOG, TorchDSIFT = _hog_and_dsift()
    if device != "cpu":
        raise ValueError("the PyTorch HOG/DSIFT references run on the CPU only")
    if kind == "hog":
        if rep.channels != 1:
            raise ValueError("the PyTorch HOG reference takes grey input only")
        return TorchHOG(rep.cell_size, rep.num_orientations, bilinear=rep.bilinear)
    if kind == "dsift":
        if not (rep.fast_atan and rep.renormalize and rep.normalize and rep.window_size == 2.0):
            raise ValueError("the PyTorch DSIFT reference has VLFeat's defaults only")
        return TorchDSIFT(rep.bin_size, rep.step)
    raise ValueError(f"no PyTorch reference for representation kind {kind!r}")


# --- the inversion ---------------------------------------------------------------------------
class TorchInversion:
    """One inversion problem, stepped in PyTorch. ``step()`` runs one iteration."""

    def __init__(self, problem, device="cpu"):
        self.p = p = problem
        self.device = device
        self.net = torch_representation(p.rep, p.layer, device)
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
        with torch.no_grad():
            phi0 = t(p.code) if p.code is not None else self.net(t(p.x0))
        self.phi0 = phi0
        self.loss_scale = p.loss_scale(phi0.cpu().numpy())
        self.mask = None if p.mask is None else t(p.mask)
        self.scale = t(p.scale)
        self.alpha_scale, self.tv_scale = p.regulariser_scales()
        self.x = t(p.x_init.copy())
        self.m = self.G = self.v = None
        self.i = 0
        self.last_terms = None

    @classmethod
    def build(cls, rep, target, layer=None, preset="cvpr15", device="cpu", **overrides):
        return cls(Problem.build(rep, target, layer, preset, **overrides), device)

    def energy(self, x, oy, ox):
        p = self.p
        H, W = p.hw
        crop = x if (oy, ox) == (0, 0) and x.shape[-2:] == (H, W) else \
            x[:, :, oy:oy + H, ox:ox + W]
        inp = crop if p.unit_scale else crop * self.scale
        r = self.net(inp) - self.phi0
        if self.mask is not None:
            r = r * self.mask
        loss = (r * r).reshape(r.shape[0], -1).sum(dim=1) * self.loss_scale
        ra = AlphaNorm.apply(x, p.opts["alpha"], p.per_pixel, self.alpha_scale) * p.w_alpha
        tv = TotalVariation.apply(x, p.opts["beta"], self.tv_scale) * p.w_tv
        return loss, ra, tv

    def step(self):
        p = self.p
        lr, reset, oy, ox = p.offsets(self.i)
        if reset:
            self.m = None
            if self.v is not None:
                self.v.zero_()
        x = self.x.requires_grad_(True)
        loss, ra, tv = self.energy(x, oy, ox)
        e = loss + ra + tv
        (g,) = torch.autograd.grad(e.sum(), x)
        x.requires_grad_(False)
        self.last_terms = (loss, ra, tv, e)
        with torch.no_grad():
            if p.cvpr:
                g = g * p.step_scale
                if self.m is None:
                    self.m = torch.zeros_like(x)
                self.m *= p.opts["momentum"]
                self.m -= lr * g
                x += self.m
            else:
                if self.G is None:
                    self.G = torch.zeros_like(x)
                    self.v = torch.zeros_like(x)
                self.G *= p.opts["decay"]
                self.G += g * g
                self.v *= p.opts["momentum"]
                self.v -= g / (1.0 / lr + torch.sqrt(self.G))
                x += self.v
            if p.opts["bound"] is not None:
                norm = torch.sqrt((x * x).sum(dim=1, keepdim=True))
                x *= torch.clamp(p.opts["bound"] / torch.clamp(norm, min=1e-12), max=1.0)
        self.i += 1

    def run(self, n=None, times=None):
        """Run ``n`` iterations (default: the rest of the schedule); append per-iteration
        seconds to ``times`` when given."""
        n = self.p.schedule.total - self.i if n is None else n
        for _ in range(n):
            t0 = time.perf_counter()
            self.step()
            if self.device != "cpu":
                torch.cuda.synchronize()
            if times is not None:
                times.append(time.perf_counter() - t0)
        return self

    def result(self):
        """The central H×W crop of x, in the network's input space (like ``invert(...).x``)."""
        p = self.p
        H, W = p.hw
        c = p.centre
        x = self.x[:, :, c:c + H, c:c + W] * self.scale
        return x.detach().cpu().numpy()
