"""Elementwise ops. Broadcasting is allowed; the engine sums gradients back to input shapes.

Each op saves only what its backward needs (often its output, as teenygrad does).
"""
from .. import backend
from ..backend import get_array_module
from ..tensor import Function


class Broadcasting(Function):
    """An elementwise op over broadcastable inputs: a shape mismatch names the op and shapes."""

    @classmethod
    def apply(cls, *inputs, **params):
        shapes = [backend.np.shape(v) for v in inputs]  # Tensors, arrays, numbers: no copies
        try:
            backend.np.broadcast_shapes(*shapes)
        except ValueError:
            listed = " and ".join(str(tuple(s)) for s in shapes)
            raise ValueError(
                f"{cls.__name__.lower()}: operands of shapes {listed} cannot be broadcast together"
            ) from None
        return super().apply(*inputs, **params)


class Add(Broadcasting):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return gy, gy


class Sub(Broadcasting):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        return gy, (-gy if self.needs_input_grad[1] else None)


class Mul(Broadcasting):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ga = gy * self.b if self.needs_input_grad[0] else None
        gb = gy * self.a if self.needs_input_grad[1] else None
        return ga, gb


class Div(Broadcasting):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        ga = gy / self.b if self.needs_input_grad[0] else None
        gb = -gy * self.a / (self.b * self.b) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, gy):
        return -gy


class Pow(Broadcasting):
    """a ** b; d/da = b a^(b-1), d/db = a^b log a (only asked for when b is a tensor)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = a ** b
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        ga = gy * self.b * self.a ** (self.b - 1) if self.needs_input_grad[0] else None
        # a Python-number base: log it in gy's dtype (a float64 scalar would promote float32)
        if self.needs_input_grad[1]:
            gb = gy * self.y * xp.log(xp.asarray(self.a, dtype=gy.dtype))
        else:
            gb = None
        return ga, gb


class Exp(Function):
    def forward(self, a):
        self.y = get_array_module(a).exp(a)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, a):
        self.a = a
        return get_array_module(a).log(a)

    def backward(self, gy):
        return gy / self.a


class Sqrt(Function):
    def forward(self, a):
        self.y = get_array_module(a).sqrt(a)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Abs(Function):
    def forward(self, a):
        self.a = a
        return abs(a)

    def backward(self, gy):
        return gy * get_array_module(gy).sign(self.a)


class Maximum(Broadcasting):
    """Elementwise max; a tie sends the gradient to the first input."""

    def forward(self, a, b):
        self.a_wins = a >= b
        return get_array_module(a, b).maximum(a, b)

    def backward(self, gy):
        ga = gy * self.a_wins if self.needs_input_grad[0] else None
        gb = gy * ~self.a_wins if self.needs_input_grad[1] else None
        return ga, gb


class Minimum(Broadcasting):
    """Elementwise min; a tie sends the gradient to the first input."""

    def forward(self, a, b):
        self.a_wins = a <= b
        return get_array_module(a, b).minimum(a, b)

    def backward(self, gy):
        ga = gy * self.a_wins if self.needs_input_grad[0] else None
        gb = gy * ~self.a_wins if self.needs_input_grad[1] else None
        return ga, gb


class Clamp(Function):
    """min(max(a, lo), hi); the gradient passes where lo <= a <= hi (as in PyTorch)."""

    def forward(self, a, lo=None, hi=None):
        xp = get_array_module(a)
        self.inside = xp.ones(a.shape, dtype=bool)
        if lo is not None:
            self.inside &= a >= lo
        if hi is not None:
            self.inside &= a <= hi
        return xp.clip(a, lo, hi)

    def backward(self, gy):
        return gy * self.inside


class Where(Broadcasting):
    """where(cond, a, b); cond is a constant boolean array."""

    def forward(self, cond, a, b):
        self.cond = cond
        return get_array_module(a, b).where(cond, a, b)

    def backward(self, gy):
        ga = gy * self.cond if self.needs_input_grad[1] else None
        gb = gy * ~self.cond if self.needs_input_grad[2] else None
        return None, ga, gb


class ReLU(Function):
    """y = a · [a > 0]; dy/da = [a > 0] (0 at 0, as PyTorch). Same shape.

    Computed piecewise (``backend.parallel_for``: pieces run on the workers of a parallel
    block, if any; else the whole array at once)."""

    def forward(self, a):
        xp = get_array_module(a)
        self.positive, y = xp.empty(a.shape, dtype=bool), xp.empty_like(a)

        def piece(i):
            xp.greater(a[i], 0, out=self.positive[i])
            xp.multiply(a[i], self.positive[i], out=y[i])
        backend.parallel_for(piece, a)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.empty_like(gy)
        backend.parallel_for(lambda i: xp.multiply(gy[i], self.positive[i], out=gx[i]), gy)
        return gx


class Cast(Function):
    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, gy):
        return gy.astype(self.dtype)


class LeakyReLU(Function):
    """y = a where a > 0, slope·a elsewhere (ONNX LeakyRelu, torch leaky_relu); same shape.

    dy/da = 1 where a > 0, slope elsewhere (slope at 0, as PyTorch).
    """

    def forward(self, a, slope=0.01):
        self.gain = (a > 0) + (a <= 0) * a.dtype.type(slope)  # 1 or slope, a's dtype
        return a * self.gain

    def backward(self, gy):
        return gy * self.gain
