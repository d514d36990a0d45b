"""Shape ops: reshape, permute, pad, concat, stack, indexing, device moves."""
from .. import backend
from ..backend import get_array_module
from ..tensor import Function


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} into {shape}") from None

    def backward(self, gy):
        return gy.reshape(self.shape)


class Permute(Function):
    def forward(self, a, dims):
        if sorted(d % a.ndim for d in dims) != list(range(a.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {a.ndim} axes")
        self.dims = dims
        return a.transpose(dims)

    def backward(self, gy):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d % len(self.dims)] = i
        return gy.transpose(inverse)


class Pad(Function):
    """Constant padding; ``pad`` is ((before, after), ...) per axis, in NumPy's order."""

    def forward(self, a, pad, value=0.0):
        self.inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(pad, a.shape))
        return backend.pad(a, pad, value)

    def backward(self, gy):
        return gy[self.inner]


class Concat(Function):
    def forward(self, *arrays, axis=0):
        shapes = [a.shape for a in arrays]
        ref = list(shapes[0])
        for s in shapes:
            if len(s) != len(ref) or any(
                n != m for i, (n, m) in enumerate(zip(s, ref)) if i != axis % len(ref)
            ):
                raise ValueError(f"concat along axis {axis}: incompatible shapes {shapes}")
        self.axis = axis % len(ref)
        self.bounds = [0]
        for s in shapes:
            self.bounds.append(self.bounds[-1] + s[self.axis])
        return get_array_module(*arrays).concatenate(arrays, axis=self.axis)

    def backward(self, gy):
        index = [slice(None)] * gy.ndim
        grads = []
        for lo, hi, needed in zip(self.bounds, self.bounds[1:], self.needs_input_grad):
            index[self.axis] = slice(lo, hi)
            grads.append(gy[tuple(index)] if needed else None)
        return tuple(grads)


class Stack(Function):
    def forward(self, *arrays, axis=0):
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"stack needs equal shapes, got {[a.shape for a in arrays]}")
        self.axis = axis
        return get_array_module(*arrays).stack(arrays, axis=axis)

    def backward(self, gy):
        xp = get_array_module(gy)
        parts = xp.moveaxis(gy, self.axis, 0)
        return tuple(p if n else None for p, n in zip(parts, self.needs_input_grad))


class GetItem(Function):
    """Basic and advanced indexing; repeated advanced indices accumulate (scatter-add)."""

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, gy):
        xp = get_array_module(gy)
        ga = xp.zeros(self.shape, dtype=gy.dtype)
        if _is_basic(self.index):
            ga[self.index] = gy
        else:
            backend.scatter_add(ga, self.index, gy)
        return ga


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


class ToDevice(Function):
    def forward(self, a, device):
        self.source = backend.device_of(a)
        return backend.to_device(a, device)

    def backward(self, gy):
        return backend.to_device(gy, self.source)
