"""The two optimisers of the papers, as pure in-place array updates (no graph, no Tensors).

- ``MomentumSGD`` (CVPR15, deep-goggle ``invert_nn.m``): ``m ← μ·m − lr·g; x ← x + m``, with a
  piecewise-constant learning rate and the momentum buffer reset to 0 whenever the rate changes.
- ``AdaGradMomentum`` (IJCV16, nnpreimage): ``G ← ρ·G + g²; v ← μ·v − g/(1/η + √G); x ← x + v``.

Both work on NumPy or CuPy arrays (``xp = get_array_module(x)``) and never sync with the host.
"""
from ..backend import get_array_module


class PiecewiseSchedule:
    """A piecewise-constant schedule: ``segments = [(value, iterations), ...]``."""

    def __init__(self, segments):
        self.segments = [(float(v), int(n)) for v, n in segments if int(n) > 0]
        if not self.segments:
            raise ValueError("a schedule needs at least one segment with iterations > 0")
        self.total = sum(n for _, n in self.segments)
        self._values = []
        for v, n in self.segments:
            self._values.extend([v] * n)

    def __len__(self):
        return self.total

    def __call__(self, step):
        """The value at 0-based ``step`` (the last value beyond the end)."""
        return self._values[min(step, self.total - 1)]

    def changes_at(self, step):
        """True when the value at ``step`` differs from the value at ``step - 1``."""
        return 0 < step < self.total and self._values[step] != self._values[step - 1]

    def segment_index(self, step):
        step = min(step, self.total - 1)
        end = 0
        for i, (_, n) in enumerate(self.segments):
            end += n
            if step < end:
                return i
        return len(self.segments) - 1

    @classmethod
    def scaled(cls, base, factors, lengths, total=None):
        """``base × factors[i]`` for ``lengths[i]`` iterations; ``total`` rescales the lengths.

        When ``total`` is given the lengths are stretched proportionally (each segment keeps
        at least one iteration while total allows) so a shorter run keeps the schedule's shape.
        """
        lengths = list(lengths)
        if total is not None and total != sum(lengths):
            full = sum(lengths)
            bounds = [round(total * sum(lengths[: i + 1]) / full) for i in range(len(lengths))]
            lengths = [b - a for a, b in zip([0] + bounds[:-1], bounds)]
        return cls([(base * f, n) for f, n in zip(factors, lengths)])


class MomentumSGD:
    """Gradient descent with momentum and a piecewise learning rate (CVPR15).

    ``step(x, g, lr)`` updates ``x`` in place. Call ``reset()`` when the learning rate changes
    (``invert`` does this at every change of the schedule, as deep-goggle does: without it the
    iterate overshoots for several steps).
    """

    def __init__(self, momentum=0.9):
        self.momentum = float(momentum)
        self.m = None

    def reset(self):
        self.m = None

    def get_state(self):
        """A copy of the momentum buffer (for the safeguard's snapshots)."""
        return {"m": None if self.m is None else self.m.copy()}

    def set_state(self, state):
        self.m = None if state["m"] is None else state["m"].copy()

    def step(self, x, g, lr):
        if self.m is None:
            self.m = get_array_module(x).zeros_like(x)
        self.m *= self.momentum
        self.m -= lr * g
        x += self.m
        return x


class AdaGradMomentum:
    """The IJCV16 rule: ``G ← ρG + g²; v ← μv − g/(1/η + √G); x ← x + v`` (ρ = μ = 0.9).

    ``reset()`` zeroes the velocity v only (the phase change of IJCV16); G is kept.
    """

    def __init__(self, momentum=0.9, decay=0.9):
        self.momentum, self.decay = float(momentum), float(decay)
        self.G = None
        self.v = None

    def reset(self):
        if self.v is not None:
            self.v[...] = 0

    def get_state(self):
        """Copies of G and v (for the safeguard's snapshots)."""
        return {k: None if a is None else a.copy() for k, a in (("G", self.G), ("v", self.v))}

    def set_state(self, state):
        self.G, self.v = (None if state[k] is None else state[k].copy() for k in ("G", "v"))

    def step(self, x, g, lr):
        xp = get_array_module(x)
        if self.G is None:
            self.G = xp.zeros_like(x)
            self.v = xp.zeros_like(x)
        self.G *= self.decay
        self.G += g * g
        self.v *= self.momentum
        self.v -= g / (1.0 / lr + xp.sqrt(self.G))
        x += self.v
        return x


def project_pixel_norm(x, bound):
    """Rescale each pixel's colour vector: x_uv ← x_uv · min(bound/‖x_uv‖, 1), in place.

    x: (N, C, H, W); the norm is over C (IJCV16's constraint ‖x_uv‖ ≤ B₊).
    """
    xp = get_array_module(x)
    norm = xp.sqrt((x * x).sum(axis=1, keepdims=True))  # (N, 1, H, W)
    x *= xp.minimum(bound / xp.maximum(norm, 1e-12), 1.0)
    return x
