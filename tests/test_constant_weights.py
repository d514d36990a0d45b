"""conv2d caches the GEMM layout of constant weights; the cache can never go stale silently."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import F


def _reference(x, w):
    with mg.no_grad():
        return F.conv2d(mg.tensor(x), mg.tensor(w, requires_grad=True), padding=1).numpy()


def test_tensor_copies_the_callers_array():
    w0 = np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)
    w = mg.tensor(w0)
    before = F.conv2d(mg.tensor(x), w, padding=1).numpy()
    w0 *= 2  # the caller's array stays writable and is not the tensor's data
    np.testing.assert_allclose(F.conv2d(mg.tensor(x), w, padding=1).numpy(), before)


def test_in_place_change_of_a_cached_constant_raises():
    w = mg.tensor(np.ones((2, 3, 3, 3)))
    F.conv2d(mg.tensor(np.ones((1, 3, 4, 4))), w)
    with pytest.raises(ValueError, match="read-only"):
        w.data *= 2


def test_replacing_data_drops_the_cache():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w0 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w = mg.tensor(w0)
    F.conv2d(mg.tensor(x), w, padding=1)
    w.data = w.data * 3
    np.testing.assert_allclose(F.conv2d(mg.tensor(x), w, padding=1).numpy(),
                               _reference(x, 3 * w0), rtol=1e-5, atol=1e-5)


def test_cache_is_per_groups_setting():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = mg.tensor(rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    x8 = np.concatenate([x, x], axis=1)
    grouped = F.conv2d(mg.tensor(x), w, groups=2).numpy()
    plain = F.conv2d(mg.tensor(x8[:, :2]), w).numpy()  # same weight, groups=1
    np.testing.assert_allclose(grouped[:, :2], plain[:, :2], rtol=1e-5, atol=1e-5)
    with mg.no_grad():
        w_var = mg.tensor(w.numpy(), requires_grad=True)
        np.testing.assert_allclose(F.conv2d(mg.tensor(x), w_var, groups=2).numpy(), grouped,
                                   rtol=1e-5, atol=1e-5)
