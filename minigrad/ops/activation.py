"""Softmax and log-softmax along one axis, with their closed-form backward."""
from ..backend import get_array_module
from ..tensor import Function


class Softmax(Function):
    def forward(self, a, axis=-1):
        xp = get_array_module(a)
        e = xp.exp(a - a.max(axis=axis, keepdims=True))  # shifted for stability
        self.y, self.axis = e / e.sum(axis=axis, keepdims=True), axis
        return self.y

    def backward(self, gy):
        # dL/da = y * (gy - <gy, y>)
        return self.y * (gy - (gy * self.y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def forward(self, a, axis=-1):
        xp = get_array_module(a)
        shifted = a - a.max(axis=axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)
