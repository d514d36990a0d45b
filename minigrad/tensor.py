"""Tensor, graph recording and the reverse-mode engine.

A Tensor wraps one NumPy or CuPy array (``.data``). When an op runs on tensors that require
gradients, the op object (a ``Function``) is kept on the output as ``_ctx``: it remembers its
input tensors and whatever arrays its backward needs. ``y.backward()`` visits that graph once,
in reverse topological order, calling each op's ``backward`` on raw arrays.

Conventions: NCHW layout, float32 by default, float64 for gradient checks.
"""
import contextlib

from . import backend
from .backend import get_array_module

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block ops record nothing and save nothing (used for targets and metrics)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


class Function:
    """Base class of every op: ``forward(*arrays, **params)`` and ``backward(gy)`` side by side.

    ``backward`` returns one gradient (an array or None) per tensor input, in input order. It
    may skip input i when ``self.needs_input_grad[i]`` is False (weights in an inversion).
    Gradients for broadcast inputs may keep the broadcast shape: the engine reduces them.
    """

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self.inputs = ()

    @classmethod
    def apply(cls, *inputs, **params):
        tensors = [t if isinstance(t, Tensor) else None for t in inputs]
        device = _common_device([t for t in tensors if t is not None], cls.__name__)
        arrays = [t.data if t is not None else _as_array(v, device)
                  for t, v in zip(tensors, inputs)]
        needs = tuple(t is not None and t.requires_grad for t in tensors)
        record = _grad_enabled and any(needs)
        op = cls(needs if record else (False,) * len(needs))
        y = op.forward(*arrays, **params)
        record = record and y.dtype.kind == "f"  # integer/bool results carry no gradient
        out = Tensor._wrap(y, requires_grad=record)
        if record:
            op.inputs = tuple(tensors)
            out._ctx = op
        return out

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    def release(self):
        """Drop the inputs and every saved array, once backward no longer needs them."""
        self.__dict__.clear()


def _common_device(tensors, opname):
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(
            f"{opname}: inputs are on different devices {sorted(devices)}; move them with .to()"
        )
    return devices.pop() if devices else "cpu"


def _as_array(value, device):
    """Python scalars stay scalars (NumPy keeps the tensor's dtype); arrays go to the device."""
    if isinstance(value, backend.np.generic):  # np.float64(2.0) would promote float32 data
        value = value.item()
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return backend.to_device(value, device)


def _unbroadcast(grad, shape):
    """Sum a gradient of a broadcast result back to the input's shape (done once, here)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class Tensor(backend.ArrayHolder):
    """An n-dimensional array with an optional gradient; see ``minigrad.tensor`` to make one."""

    __array_priority__ = 1000  # numpy_array + tensor -> Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        if isinstance(data, Tensor):
            data = data.data
        if device is None:
            device = backend.device_of(data)
        xp = backend.xp_for(device)
        if dtype is None and not backend.is_array(data):
            dtype = "float32"  # Python numbers and lists default to float32, as in PyTorch
        self.data = xp.asarray(backend.to_device(data, device) if backend.is_array(data) else data,
                               dtype=dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.name = None
        self._ctx = None
        self._retain = False
        self._hooks = []

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        t = cls.__new__(cls)
        t.data, t.requires_grad, t.grad, t.name = array, requires_grad, None, None
        t._ctx, t._retain, t._hooks = None, False, []
        return t

    # --- properties ------------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)
    T = property(lambda self: self.transpose())

    def numpy(self):
        return backend.asnumpy(self.data)

    def item(self):
        return self.data.item()

    def detach(self):
        return Tensor._wrap(self.data)

    def __len__(self):
        return self.shape[0]

    # comparisons give plain boolean tensors (no gradient), as in PyTorch; the arithmetic
    # operators and methods (x + y, x.sum(), x.to("cuda"), ...) are installed by
    # ``minigrad.functional`` from its table, since they are the functional API's ops
    def _compare(self, other, name):
        return Tensor._wrap(getattr(self.data, name)(backend.unwrap(other)))

    __lt__ = lambda self, other: self._compare(other, "__lt__")
    __le__ = lambda self, other: self._compare(other, "__le__")
    __gt__ = lambda self, other: self._compare(other, "__gt__")
    __ge__ = lambda self, other: self._compare(other, "__ge__")

    def __repr__(self):
        grad = f", grad_fn={type(self._ctx).__name__}" if self._ctx else ""
        req = ", requires_grad=True" if self.requires_grad and not self._ctx else ""
        return f"tensor({self.numpy()!r}{req}{grad}, device={self.device!r})"

    # --- gradients ---------------------------------------------------------------------------
    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retain = True
        return self

    def register_hook(self, fn):
        """Call ``fn(grad)`` when this tensor's gradient is ready; a non-None return replaces it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        self._hooks.append(fn)
        return fn

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (iterative, topological).

        The graph and its saved arrays are freed afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs a gradient "
                    "argument of the same shape"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = xp.asarray(backend.unwrap(grad), dtype=self.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"gradient shape {grad.shape} != tensor shape {self.shape}")
        order = _toposort(self)
        if any(getattr(node, "_freed", False) for node in order):
            raise RuntimeError(
                "backward() through a graph that an earlier backward() already freed; pass "
                "retain_graph=True to the first call, or recompute the forward pass"
            )
        grads = {id(self): grad}
        for node in order:  # outputs before inputs
            g = grads.pop(id(node), None)
            if g is None:
                continue
            for hook in node._hooks:
                replaced = hook(g)
                g = g if replaced is None else replaced
            if node._ctx is None or node._retain:
                # a writable array, never a broadcast view, on the node's own device (a CPU
                # leaf used through .to("cuda") gets its gradient back on the CPU)
                g_kept = get_array_module(node.data).ascontiguousarray(g)
                node.grad = g_kept if node.grad is None else node.grad + g_kept
            if node._ctx is None:
                continue
            op = node._ctx
            input_grads = op.backward(g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, pg in zip(op.inputs, input_grads):
                if parent is None or pg is None or not parent.requires_grad:
                    continue
                pg = _unbroadcast(pg, parent.shape)
                if pg.dtype != parent.dtype:  # a float64 constant must not make grads float64
                    pg = pg.astype(parent.dtype)
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
            if not retain_graph:
                op.release()
                node._ctx, node._freed = None, True


def _toposort(root):
    """Tensors reachable from root, each after every tensor that consumes it (no recursion)."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.inputs:
                if parent is not None and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order[::-1]


def tensor(data, requires_grad=False, dtype="float32", device="cpu"):
    """Make a Tensor from a list, scalar or array, like ``torch.tensor``: the data is copied.

    ``dtype`` defaults to float32; pass ``dtype=None`` to keep an array's own dtype.
    ``None`` is refused (NumPy would silently make it a NaN).
    """
    if data is None:
        raise TypeError("tensor() needs data (a number, a list or an array), got None")
    t = Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)
    if backend.is_array(data) and backend.shares_memory(t.data, data):
        t.data = t.data.copy()  # never alias the caller's array (conv2d may freeze constants)
    return t
