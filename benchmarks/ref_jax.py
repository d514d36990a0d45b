"""The same feature inversion as ``minigrad.invert`` in JAX, with the whole iteration jitted.

    from benchmarks.ref_jax import JaxInversion, available
    ref = JaxInversion.build(rep, image, "conv5", preset="cvpr15", iters=20)
    ref.run(); ref.result()      # like benchmarks.ref_torch.TorchInversion

Same problem as the PyTorch reference (``benchmarks.ref_common.Problem``: options, schedule,
initial x from the same seeded NumPy generator, mask, input scale, σ, term weights); one
``jax.jit``-compiled function does forward, ``jax.grad`` and the update (CVPR15 momentum or
IJCV16 AdaGrad-momentum + projection); the host only picks the learning rate, the momentum
reset and the jitter offset (``lax.dynamic_slice``, so one compilation serves every offset).

Covered: the CNNs of ``models.cnn`` (Conv with groups, ReLU, MaxPool with ceil_mode, LRN,
FC after flatten/adaptive average pool). Not covered: HOG/HOGb/DSIFT (no JAX version of those
networks is written; ``JaxInversion`` raises NotImplementedError and run.py prints "n/a").
The regularisers use JAX's own autodiff: for the presets' α = 6 and β = 2 no guard is hit;
other α/β are refused rather than differentiated differently from minigrad.

jax is optional: ``available()`` is False when it is not installed (CI does not install it).
"""
import time

import numpy as np

from .ref_common import Problem

try:  # optional dependency
    import jax
    import jax.numpy as jnp
    from jax import lax
except ImportError:  # pragma: no cover - depends on the environment
    jax = jnp = lax = None


def available():
    return jax is not None


def version():
    return None if jax is None else jax.__version__


def jax_network(rep, layer):
    """A pure function x (N, 3, H, W) -> Φ(x) at ``layer`` with ``rep``'s weights (constants)."""
    from models.cnn import FC, LRN, Conv, MaxPool, ReLU

    if getattr(rep, "kind", "cnn") != "cnn":
        raise NotImplementedError(f"no JAX version of the {rep.name} network")
    mods = rep.modules(layer)
    params = {k: jnp.asarray(v) for k, v in rep.params_numpy().items()}

    def conv(m, x):
        y = lax.conv_general_dilated(
            x, params[f"{m.name}.weight"], (m.stride, m.stride), [(m.pad, m.pad)] * 2,
            dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=m.groups)
        return y + params[f"{m.name}.bias"].reshape(1, -1, 1, 1)

    def maxpool(m, x):
        _, oh, ow = m.out_shape((x.shape[1],) + tuple(x.shape[2:]))
        ph = (oh - 1) * m.stride + m.k - x.shape[2]  # extra rows at the end (ceil_mode)
        pw = (ow - 1) * m.stride + m.k - x.shape[3]
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, m.k, m.k),
                                 (1, 1, m.stride, m.stride),
                                 ((0, 0), (0, 0), (0, max(ph, 0)), (0, max(pw, 0))))

    def lrn(m, x):
        s = lax.reduce_window(x * x, 0.0, lax.add, (1, m.size, 1, 1), (1, 1, 1, 1),
                              ((0, 0), (m.size // 2, (m.size - 1) // 2), (0, 0), (0, 0)))
        return x / (m.k + (m.alpha / m.size) * s) ** m.beta

    def adaptive_avg(x, out):
        H, W = x.shape[2:]
        if (H, W) == (out, out):
            return x
        rows = [(i * H // out, -(-(i + 1) * H // out)) for i in range(out)]
        cols = [(j * W // out, -(-(j + 1) * W // out)) for j in range(out)]
        return jnp.stack([jnp.stack([x[:, :, a:b, c:d].mean(axis=(2, 3)) for c, d in cols], -1)
                          for a, b in rows], -2)  # (N, C, out, out)

    def fc(m, x):
        if m.flatten:
            if m.pool is not None:
                x = adaptive_avg(x, m.pool)
            x = x.reshape(x.shape[0], -1)
        return x @ params[f"{m.name}.weight"].T + params[f"{m.name}.bias"]

    table = {Conv: conv, MaxPool: maxpool, LRN: lrn, FC: fc}

    def net(x):
        for m in mods:
            x = jnp.maximum(x, 0) if type(m) is ReLU else table[type(m)](m, x)
        return x

    return net


class JaxInversion:
    """One inversion problem, stepped by a jitted JAX function. ``step()`` runs one iteration."""

    def __init__(self, problem):
        if jax is None:
            raise ImportError("jax is not installed")
        p = self.p = problem
        if p.opts["beta"] != 2 or p.opts["alpha"] != 6:
            raise NotImplementedError("the JAX reference covers α = 6, β = 2 (the presets')")
        net = jax_network(p.rep, p.layer)
        phi0 = jnp.asarray(p.code) if p.code is not None else jax.jit(net)(jnp.asarray(p.x0))
        self.phi0 = phi0
        loss_scale = p.loss_scale(np.asarray(phi0))
        mask = None if p.mask is None else jnp.asarray(p.mask)
        scale = jnp.asarray(p.scale)
        a_scale, t_scale = p.regulariser_scales()
        H, W = p.hw
        R, C = p.x_init.shape[:2]
        opts = p.opts

        def energy(x, oy, ox):
            crop = lax.dynamic_slice(x, (0, 0, oy, ox), (R, C, H, W))
            inp = crop if p.unit_scale else crop * scale
            r = net(inp) - phi0
            if mask is not None:
                r = r * mask
            loss = (r * r).reshape(R, -1).sum(axis=1) * loss_scale
            if p.per_pixel:
                sq = (x * x).sum(axis=1)
                ra = (sq * sq * sq).reshape(R, -1).sum(axis=1) * a_scale
            else:
                x2 = x * x
                ra = (x2 * (x2 * x2)).reshape(R, -1).sum(axis=1) * a_scale
            dx = jnp.zeros_like(x).at[..., :, :-1].set(x[..., :, 1:] - x[..., :, :-1])
            dy = jnp.zeros_like(x).at[..., :-1, :].set(x[..., 1:, :] - x[..., :-1, :])
            tv = (dx * dx + dy * dy).reshape(R, -1).sum(axis=1) * t_scale
            return (loss + ra * p.w_alpha + tv * p.w_tv).sum()

        grad = jax.grad(energy)
        mu = opts["momentum"]

        def step(x, m, G, lr, oy, ox):
            g = grad(x, oy, ox)
            if p.cvpr:
                g = g * p.step_scale
                m = m * mu - lr * g
                x = x + m
            else:
                G = G * opts["decay"] + g * g
                m = m * mu - g / (1.0 / lr + jnp.sqrt(G))
                x = x + m
            if opts["bound"] is not None:
                norm = jnp.sqrt((x * x).sum(axis=1, keepdims=True))
                x = x * jnp.minimum(opts["bound"] / jnp.maximum(norm, 1e-12), 1.0)
            return x, m, G

        self._step = jax.jit(step)
        self.x = jnp.asarray(p.x_init)
        self.m = jnp.zeros_like(self.x)  # momentum (cvpr15) or velocity v (ijcv16)
        self.G = jnp.zeros_like(self.x)
        self.i = 0

    @classmethod
    def build(cls, rep, target, layer=None, preset="cvpr15", **overrides):
        return cls(Problem.build(rep, target, layer, preset, **overrides))

    def step(self):
        lr, reset, oy, ox = self.p.offsets(self.i)
        if reset:
            self.m = jnp.zeros_like(self.x)
        self.x, self.m, self.G = self._step(self.x, self.m, self.G, np.float32(lr),
                                            np.int32(oy), np.int32(ox))
        self.i += 1

    def run(self, n=None, times=None):
        n = self.p.schedule.total - self.i if n is None else n
        for _ in range(n):
            t0 = time.perf_counter()
            self.step()
            self.x.block_until_ready()
            if times is not None:
                times.append(time.perf_counter() - t0)
        return self

    def result(self):
        p = self.p
        H, W = p.hw
        c = p.centre
        return np.asarray(self.x[:, :, c:c + H, c:c + W] * p.scale)
