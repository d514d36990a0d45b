"""Reductions over axes: sum, mean and max (with keepdims)."""
from ..backend import get_array_module
from ..tensor import Function


def _normalise_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes))


def _expand(gy, in_shape, axes, keepdims):
    """Reshape a reduced gradient so that it broadcasts against the input."""
    if not keepdims:
        shape = [1 if i in axes else n for i, n in enumerate(in_shape)]
        gy = gy.reshape(shape)
    return gy


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _normalise_axis(axis, a.ndim), keepdims
        return a.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        return xp.broadcast_to(_expand(gy, self.shape, self.axes, self.keepdims), self.shape)


class Mean(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _normalise_axis(axis, a.ndim), keepdims
        self.count = 1
        for i in self.axes:
            self.count *= a.shape[i]
        return a.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = _expand(gy, self.shape, self.axes, self.keepdims) / self.count
        return xp.broadcast_to(g, self.shape)


class Max(Function):
    """Max over axes. Ties split the gradient evenly among the maxima (as torch.amax does)."""

    def forward(self, a, axis=None, keepdims=False):
        self.axes, self.keepdims = _normalise_axis(axis, a.ndim), keepdims
        y = a.max(axis=self.axes, keepdims=True)
        self.is_max = a == y
        if keepdims:
            return y
        return y.reshape([n for i, n in enumerate(y.shape) if i not in self.axes])

    def backward(self, gy):
        gy = _expand(gy, self.is_max.shape, self.axes, self.keepdims)
        count = self.is_max.sum(axis=self.axes, keepdims=True)
        return gy * self.is_max / count.astype(gy.dtype)  # an int count would promote float32
