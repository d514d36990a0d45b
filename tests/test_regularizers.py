"""alpha_norm and total_variation: float64 gradient checks, loop references, boundaries."""
import numpy as np
import pytest
from conftest import assert_same_on_devices

import minigrad as mg
from minigrad import F
from minigrad.inversion.regularizers import alpha_norm, total_variation


def tv_loop(x, beta):
    """The paper's formula written out with loops (replicate boundary: last differences 0)."""
    n, c, h, w = x.shape
    out = np.zeros(n)
    for i in range(n):
        for k in range(c):
            for u in range(h):
                for v in range(w):
                    dx = x[i, k, u, v + 1] - x[i, k, u, v] if v + 1 < w else 0.0
                    dy = x[i, k, u + 1, v] - x[i, k, u, v] if u + 1 < h else 0.0
                    out[i] += (dx * dx + dy * dy) ** (beta / 2)
    return out


def rand(shape, seed=0, lo=0.3, hi=2.0):
    """Values bounded away from 0 (|x| in [lo, hi]) with random signs."""
    r = np.random.default_rng(seed)
    return r.uniform(lo, hi, shape) * r.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("beta", [2.0, 1.0, 1.5])
@pytest.mark.parametrize("normalize", [False, True])
def test_tv_matches_loop_and_gradcheck(beta, normalize):
    x = rand((2, 3, 5, 6), seed=1)
    got = total_variation(mg.tensor(x, dtype="float64"), beta, normalize, reduction="none")
    want = tv_loop(x, beta) / (30 if normalize else 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    mg.gradcheck(lambda t: total_variation(t, beta, normalize, reduction="none"), x)


def test_tv_replicate_boundary():
    # a change only across the last row: one vertical difference per column, nothing beyond
    x = np.zeros((1, 1, 4, 5))
    x[0, 0, -1, :] = 3.0
    assert total_variation(mg.tensor(x, dtype="float64")).item() == pytest.approx(5 * 9.0)
    # a constant image has zero TV and zero gradient
    c = mg.tensor(np.full((1, 2, 4, 4), 7.0), requires_grad=True, dtype="float64")
    v = total_variation(c)
    v.backward()
    assert v.item() == 0 and np.all(c.grad == 0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 0^(-1/4) in the padded corner
def test_tv_composed_oracle_gradient():
    """The fused backward equals the gradient of the same formula composed from F ops."""
    x = rand((2, 3, 6, 7), seed=2)

    def composed(t):
        dx = F.pad(t[:, :, :, 1:] - t[:, :, :, :-1], (0, 1, 0, 0))
        dy = F.pad(t[:, :, 1:, :] - t[:, :, :-1, :], (0, 0, 0, 1))
        return ((dx * dx + dy * dy) ** 0.75).sum()

    a = mg.tensor(x, requires_grad=True, dtype="float64")
    b = mg.tensor(x, requires_grad=True, dtype="float64")
    composed(a).backward()
    total_variation(b, beta=1.5).backward()
    np.testing.assert_allclose(b.grad, a.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [6.0, 2.0, 3.0, 1.5])
def test_alpha_norm_elementwise(alpha):
    x = rand((2, 3, 4, 5), seed=3)
    got = alpha_norm(mg.tensor(x, dtype="float64"), alpha, reduction="none").numpy()
    np.testing.assert_allclose(got, (np.abs(x) ** alpha).reshape(2, -1).sum(1), rtol=1e-12)
    mg.gradcheck(lambda t: alpha_norm(t, alpha, reduction="none"), x)


@pytest.mark.parametrize("alpha", [6.0, 2.0, 3.0])
def test_alpha_norm_per_pixel(alpha):
    x = rand((2, 3, 4, 5), seed=4)
    got = alpha_norm(mg.tensor(x, dtype="float64"), alpha, per_pixel=True, normalize=True,
                     reduction="none").numpy()
    want = (np.sqrt((x ** 2).sum(1)) ** alpha).reshape(2, -1).sum(1) / 20
    np.testing.assert_allclose(got, want, rtol=1e-12)
    mg.gradcheck(lambda t: alpha_norm(t, alpha, per_pixel=True, normalize=True), x)


def test_alpha_norm_not_summed_over_channels_elementwise():
    # element-wise and per-pixel norms differ for colour vectors: (1,1,1) -> 3 vs 3^3 = 27
    x = mg.tensor(np.ones((1, 3, 1, 1)), dtype="float64")
    assert alpha_norm(x, 6).item() == pytest.approx(3.0)
    assert alpha_norm(x, 6, per_pixel=True).item() == pytest.approx(27.0)


def test_reduction_and_float32():
    x = rand((3, 3, 8, 8), seed=5) * 50
    t64 = mg.tensor(x, dtype="float64")
    t32 = mg.tensor(x, dtype="float32")
    for fn in (lambda t, r: alpha_norm(t, 6, reduction=r), lambda t, r: total_variation(t, 2,
                                                                                       reduction=r)):
        per = fn(t64, "none").numpy()
        assert per.shape == (3,)
        assert fn(t64, "sum").item() == pytest.approx(per.sum(), rel=1e-12)
        np.testing.assert_allclose(fn(t32, "none").numpy(), per, rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        alpha_norm(t64, reduction="mean")


@pytest.mark.parametrize("term", ["tv1", "tv2", "alpha6", "alpha_pixel3"])
def test_value_and_gradient_on_cuda_match_cpu(term, cuda):
    x_host = rand((2, 3, 5, 6), seed=3).astype(np.float32)
    fn = {"tv1": lambda x: total_variation(x, 1.0, True, reduction="none"),
          "tv2": lambda x: total_variation(x, 2.0, False, reduction="none"),
          "alpha6": lambda x: alpha_norm(x, 6.0, False, True, reduction="none"),
          "alpha_pixel3": lambda x: alpha_norm(x, 3.0, True, False, reduction="none")}[term]
    out = {}
    for device in ("cpu", cuda):
        x = mg.Tensor(mg.backend.to_device(x_host, device), requires_grad=True)
        y = fn(x)
        (y * mg.tensor([1.0, -2.0], device=device)).sum().backward()
        assert mg.backend.device_of(x.grad) == device
        out[device] = (y, x.grad)
    assert_same_on_devices(out["cpu"][0], out[cuda][0], term)
    assert_same_on_devices(out["cpu"][1], out[cuda][1], f"d{term}/dx")
