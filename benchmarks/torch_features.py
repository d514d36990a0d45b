"""The same HOG / HOGb / DSIFT networks as models/hog.py and models/dsift.py, in PyTorch.

Used by bench_features.py (timings) and as a cross-check: the forward values agree with
minigrad's to float32 rounding (except HOG's hard assignment at exact ties, which the minigrad
op resolves VLFeat's way). Written the way one would in PyTorch: conv2d with fixed filter
banks, elementwise ops, scatter for the orientation votes, separable strided conv2d for the
spatial pooling, and autograd throughout.
"""
import math

import numpy as np
import torch
import torch.nn.functional as TF

from models.dsift import num_frames, spatial_bank
from models.features_common import gradient_bank, half_gradient_bank
from models.hog import hog_size, tent_filter


def _t(a, dtype):
    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)


def _votes(gx, gy, B, bilinear, fast_atan=False):
    n = torch.sqrt(gx * gx + gy * gy)
    if fast_atan:
        theta = _fast_atan2(gy, gx)
    else:
        theta = torch.atan2(gy, gx)
    theta = torch.where(theta < 0, theta + 2 * math.pi, theta)
    p = theta * (B / (2 * math.pi))
    shape = (gx.shape[0], B) + tuple(gx.shape[2:])
    if not bilinear:
        b = torch.floor(p + 0.5).long() % B
        return torch.zeros(shape, dtype=gx.dtype).scatter(1, b, n)
    b0 = torch.floor(p)
    frac = p - b0
    b0 = b0.long() % B
    b1 = (b0 + 1) % B
    out = torch.zeros(shape, dtype=gx.dtype).scatter(1, b0, (1 - frac) * n)
    return out.scatter(1, b1, frac * n)


def _fast_atan2(y, x):
    a = torch.abs(y) + 1.1920929e-07
    pos = x >= 0
    r = torch.where(pos, (x - a) / (x + a), (x + a) / (a - x))
    theta0 = torch.where(pos, torch.tensor(math.pi / 4, dtype=x.dtype),
                         torch.tensor(3 * math.pi / 4, dtype=x.dtype))
    angle = theta0 + (0.1821 * r * r - 0.9675) * r
    return torch.where(y < 0, -angle, angle)


class TorchHOG:
    def __init__(self, cell_size=8, num_orientations=9, bilinear=False, dtype=torch.float32):
        self.s, self.O, self.bilinear, self.dtype = cell_size, num_orientations, bilinear, dtype
        self.grad = _t(gradient_bank(1), dtype)
        tent = _t(tent_filter(cell_size), dtype)[0]  # (2s,)
        B = 2 * num_orientations
        self.tx = tent.reshape(1, 1, 1, -1).repeat(B, 1, 1, 1)  # (B, 1, 1, 2s)
        self.ty = tent.reshape(1, 1, -1, 1).repeat(B, 1, 1, 1)  # (B, 1, 2s, 1)

    def __call__(self, x):
        N, C, H, W = x.shape
        s, O = self.s, self.O
        g = TF.conv2d(x, self.grad)  # (N, 2, H-2, W-2)
        votes = _votes(g[:, 0:1], g[:, 1:2], 2 * O, self.bilinear)
        hogH, hogW = hog_size(H, W, s)
        before = s // 2 + 1
        votes = TF.pad(votes, (before, s * (hogW - 1) + 2 * s - before - (W - 2),
                               before, s * (hogH - 1) + 2 * s - before - (H - 2)))
        h = TF.conv2d(votes, self.tx, stride=(1, s), groups=2 * O)
        h = TF.conv2d(h, self.ty, stride=(s, 1), groups=2 * O)
        return uoctti_normalize(h)


def uoctti_normalize(h, eps=1e-4, clamp=0.2):
    O = h.shape[1] // 2
    Hc, Wc = h.shape[2:]
    u = h[:, :O] + h[:, O:]
    hu = torch.cat([h, u], dim=1)
    c = (u * u).sum(dim=1, keepdim=True)
    cp = TF.pad(c, (1, 1, 1, 1), mode="replicate")
    energy = cp[:, :, :-1, :-1] + cp[:, :, 1:, :-1] + cp[:, :, :-1, 1:] + cp[:, :, 1:, 1:]
    f = torch.rsqrt(energy + eps)
    parts, tex = 0, []
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        v = torch.clamp(f[:, :, dy:dy + Hc, dx:dx + Wc] * hu, max=clamp)
        parts = parts + v
        tex.append(v[:, 2 * O:].sum(dim=1, keepdim=True))
    return torch.cat([0.5 * parts] + [t / math.sqrt(18) for t in tex], dim=1)


class TorchDSIFT:
    def __init__(self, bin_size=8, step=None, dtype=torch.float32):
        self.b, self.step, self.dtype = bin_size, step or bin_size, dtype
        self.grad = _t(half_gradient_bank(), dtype)
        bank = _t(spatial_bank(bin_size), dtype)  # (4, K)
        self.wx = bank.reshape(4, 1, 1, -1).repeat(8, 1, 1, 1)  # (32, 1, 1, K)
        self.wy = bank.reshape(4, 1, -1, 1).repeat(32, 1, 1, 1)  # (128, 1, K, 1)

    def __call__(self, x):
        N, _, H, W = x.shape
        b, step = self.b, self.step
        rows, cols = num_frames(H, b, step), num_frames(W, b, step)
        xe = torch.cat([2 * x[..., :1] - x[..., 1:2], x, 2 * x[..., -1:] - x[..., -2:-1]], 3)
        xe = torch.cat([2 * xe[:, :, :1] - xe[:, :, 1:2], xe,
                        2 * xe[:, :, -1:] - xe[:, :, -2:-1]], 2)
        g = TF.conv2d(xe, self.grad)
        votes = _votes(g[:, 0:1], g[:, 1:2], 8, True, fast_atan=True)
        K = self.wx.shape[-1]
        before = b - 1
        right = (cols - 1) * step + K - before - W
        bottom = (rows - 1) * step + K - before - H
        v = TF.pad(votes, (before, max(right, 0), before, max(bottom, 0)), mode="replicate")
        h = TF.conv2d(v, self.wx, stride=(1, step), groups=8)  # (N, 32, ., cols)
        h = TF.conv2d(h, self.wy, stride=(step, 1), groups=32)  # (N, 128, rows, cols)
        h = h[:, :, :rows, :cols]
        h = h.reshape(N, 8, 4, 4, rows, cols).permute(0, 3, 2, 1, 4, 5).reshape(N, 128, rows,
                                                                                cols)
        eps = 1.1920929e-07
        h = h / (torch.sqrt((h * h).sum(dim=1, keepdim=True)) + eps)
        h = torch.clamp(h, max=0.2)
        return h / (torch.sqrt((h * h).sum(dim=1, keepdim=True)) + eps)
