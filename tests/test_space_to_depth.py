"""Strided convolution by space-to-depth folding: agreement with PyTorch and the auto choice."""
import numpy as np
import pytest
from conftest import normal, on

import minigrad as mg
import minigrad.functional as F
from minigrad import backend
from minigrad.ops import conv_algorithms, space_to_depth

torch = pytest.importorskip("torch")
TF = torch.nn.functional

FOLDED = [  # (x shape, w shape, stride, padding, groups)
    ((1, 3, 35, 39), (8, 3, 11, 11), 4, 0, 1),  # conv1-like: a 3×3 Winograd conv after folding
    ((1, 3, 36, 33), (6, 3, 11, 11), 4, 2, 1),  # torchvision's padding: the fold crops a row
    ((2, 4, 23, 21), (6, 2, 5, 5), 2, 1, 2),  # 5×5 / 2 folds to 3×3, with groups
    ((1, 2, 15, 16), (3, 2, 4, 4), 3, 2, 1),  # 4×4 / 3 folds to 2×2
]


@pytest.mark.parametrize("constant", [False, True], ids=["trained", "constant"])
@pytest.mark.parametrize("xs, ws, stride, padding, groups", FOLDED)
def test_space_to_depth_matches_torch_float64(xs, ws, stride, padding, groups, constant, device,
                                              rng):
    x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, ws[:1])
    xt = mg.Tensor(on(device, x), requires_grad=True)
    wt, bt = (mg.Tensor(on(device, a), requires_grad=not constant) for a in (w, b))
    kw = dict(stride=stride, padding=padding, groups=groups)
    y = F.conv2d(xt, wt, bt, algorithm="space-to-depth", **kw)
    x_th, w_th, b_th = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y_th = TF.conv2d(x_th, w_th, b_th, **kw)
    g = rng.standard_normal(tuple(y_th.shape))
    y.backward(on(device, g))
    y_th.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y.numpy(), y_th.detach().numpy(), **tol, err_msg="forward")
    np.testing.assert_allclose(backend.asnumpy(xt.grad), x_th.grad.numpy(), **tol, err_msg="dx")
    if not constant:
        np.testing.assert_allclose(backend.asnumpy(wt.grad), w_th.grad.numpy(), **tol)
        np.testing.assert_allclose(backend.asnumpy(bt.grad), b_th.grad.numpy(), **tol)


def test_folded_weight_layout():
    """W2[o, (c, dy, dx), a, b] = W[o, c, s·a + dy, s·b + dx], zero past the kernel."""
    W = np.arange(2 * 3 * 5 * 5, dtype=float).reshape(2, 3, 5, 5)
    W2 = space_to_depth.fold_weight(W, 2)
    assert W2.shape == (2, 12, 3, 3)
    assert W2[1, 2 * 4 + 1 * 2 + 0, 1, 2] == W[1, 2, 2 * 1 + 1, 2 * 2 + 0]
    assert W2[0, 3, 2, 0] == 0.0  # row 2·2 + 1 = 5 is past the 5×5 kernel


def test_auto_folds_alexnet_conv1_only():
    choose = conv_algorithms.choose
    assert choose((1, 3, 227, 227), (96, 3, 11, 11), stride=4) == (
        "space-to-depth 4, winograd F(4,3)")
    assert choose((1, 3, 227, 227), (96, 3, 11, 11), stride=4, constant=False) == "im2col"
    assert choose((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3) == "im2col"  # folds to 4
    assert choose((1, 1, 64, 64), (32, 1, 6, 6), stride=2) == "im2col"  # 4 folded channels


def test_space_to_depth_refuses_unequal_strides():
    x, w = mg.tensor(np.ones((1, 2, 9, 9))), mg.tensor(np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="algorithm='space-to-depth' needs equal strides"):
        F.conv2d(x, w, stride=(2, 1), algorithm="space-to-depth")
