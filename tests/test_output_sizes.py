"""The ops' output-size functions: what the ops produce, what the CNN layers report, and an
independent count of the windows (and PyTorch's shapes, when torch is installed)."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import F
from minigrad.ops.conv import conv_output_size
from minigrad.ops.pool import pool_output_size
from models.cnn import Conv, MaxPool


def _conv_cases(count=60, seed=0):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, k = int(rng.integers(1, 30)), int(rng.integers(1, 8))
        stride, pad, dilation = (int(v) for v in rng.integers(1, 5, size=3))
        pad -= 1
        if conv_output_size(n, k, stride, pad, dilation) >= 1:
            cases.append((n, k, stride, pad, dilation))
    return cases


def _pool_cases(count=60, seed=1):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, k, stride = int(rng.integers(1, 30)), int(rng.integers(1, 7)), int(rng.integers(1, 5))
        pad, ceil_mode = int(rng.integers(0, k // 2 + 1)), bool(rng.integers(0, 2))
        if pool_output_size(n, k, stride, pad, ceil_mode) >= 1:
            cases.append((n, k, stride, pad, ceil_mode))
    return cases


def _count_pool_windows(n, k, stride, pad, ceil_mode):
    """Windows t = 0, 1, ... starting at t·stride in the padded input: floor mode keeps those
    that fit in the padded input; ceil mode also keeps one that runs past the end, provided it
    starts inside the input or its left padding."""
    count, start = 0, 0
    while start + k <= n + 2 * pad or (ceil_mode and start < n + pad
                                          and start + k - stride < n + 2 * pad):
        count += 1
        start += stride
    return count


@pytest.mark.parametrize("n, k, stride, pad, dilation", _conv_cases())
def test_conv2d_output_equals_conv_output_size(n, k, stride, pad, dilation):
    x = mg.tensor(np.zeros((1, 2, n, n + 3)))
    w = mg.tensor(np.zeros((3, 2, k, k)))
    size_h = conv_output_size(n, k, stride, pad, dilation)
    size_w = conv_output_size(n + 3, k, stride, pad, dilation)
    y = F.conv2d(x, w, stride=stride, padding=pad, dilation=dilation)
    assert y.shape == (1, 3, size_h, size_w)
    assert size_h == len(range(0, n + 2 * pad - dilation * (k - 1), stride))


@pytest.mark.parametrize("n, k, stride, pad, ceil_mode", _pool_cases())
def test_pool_outputs_equal_pool_output_size(n, k, stride, pad, ceil_mode):
    x = mg.tensor(np.zeros((1, 2, n, n + 2)))
    size = (pool_output_size(n, k, stride, pad, ceil_mode),
            pool_output_size(n + 2, k, stride, pad, ceil_mode))
    assert size[0] == _count_pool_windows(n, k, stride, pad, ceil_mode)
    for pool in (F.max_pool2d, F.avg_pool2d):
        assert pool(x, k, stride, pad, ceil_mode=ceil_mode).shape == (1, 2) + size


def test_cnn_layers_report_the_ops_output_shapes():
    rng = np.random.default_rng(2)
    for n, k, stride, pad, _ in _conv_cases(20, seed=3):
        layer = Conv("c", 2, 3, k, stride=stride, pad=pad)
        x = mg.tensor(rng.standard_normal((1, 2, n, n + 1)))
        p = {"c.weight": mg.tensor(rng.standard_normal((3, 2, k, k))),
             "c.bias": mg.tensor(np.zeros(3))}
        assert layer(x, p).shape[1:] == layer.out_shape((2, n, n + 1))
    for n, k, stride, _, ceil_mode in _pool_cases(20, seed=4):
        layer = MaxPool("p", k, stride, ceil_mode=ceil_mode)
        x = mg.tensor(rng.standard_normal((1, 2, n, n + 1)))
        if pool_output_size(n, k, stride, 0, ceil_mode) < 1:
            continue
        assert layer(x, {}).shape[1:] == layer.out_shape((2, n, n + 1))


def test_pool_output_size_matches_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    for n, k, stride, pad, ceil_mode in _pool_cases(40, seed=5):
        x = torch.zeros((1, 1, n, n))
        y = torch.nn.functional.max_pool2d(x, k, stride, pad, ceil_mode=ceil_mode)
        assert y.shape[-1] == pool_output_size(n, k, stride, pad, ceil_mode)
