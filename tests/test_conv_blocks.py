"""conv2d in blocks of output rows (bounded im2col memory) equals the one-block computation."""
import numpy as np
import pytest
from conftest import assert_same_on_devices, on

import minigrad as mg
from minigrad import F
from minigrad.ops import conv

CASES = [
    ((2, 4, 9, 11), (6, 2, 3, 2), dict(stride=2, padding=1, groups=2, dilation=2)),
    ((1, 3, 12, 12), (4, 3, 5, 5), dict(stride=4, padding=2)),
    ((1, 3, 13, 10), (5, 3, 3, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
]


def _forward_backward(x0, w0, g, kw, device="cpu"):
    x = mg.tensor(x0, requires_grad=True, dtype=None, device=device)
    y = F.conv2d(x, mg.tensor(w0, dtype=None, device=device), **kw)
    y.backward(on(device, g))
    return y.numpy(), mg.backend.asnumpy(x.grad)


@pytest.mark.parametrize("x_shape, w_shape, kw", CASES)
@pytest.mark.parametrize("budget", [1, 40])
def test_row_blocks_match_one_block(monkeypatch, x_shape, w_shape, kw, budget, device):
    rng = np.random.default_rng(0)
    x0, w0 = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y_ref = F.conv2d(mg.tensor(x0, dtype=None), mg.tensor(w0, dtype=None), **kw).numpy()
    g = rng.standard_normal(y_ref.shape)
    y_one, gx_one = _forward_backward(x0, w0, g, kw)
    monkeypatch.setattr(conv, "COLS_BUDGET", budget)
    assert len(conv.row_blocks(y_ref.shape[2], 1000)) > 1  # the budget really splits
    y_blk, gx_blk = _forward_backward(x0, w0, g, kw, device)
    np.testing.assert_allclose(y_blk, y_one, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx_blk, gx_one, rtol=1e-12, atol=1e-12)
    if device == "cpu":
        mg.gradcheck(lambda a: F.conv2d(a, w0, **kw), x0)
    else:  # blocks on the device: the same as on the CPU
        assert_same_on_devices(y_blk, _forward_backward(x0, w0, g, kw)[0], "blocked conv")


def test_weight_gradient_keeps_one_block(monkeypatch):
    monkeypatch.setattr(conv, "COLS_BUDGET", 1)
    rng = np.random.default_rng(1)
    mg.gradcheck(lambda a, w: F.conv2d(a, w, padding=1), rng.standard_normal((1, 2, 6, 5)),
                 rng.standard_normal((3, 2, 3, 3)))
