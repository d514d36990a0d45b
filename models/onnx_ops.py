"""The ONNX operators a CNN needs, each on minigrad's ops (``minigrad.functional``).

A builder takes a node (``weights.onnx_file.Node``) and the loading context and returns
``(run, window)``, or ``(run, window, inputs)`` when the step reads other values than the node's
inputs (constants prepared at load time), or None when the node was folded into an earlier step.
``run(*values)`` maps the input values (Tensors; ``None`` for an omitted optional input; host
arrays for integer constants) to the output Tensor, and
``window(input_shape)`` gives the (kh, kw, sh, sw) a unit sees of its input, for receptive
fields. Ops that mix all spatial positions (Flatten, Gemm after a 4-D input, global pooling)
see their whole input, as an fc layer does in ``models.cnn``: the kernel is the input's size.

Attribute defaults and semantics follow the ONNX operator specification for opsets 9 to 23.
"""
import math

from minigrad import F, backend
from minigrad.tensor import Tensor
from weights.onnx_file import OnnxError


def identity_window(shape):
    return (1, 1, 1, 1)


def whole_window(shape):
    """A unit sees all of a 4-D input (an fc layer's rule); 1×1 on what is already flat."""
    return (shape[2], shape[3], 1, 1) if len(shape) == 4 else (1, 1, 1, 1)


def _ints(node, key, default, length=2):
    value = list(node.attrs.get(key, default))
    if len(value) != length:
        raise OnnxError(f"node {node.name!r} ({node.op_type}): {key}={value} is not "
                        f"{length}-D (only 2-D images are supported)")
    return value


def _pads(node, kernel, strides, dilations):
    """A function of the input's (H, W) -> (top, left, bottom, right), from pads or auto_pad."""
    auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = _ints(node, "pads", [0, 0, 0, 0], 4)
        if min(pads) < 0:
            raise OnnxError(f"node {node.name!r}: negative pads {pads}")
        return lambda hw: tuple(pads)
    if auto == "VALID":
        return lambda hw: (0, 0, 0, 0)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise OnnxError(f"node {node.name!r}: unknown auto_pad {auto!r}")

    def same(hw):
        begin, end = [], []
        for n, k, s, d in zip(hw, kernel, strides, dilations):
            total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return (begin[0], begin[1], end[0], end[1])

    return same


def conv(node, ctx):
    """Conv: groups, dilation, strides; symmetric pads go to conv2d, others to a pad first."""
    w = ctx.constant(node, 1, "the weight")
    kernel = _ints(node, "kernel_shape", w.shape[2:])
    strides, dil = _ints(node, "strides", [1, 1]), _ints(node, "dilations", [1, 1])
    groups = int(node.attrs.get("group", 1))
    pads = _pads(node, kernel, strides, dil)

    def run(x, w, b=None):
        top, left, bottom, right = pads(x.shape[2:])
        if (top, left) != (bottom, right):
            x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
        return F.conv2d(x, w, b, stride=strides, padding=(top, left), dilation=dil,
                        groups=groups)

    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dil)]
    return run, lambda shape: (extent[0], extent[1], strides[0], strides[1])


def _pool_geometry(node):
    kernel = _ints(node, "kernel_shape", [])
    strides = _ints(node, "strides", [1, 1])  # ONNX's default stride is 1, not the kernel
    if _ints(node, "dilations", [1, 1]) != [1, 1]:
        raise OnnxError(f"node {node.name!r} ({node.op_type}): dilated pooling is not supported")
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    return kernel, strides, _pads(node, kernel, strides, [1, 1]), ceil_mode


def _simple(pads, kernel):
    """True when the pooling op's own symmetric padding (at most half the kernel) applies."""
    top, left, bottom, right = pads
    return (top, left) == (bottom, right) and top <= kernel[0] // 2 and left <= kernel[1] // 2


def _explicit_pad(node, x, pads, ceil_mode, value=0.0):
    if ceil_mode:
        raise OnnxError(f"node {node.name!r} ({node.op_type}): ceil_mode with pads {pads} "
                        f"(asymmetric or over half the kernel) is not supported")
    top, left, bottom, right = pads
    return F.pad(x, (left, right, top, bottom), value=value)


def max_pool(node, ctx):
    kernel, strides, pads, ceil_mode = _pool_geometry(node)

    def run(x):
        p = pads(x.shape[2:])
        if _simple(p, kernel):
            return F.max_pool2d(x, kernel, strides, p[:2], ceil_mode=ceil_mode)
        x = _explicit_pad(node, x, p, ceil_mode, value=-math.inf)
        return F.max_pool2d(x, kernel, strides)

    return run, lambda shape: (kernel[0], kernel[1], strides[0], strides[1])


def average_pool(node, ctx):
    """AveragePool; count_include_pad (default 0) says whether padded zeros count."""
    kernel, strides, pads, ceil_mode = _pool_geometry(node)
    include = bool(node.attrs.get("count_include_pad", 0))

    def run(x):
        p = pads(x.shape[2:])
        if _simple(p, kernel):
            return F.avg_pool2d(x, kernel, strides, p[:2], ceil_mode=ceil_mode,
                                count_include_pad=include)
        y = F.avg_pool2d(_explicit_pad(node, x, p, ceil_mode), kernel, strides)
        if include:
            return y
        # the mean over real pixels only: window sums divided by how many real pixels they hold
        ones = Tensor(backend.xp_for(x.device).ones((1, 1) + x.shape[2:], dtype=x.dtype))
        return F.div(y, F.avg_pool2d(_explicit_pad(node, ones, p, False), kernel, strides))

    return run, lambda shape: (kernel[0], kernel[1], strides[0], strides[1])


def global_average_pool(node, ctx):
    return (lambda x: F.mean(x, axis=(2, 3), keepdims=True)), whole_window


def lrn(node, ctx):
    """LRN: y = x / (bias + alpha/size · Σ x²)^beta over channels [c − ⌊(size−1)/2⌋,
    c + ⌈(size−1)/2⌉]: PyTorch's window for odd sizes (minigrad's op); even sizes shift it by
    one channel, so they are composed from pad, slices and powers."""
    a = node.attrs
    size, alpha = int(a.get("size", 0)), float(a.get("alpha", 1e-4))
    beta, bias = float(a.get("beta", 0.75)), float(a.get("bias", 1.0))
    if size < 1:
        raise OnnxError(f"node {node.name!r} (LRN): size must be a positive integer, got {size}")
    if size % 2:
        return (lambda x: F.local_response_norm(x, size, alpha, beta, bias)), identity_window
    before, after = (size - 1) // 2, size // 2

    def run(x):
        C = x.shape[1]
        sq = F.pad(F.mul(x, x), (0, 0, 0, 0, before, after))  # (N, C + size - 1, H, W)
        total = sq[:, 0:C]
        for shift in range(1, size):
            total = F.add(total, sq[:, shift:shift + C])
        return F.mul(x, F.pow(F.add(F.mul(total, alpha / size), bias), -beta))

    return run, identity_window


def batch_norm(node, ctx):
    """Inference BatchNormalization, y = a·x + c with a = scale/√(var + ε), c = B − mean·a.

    Folded into the Conv before it at load time when that conv's output feeds nothing else:
    W ← a·W, b ← a·b + c (computed in float64), so the BN costs nothing at run time.
    """
    if node.attrs.get("training_mode", 0):
        raise OnnxError(f"node {node.name!r}: BatchNormalization in training mode")
    np = backend.np
    scale, shift, mean, var = (ctx.constant(node, i, what).astype(np.float64) for i, what in
                               enumerate(("scale", "B", "mean", "var"), start=1))
    a = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    c = shift - mean * a
    if ctx.fold_into_conv(node, a, c):
        return None
    inputs = [node.inputs[0], ctx.add_constant(node, "scale", a),
              ctx.add_constant(node, "shift", c)]

    def run(x, a, c):
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        return F.add(F.mul(x, F.reshape(a, per_channel)), F.reshape(c, per_channel))

    return run, identity_window, inputs


def gemm(node, ctx):
    """Gemm: y = alpha·A'B' + beta·C, A' = Aᵀ if transA, B' = Bᵀ if transB (fc layers)."""
    a = node.attrs
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    trans_a, trans_b = bool(a.get("transA", 0)), bool(a.get("transB", 0))

    def run(x, w, c=None):
        if trans_a:
            x = F.transpose(x)
        if trans_b and alpha == 1.0 and beta == 1.0:
            return F.linear(x, w, c)  # the fc layer's usual form: one fused op
        y = F.linear(x, w) if trans_b else F.matmul(x, w)
        y = y if alpha == 1.0 else F.mul(y, alpha)
        if c is None:
            return y
        return F.add(y, c if beta == 1.0 else F.mul(c, beta))

    return run, identity_window


def matmul(node, ctx):
    return F.matmul, lambda shape: whole_window(shape) if len(shape) > 2 else (1, 1, 1, 1)


def flatten(node, ctx):
    axis = int(node.attrs.get("axis", 1))

    def run(x):
        k = axis % x.ndim if axis < 0 else axis
        return F.reshape(x, (math.prod(x.shape[:k]), math.prod(x.shape[k:])))

    return run, whole_window


def reshape(node, ctx):
    target = [int(d) for d in ctx.constant(node, 1, "the shape").reshape(-1)]
    allow_zero = bool(node.attrs.get("allowzero", 0))

    def shape_for(shape):
        return tuple(shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(target))

    def window(shape):
        same = len(shape) == 4 and len(target) == 4 and shape_for(shape)[2:] == tuple(shape[2:])
        return (1, 1, 1, 1) if same else whole_window(shape)

    return (lambda x, *unused: F.reshape(x, shape_for(x.shape))), window


def concat(node, ctx):
    axis = int(node.attrs.get("axis", 1))
    spatial = lambda shape: len(shape) == 4 and axis % 4 >= 2  # noqa: E731
    return (lambda *xs: F.concat(list(xs), axis)), \
        lambda shape: whole_window(shape) if spatial(shape) else (1, 1, 1, 1)


def softmax(node, ctx):
    """Softmax along ``axis`` (opset ≥ 13); before 13, over all axes from ``axis`` on."""
    coerce = ctx.opset < 13
    axis = int(node.attrs.get("axis", 1 if coerce else -1))

    def run(x):
        k = axis % x.ndim
        if not coerce or k == x.ndim - 1:
            return F.softmax(x, k)
        flat = F.reshape(x, (math.prod(x.shape[:k]), math.prod(x.shape[k:])))
        return F.reshape(F.softmax(flat, 1), x.shape)

    def window(shape):
        k = axis % len(shape)
        spans = range(k, len(shape)) if coerce else (k,)
        return whole_window(shape) if len(shape) == 4 and max(spans) >= 2 else (1, 1, 1, 1)

    return run, window


def dropout(node, ctx):
    if len(node.inputs) > 2 and node.inputs[2]:
        if bool(ctx.constant(node, 2, "training_mode").reshape(-1)[0]):
            raise OnnxError(f"node {node.name!r}: Dropout in training mode")
    return (lambda x, *unused: x), identity_window


def clip(node, ctx):
    """Clip (ReLU6 and friends): bounds from attributes before opset 11, constant inputs after."""
    if ctx.opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    else:
        bounds = [float(ctx.constant(node, i, "a bound").reshape(-1)[0])
                  if len(node.inputs) > i and node.inputs[i] else None for i in (1, 2)]
        lo, hi = bounds
    return (lambda x, *unused: F.clamp(x, lo, hi)), identity_window


def _elementwise(fn):
    return lambda node, ctx: (fn, identity_window)


OPS = {
    "Conv": conv, "MaxPool": max_pool, "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool, "LRN": lrn, "BatchNormalization": batch_norm,
    "Gemm": gemm, "MatMul": matmul, "Flatten": flatten, "Reshape": reshape, "Concat": concat,
    "Softmax": softmax, "Dropout": dropout, "Clip": clip,
    "Relu": _elementwise(F.relu), "Identity": _elementwise(lambda x: x),
    "LeakyRelu": lambda node, ctx: ((lambda x: F.leaky_relu(x, float(node.attrs.get(
        "alpha", 0.01)))), identity_window),
    "Add": _elementwise(F.add), "Sub": _elementwise(F.sub), "Mul": _elementwise(F.mul),
    "Div": _elementwise(F.div),
}


def constant_value(node):
    """The host array of a Constant node (value, value_float(s) or value_int(s))."""
    np = backend.np
    a = node.attrs
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a and a[key] is not None:
            return np.asarray(a[key], dtype=dtype)
    raise OnnxError(f"node {node.name!r}: Constant without a supported value attribute "
                    f"(value, value_float(s), value_int(s))")
