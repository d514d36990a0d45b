"""Every op, forward and backward, against PyTorch (CPU) with a random upstream gradient.

float32 is compared with rtol 1e-4 and float64 with rtol 1e-9 (plus a small atol for values
near zero). Inputs are made on the host in float64, cast, and moved to the device under test.
"""
import itertools

import numpy as np
import pytest
from conftest import K, N, P, T, normal, on, tie_free

import minigrad as mg
import minigrad.functional as F
from minigrad import backend

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {  # dtype -> (rtol, atol)
    "float32": (1e-4, 1e-5),
    "float64": (1e-9, 1e-11),
}
DTYPES = list(TOL)


def compare(mg_fn, th_fn, arrays, dtype, device, rng, scale_atol=1.0):
    """Forward and input gradients of mg_fn and th_fn on the same inputs must agree.

    Float arrays are differentiated on both sides; other arrays (masks, indices) are passed
    through unchanged, as a torch tensor to torch.
    """
    rtol, atol = TOL[dtype]
    atol *= scale_atol
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    grad = [a.dtype.kind == "f" for a in arrays]
    mg_in = [mg.Tensor(on(device, a), requires_grad=g) for a, g in zip(arrays, grad)]
    th_in = [torch.tensor(a, requires_grad=g) for a, g in zip(arrays, grad)]
    mg_out, th_out = mg_fn(*mg_in), th_fn(*th_in)
    assert mg_out.dtype == np.dtype(dtype), f"output dtype {mg_out.dtype}, expected {dtype}"
    assert mg_out.shape == tuple(th_out.shape)
    np.testing.assert_allclose(mg_out.numpy(), th_out.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg="forward")
    g = rng.standard_normal(tuple(th_out.shape)).astype(dtype)  # random, not ones
    mg_out.backward(on(device, g))
    th_out.backward(torch.from_numpy(g))
    for i, (m, t) in enumerate(zip(mg_in, th_in)):
        if not t.requires_grad:
            continue
        assert m.grad is not None, f"no gradient for input {i}"
        assert m.grad.dtype == np.dtype(dtype), f"input {i}: gradient dtype {m.grad.dtype}"
        np.testing.assert_allclose(backend.asnumpy(m.grad), t.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")



def Mask(*shape):
    return lambda rng: rng.random(shape) > 0.5


def build(rng, builders):
    out = []
    for b in builders:
        built = b(rng)
        out.extend(built if isinstance(built, tuple) else (built,))
    return out


def distinct_pair(*shape):
    def b(rng):
        both = tie_free(rng, (2,) + shape)
        return both[0], both[1]
    return b


IDX = np.array([2, 0, 2, 1])
MASK = np.array([True, False, True, True])
TIDX = torch.from_numpy(IDX)


def C(mg_fn, th_fn, *builders, id):  # noqa: A002
    return pytest.param(mg_fn, th_fn, builders, id=id)


OPS = [
    C(F.add, torch.add, N(3, 4), N(3, 4), id="add"),
    C(F.add, torch.add, N(2, 3, 4), N(3, 1), id="add-broadcast"),
    C(lambda a: a + 1.5, lambda a: a + 1.5, N(3, 4), id="add-scalar"),
    C(F.sub, torch.sub, N(2, 1, 4), N(3, 4), id="sub-broadcast"),
    C(lambda a: 2.0 - a, lambda a: 2.0 - a, N(3, 4), id="rsub"),
    C(F.mul, torch.mul, N(3, 4), N(4), id="mul-broadcast"),
    C(lambda a: 3.0 * a, lambda a: 3.0 * a, N(3, 4), id="rmul"),
    C(F.div, torch.div, N(3, 4), P(3, 4), id="div"),
    C(lambda a: 1.0 / a, lambda a: 1.0 / a, P(3, 4), id="rdiv"),
    C(F.neg, torch.neg, N(3, 4), id="neg"),
    C(lambda a: a ** 3, lambda a: a ** 3, N(3, 4), id="pow-int"),
    C(lambda a: F.pow(a, 2.5), lambda a: torch.pow(a, 2.5), P(3, 4), id="pow-float"),
    C(F.pow, torch.pow, P(3, 4), N(4), id="pow-tensor"),
    C(lambda b: 2.0 ** b, lambda b: 2.0 ** b, N(3, 4), id="rpow"),
    C(F.exp, torch.exp, N(3, 4), id="exp"),
    C(F.log, torch.log, P(3, 4), id="log"),
    C(F.sqrt, torch.sqrt, P(3, 4), id="sqrt"),
    C(F.abs, torch.abs, K(3, 4), id="abs"),
    C(F.maximum, torch.maximum, distinct_pair(3, 4), id="maximum"),
    C(F.minimum, torch.minimum, distinct_pair(3, 4), id="minimum"),
    C(lambda a: F.clamp(a, -0.5, 0.7), lambda a: torch.clamp(a, -0.5, 0.7),
      K(4, 5, kinks=(-0.5, 0.7)), id="clamp"),
    C(lambda a: F.clamp(a, min=0.2), lambda a: torch.clamp(a, min=0.2), K(4, 5, kinks=(0.2,)),
      id="clamp-min"),
    C(lambda a: F.clamp(a, max=0.2), lambda a: torch.clamp(a, max=0.2), K(4, 5, kinks=(0.2,)),
      id="clamp-max"),
    C(F.where, torch.where, Mask(3, 4), N(3, 4), N(4), id="where"),
    C(F.relu, torch.relu, K(3, 4, 5), id="relu"),
    C(F.sum, torch.sum, N(3, 4, 5), id="sum"),
    C(lambda a: F.sum(a, (0, 2), keepdims=True), lambda a: torch.sum(a, (0, 2), keepdim=True),
      N(3, 4, 5), id="sum-axes-keepdims"),
    C(lambda a: a.sum(dim=1), lambda a: a.sum(dim=1), N(3, 4, 5), id="sum-dim"),
    C(F.mean, torch.mean, N(3, 4, 5), id="mean"),
    C(lambda a: F.mean(a, -1, keepdims=True), lambda a: torch.mean(a, -1, keepdim=True),
      N(3, 4, 5), id="mean-axis"),
    C(F.max, torch.max, T(3, 4, 5), id="max"),
    C(lambda a: F.max(a, 1), lambda a: torch.amax(a, 1), T(3, 4, 5), id="max-axis"),
    C(lambda a: F.max(a, (0, 2), keepdims=True), lambda a: torch.amax(a, (0, 2), keepdim=True),
      T(3, 4, 5), id="max-axes-keepdims"),
    C(lambda a: F.reshape(a, 4, 6), lambda a: a.reshape(4, 6), N(2, 3, 4), id="reshape"),
    C(lambda a: F.transpose(a, 0, 2), lambda a: a.transpose(0, 2), N(2, 3, 4), id="transpose"),
    C(lambda a: F.permute(a, 2, 0, 1), lambda a: a.permute(2, 0, 1), N(2, 3, 4), id="permute"),
    C(lambda a: F.flatten(a, 1), lambda a: torch.flatten(a, 1), N(2, 3, 4), id="flatten"),
    C(lambda a: F.pad(a, (0, 1, 2, 0), value=0.5), lambda a: TF.pad(a, (0, 1, 2, 0), value=0.5),
      N(2, 3, 4), id="pad"),
    C(lambda a, b: F.concat([a, b], 1), lambda a, b: torch.cat([a, b], 1), N(2, 3), N(2, 2),
      id="concat"),
    C(lambda a, b: F.stack([a, b], -1), lambda a, b: torch.stack([a, b], -1), N(2, 3), N(2, 3),
      id="stack"),
    C(lambda a: a[1:, ::2], lambda a: a[1:, ::2], N(3, 5), id="getitem-basic"),
    C(lambda a: a[..., 1, None], lambda a: a[..., 1, None], N(2, 3, 4), id="getitem-ellipsis"),
    C(lambda a: a[IDX], lambda a: a[TIDX], N(3, 4), id="getitem-repeated"),
    C(lambda a: a[IDX, :, [1, 0, 1, 1]], lambda a: a[TIDX, :, [1, 0, 1, 1]], N(3, 2, 4),
      id="getitem-advanced"),
    C(lambda a: a[MASK], lambda a: a[torch.from_numpy(MASK)], N(4, 3), id="getitem-mask"),
    C(F.matmul, torch.matmul, N(4), N(4), id="matmul-1d"),
    C(F.matmul, torch.matmul, N(3, 4), N(4, 5), id="matmul-2d"),
    C(F.matmul, torch.matmul, N(2, 1, 3, 4), N(3, 4, 2), id="matmul-batched"),
    C(F.matmul, torch.matmul, N(4), N(2, 4, 3), id="matmul-1d-batched"),
    C(lambda a, b: a @ b, lambda a, b: a @ b, N(2, 3, 4), N(4), id="matmul-operator"),
    C(F.linear, TF.linear, N(3, 5), N(4, 5), N(4), id="linear"),
    C(F.linear, TF.linear, N(2, 3, 5), N(4, 5), id="linear-3d-no-bias"),
    C(lambda a: F.softmax(a, 1), lambda a: torch.softmax(a, 1), N(2, 4, 3), id="softmax"),
    C(lambda a: F.log_softmax(a, -1), lambda a: torch.log_softmax(a, -1), N(3, 5),
      id="log_softmax"),
    C(lambda a: F.dropout(a, 0.5), lambda a: TF.dropout(a, 0.5, training=False), N(3, 4),
      id="dropout-eval"),
    C(lambda x: F.adaptive_avg_pool2d(x, (3, 2)), lambda x: TF.adaptive_avg_pool2d(x, (3, 2)),
      N(2, 2, 7, 5), id="adaptive-3x2"),
    C(lambda x: F.adaptive_avg_pool2d(x, 4), lambda x: TF.adaptive_avg_pool2d(x, 4),
      N(1, 2, 6, 9), id="adaptive-4"),
    C(lambda x: F.adaptive_avg_pool2d(x, (6, 1)), lambda x: TF.adaptive_avg_pool2d(x, (6, 1)),
      N(1, 2, 13, 5), id="adaptive-6x1"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mg_fn, th_fn, builders", OPS)
def test_op(mg_fn, th_fn, builders, dtype, device, rng):
    compare(mg_fn, th_fn, build(rng, builders), dtype, device, rng)


def test_dropout_training_matches_its_mask(device, rng):
    """With a seed the mask is reproducible: zeros where dropped, x/(1-p) elsewhere."""
    x = normal(rng, (4, 6))
    p, seed = 0.25, 3
    keep = np.random.default_rng(seed).random(x.shape) >= p
    compare(lambda a: F.dropout(a, p, training=True, seed=seed),
            lambda a: a * torch.from_numpy(keep / (1 - p)), [x], "float64", device, rng)
    assert 0 < keep.sum() < keep.size


CONV = [  # (x shape, w shape, stride, padding, dilation, groups, bias)
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 0, 1, 1, True),
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1, 1, False),
    ((1, 3, 11, 13), (4, 3, 5, 5), 4, 2, 1, 1, True),
    ((1, 3, 17, 17), (5, 3, 11, 11), 4, 0, 1, 1, True),  # conv1-like, small
    ((2, 4, 7, 7), (6, 2, 3, 3), 1, 1, 1, 2, True),
    ((1, 6, 6, 6), (6, 1, 3, 3), 1, 1, 1, 6, False),  # depthwise
    ((1, 2, 9, 9), (3, 2, 3, 3), 1, 2, 2, 1, True),
    ((1, 2, 9, 10), (3, 2, 3, 2), 2, 1, 2, 1, False),
    ((2, 2, 7, 9), (3, 2, 2, 3), (2, 1), (1, 0), 1, 1, True),
    ((1, 4, 6, 7), (4, 2, 2, 3), (1, 2), (2, 1), (2, 1), 2, True),
    ((1, 3, 5, 5), (2, 3, 1, 1), 1, 0, 1, 1, True),
    ((1, 3, 5, 5), (2, 3, 1, 1), 2, 1, 1, 1, False),
    ((1, 2, 3, 4), (2, 2, 3, 4), 1, 0, 1, 1, True),  # kernel covers the whole input
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups, bias", CONV)
def test_conv2d(xs, ws, stride, padding, dilation, groups, bias, dtype, device, rng):
    arrays = [normal(rng, xs), normal(rng, ws)] + ([normal(rng, ws[:1])] if bias else [])
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def mg_fn(x, w, b=None):
        return F.conv2d(x, w, b, **kw)

    def th_fn(x, w, b=None):
        return TF.conv2d(x, w, b, **kw)

    compare(mg_fn, th_fn, arrays, dtype, device, rng, scale_atol=10.0)


def test_conv2d_input_gradient_only(device, rng):
    """With constant weights (an inversion) conv skips dW and db and still gets dx right."""
    x, w, b = normal(rng, (1, 3, 7, 7)), normal(rng, (4, 3, 3, 3)), normal(rng, (4,))
    xt = mg.Tensor(on(device, x), requires_grad=True)
    wt, bt = mg.Tensor(on(device, w)), mg.Tensor(on(device, b))
    y = F.conv2d(xt, wt, bt, stride=2, padding=1)
    g = rng.standard_normal(y.shape)
    y.backward(on(device, g))
    xth = torch.tensor(x, requires_grad=True)
    TF.conv2d(xth, torch.tensor(w), torch.tensor(b), stride=2, padding=1).backward(
        torch.from_numpy(g))
    np.testing.assert_allclose(backend.asnumpy(xt.grad), xth.grad.numpy(), rtol=1e-9, atol=1e-11)
    assert wt.grad is None and bt.grad is None


POOL = [  # (kernel, stride, padding, ceil_mode) over all valid small combinations
    (k, s, p, c)
    for k, s, p, c in itertools.product([2, 3, (2, 3)], [1, 2, 3], [0, 1], [False, True])
    if (p <= (k if isinstance(k, int) else min(k)) // 2)
]
POOL_SHAPES = [(1, 2, 7, 9), (2, 1, 6, 6)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=["7x9", "6x6"])
@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", POOL)
def test_max_pool2d(kernel, stride, padding, ceil_mode, shape, dtype, device, rng):
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    compare(lambda x: F.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw),
            [tie_free(rng, shape)], dtype, device, rng)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=["7x9", "6x6"])
@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", POOL)
def test_avg_pool2d(kernel, stride, padding, ceil_mode, count_include_pad, shape, dtype, device,
                    rng):
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
              count_include_pad=count_include_pad)
    compare(lambda x: F.avg_pool2d(x, **kw), lambda x: TF.avg_pool2d(x, **kw),
            [normal(rng, shape)], dtype, device, rng)


def test_max_pool2d_default_stride_is_kernel(device, rng):
    compare(lambda x: F.max_pool2d(x, 3), lambda x: TF.max_pool2d(x, 3),
            [tie_free(rng, (1, 2, 9, 7))], "float64", device, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, alpha, beta, k, channels", [
    (3, 1e-4, 0.75, 1.0, 6),
    (5, 1e-4, 0.75, 2.0, 8),  # CaffeNet's LRN
    (5, 0.5, 0.75, 1.0, 7),  # a large alpha makes the cross-channel term visible
    (3, 0.3, 0.5, 2.0, 5),
    (2, 0.4, 0.75, 1.0, 5),  # even window: one more channel before than after
    (4, 0.4, 0.6, 1.5, 6),
    (5, 0.5, 0.75, 1.0, 3),  # window wider than the channels
    (1, 0.5, 0.75, 1.0, 3),
])
def test_local_response_norm(size, alpha, beta, k, channels, dtype, device, rng):
    kw = dict(size=size, alpha=alpha, beta=beta, k=k)
    compare(lambda x: F.local_response_norm(x, **kw), lambda x: TF.local_response_norm(x, **kw),
            [normal(rng, (2, channels, 3, 4))], dtype, device, rng)


def test_max_with_ties_matches_amax(device, rng):
    """torch.amax splits a tied maximum's gradient evenly; so does F.max."""
    x = rng.integers(0, 3, (4, 5, 3)).astype("float64")  # many ties
    compare(lambda a: F.max(a, (1, 2)), lambda a: torch.amax(a, (1, 2)), [x], "float64", device,
            rng)
    compare(lambda a: F.max(a), lambda a: torch.amax(a), [x], "float64", device, rng)
