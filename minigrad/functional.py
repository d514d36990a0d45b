"""The public op functions, with PyTorch's names and argument orders.

Usage: ``import minigrad.functional as F`` (or ``from minigrad import F``).

Each function is a thin wrapper over one op class in ``minigrad.ops``, where its forward and
backward live side by side. Arguments may be Tensors, arrays or Python numbers.
"""
from . import backend
from .ops import activation, conv_algorithms, elementwise, linalg, norm, pool, reduce
from .ops import shape as shape_ops
from .tensor import Tensor


def _t(x):
    if isinstance(x, Tensor):
        return x
    return Tensor(x, dtype=None if backend.is_array(x) else "float32")


# --- elementwise ---------------------------------------------------------------------------
def add(a, b):
    return elementwise.Add.apply(a, b)


def sub(a, b):
    return elementwise.Sub.apply(a, b)


def mul(a, b):
    return elementwise.Mul.apply(a, b)


def div(a, b):
    return elementwise.Div.apply(a, b)


def neg(a):
    return elementwise.Neg.apply(a)


def pow(a, exponent):  # noqa: A001 - PyTorch's name
    return elementwise.Pow.apply(a, exponent)


def exp(a):
    return elementwise.Exp.apply(a)


def log(a):
    return elementwise.Log.apply(a)


def sqrt(a):
    return elementwise.Sqrt.apply(a)


def abs(a):  # noqa: A001
    return elementwise.Abs.apply(a)


def maximum(a, b):
    return elementwise.Maximum.apply(a, b)


def minimum(a, b):
    return elementwise.Minimum.apply(a, b)


def clamp(a, min=None, max=None):  # noqa: A002 - PyTorch's argument names
    return elementwise.Clamp.apply(a, lo=min, hi=max)


def where(condition, a, b):
    condition = backend.unwrap(condition)
    return elementwise.Where.apply(condition, a, b)


def relu(a):
    return elementwise.ReLU.apply(a)


def leaky_relu(a, negative_slope=0.01):
    return elementwise.LeakyReLU.apply(a, slope=negative_slope)


# --- reductions ----------------------------------------------------------------------------
def _axis(axis, dim):
    return dim if axis is None else axis


def sum(a, axis=None, keepdims=False, *, dim=None, keepdim=None):  # noqa: A001
    return reduce.Sum.apply(a, axis=_axis(axis, dim), keepdims=bool(keepdims or keepdim))


def mean(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return reduce.Mean.apply(a, axis=_axis(axis, dim), keepdims=bool(keepdims or keepdim))


def max(a, axis=None, keepdims=False, *, dim=None, keepdim=None):  # noqa: A001
    return reduce.Max.apply(a, axis=_axis(axis, dim), keepdims=bool(keepdims or keepdim))


# --- shape ---------------------------------------------------------------------------------
def reshape(a, *shape):
    shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
    return shape_ops.Reshape.apply(a, shape=shape)


def permute(a, *dims):
    dims = tuple(dims[0]) if len(dims) == 1 and not isinstance(dims[0], int) else dims
    return shape_ops.Permute.apply(a, dims=dims)


def transpose(a, dim0=None, dim1=None):
    """Swap two axes; with no axes given, reverse them all (``x.T``)."""
    ndim = _t(a).ndim
    if dim0 is None:
        return permute(a, tuple(range(ndim))[::-1])
    dims = list(range(ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, dims)


def flatten(a, start_dim=0, end_dim=-1):
    s = _t(a).shape
    start, end = start_dim % len(s), end_dim % len(s)
    merged = 1
    for n in s[start:end + 1]:
        merged *= n
    return reshape(a, s[:start] + (merged,) + s[end + 1:])


def pad(a, pad, mode="constant", value=0.0):
    """PyTorch's order: ``pad = (left, right, top, bottom, ...)``, last axis first."""
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    if len(pad) % 2:
        raise ValueError(f"pad needs an even number of values, got {pad}")
    ndim = _t(a).ndim
    pairs = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        pairs[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return shape_ops.Pad.apply(a, pad=tuple(pairs), value=value)


def concat(tensors, dim=0):
    return shape_ops.Concat.apply(*tensors, axis=dim)


cat = concat


def stack(tensors, dim=0):
    return shape_ops.Stack.apply(*tensors, axis=dim)


def getitem(a, index):
    if isinstance(index, tuple):
        index = tuple(backend.unwrap(i) for i in index)
    else:
        index = backend.unwrap(index)
    return shape_ops.GetItem.apply(a, index=index)


# --- linear algebra and activations ---------------------------------------------------------
def matmul(a, b):
    return linalg.MatMul.apply(a, b)


def linear(x, weight, bias=None):
    """y = x weightᵀ + bias, weight (out, in)."""
    return linalg.Linear.apply(x, weight, bias)


def softmax(a, dim=-1):
    return activation.Softmax.apply(a, axis=dim)


def log_softmax(a, dim=-1):
    return activation.LogSoftmax.apply(a, axis=dim)


def dropout(a, p=0.5, training=False, seed=None):
    """Identity unless training; then zero each element with probability p and scale by 1/(1-p)."""
    if not training or p == 0:
        return a
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    a = _t(a)
    keep = backend.np.random.default_rng(seed).random(a.shape) >= p  # host RNG, then moved
    mask = backend.to_device(keep.astype(a.dtype) / (1 - p), a.device)
    return mul(a, mask)


# --- convolution, pooling, normalisation ---------------------------------------------------
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, algorithm="auto"):
    """2-D cross-correlation, NCHW input and OIHW weight, as ``torch.nn.functional.conv2d``.

    ``algorithm``: "im2col", "winograd" (stride 1, square kernel), or "auto", which picks per
    shape (see ``minigrad.ops.conv_algorithms.choose``).
    """
    return conv_algorithms.conv2d(_t(x), weight, bias, stride, padding, dilation, groups,
                                  algorithm, _constant_weight_cache(weight))


def _constant_weight_cache(weight):
    """A dict of derived layouts of a constant weight (requires_grad=False), kept on the tensor.

    Reordering OIHW weights for im2col, or transforming them for Winograd, costs as much as a
    small conv, so an inversion, which calls the same constant weights thousands of times, does
    it once. The constant is then frozen: on NumPy its array becomes read-only, so an in-place
    change raises instead of leaving the cache stale; assign a new array to ``weight.data``
    (which drops the cache) or use ``requires_grad=True`` for weights that change. (CuPy arrays
    cannot be frozen: treat constant weights on the GPU as immutable.)
    """
    if not isinstance(weight, Tensor) or weight.requires_grad or weight.ndim != 4:
        return None
    cached = getattr(weight, "_conv_cache", None)
    if cached is None or cached[0] is not weight.data:
        cached = (backend.freeze(weight.data), {})
        weight._conv_cache = cached
    return cached[1]


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    return pool.MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding,
                                ceil_mode=ceil_mode)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return pool.AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding,
                                ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def adaptive_avg_pool2d(x, output_size):
    return pool.AdaptiveAvgPool2d.apply(x, output_size=output_size)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """LRN across channels with PyTorch's semantics: x / (k + alpha/size · Σ x²)^beta."""
    return norm.LocalResponseNorm.apply(x, size=size, alpha=alpha, beta=beta, k=k)



# --- device and dtype: Tensor methods only (x.to, x.astype), as in PyTorch ------------------
def _to(a, device):
    """A copy on another device ('cpu' or 'cuda'); gradients flow back through it."""
    a = _t(a)
    if backend.check_device(device) == a.device:
        return a
    return shape_ops.ToDevice.apply(a, device=device)


def _astype(a, dtype):
    return elementwise.Cast.apply(a, dtype=dtype)


# --- Tensor methods and operators --------------------------------------------------------------
def _reflected(fn):
    return lambda self, other: fn(other, self)


# One table maps Python's operators and Tensor's methods onto the functions above. It lives
# here, not in tensor.py, so that the engine imports only the backend: tensor <- ops <-
# functional is a chain, not a circle. Importing minigrad runs it.
TENSOR_METHODS = {
    "__add__": add, "__radd__": _reflected(add), "__sub__": sub, "__rsub__": _reflected(sub),
    "__mul__": mul, "__rmul__": _reflected(mul), "__truediv__": div,
    "__rtruediv__": _reflected(div), "__pow__": pow, "__rpow__": _reflected(pow),
    "__matmul__": matmul, "__rmatmul__": _reflected(matmul), "__neg__": neg,
    "__getitem__": getitem, "__abs__": abs,
    "sum": sum, "mean": mean, "max": max, "reshape": reshape, "view": reshape, "exp": exp,
    "log": log, "sqrt": sqrt, "abs": abs, "relu": relu, "clamp": clamp, "flatten": flatten,
    "permute": permute, "transpose": transpose, "to": _to, "astype": _astype,
}
for _name, _fn in TENSOR_METHODS.items():
    setattr(Tensor, _name, _fn)
del _name, _fn
