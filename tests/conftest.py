"""Shared fixtures: the backend (NumPy, and CuPy or its stand-in), a seeded RNG, and
helpers that make inputs away from ties and kinks (for max, max-pool, ReLU, abs, clamp).

Inputs are always made on the host with a seeded NumPy generator and then moved to the
device under test, so CPU and GPU runs see the same numbers.
"""
import fakecupy
import numpy as np
import pytest

from minigrad import backend

# The `cuda` parameter runs on real CuPy when a GPU is present, and otherwise on the CuPy
# stand-in (tests/fakecupy.py), so it never skips: CI exercises the GPU code path too.
REAL_GPU = backend.gpu_available()
STANDIN = not REAL_GPU
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda")]


@pytest.fixture(params=DEVICES)
def device(request):
    """'cpu' (NumPy) or 'cuda' (CuPy, or the stand-in without a GPU)."""
    if request.param == "cuda" and STANDIN:
        request.getfixturevalue("standin")
    return request.param


@pytest.fixture
def cuda(request):
    """'cuda' only, for tests that compare it with the CPU: real CuPy or the stand-in."""
    if STANDIN:
        request.getfixturevalue("standin")
    return "cuda"


@pytest.fixture
def standin(monkeypatch):
    """The CuPy stand-in as minigrad's CuPy for this test; its sync counter, reset."""
    fakecupy.install(backend, monkeypatch.setattr)
    fakecupy.SYNCS.reset()
    return fakecupy.SYNCS


@pytest.fixture
def xp(device):
    """The array module of the device under test."""
    return backend.xp_for(device)


def assert_same_on_devices(cpu, cuda, what=""):
    """CPU and cuda results agree: bit for bit on the stand-in, to 1e-4 relative on a GPU."""
    a, b = backend.asnumpy(backend.unwrap(cpu)), backend.asnumpy(backend.unwrap(cuda))
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    if STANDIN:
        np.testing.assert_array_equal(a, b, err_msg=what)
    else:
        scale = max(float(np.abs(a).max()), 1e-30) if a.size else 1.0
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def tie_free(rng, shape, lo=-2.0, hi=2.0, dtype="float64"):
    """A shuffled linspace with a little jitter: all values distinct, gaps of >= ~(hi-lo)/2n.

    Central differences with eps=1e-6 never cross a tie, so max, max-pool and sorting-like
    ops have a well-defined gradient everywhere the check looks.
    """
    n = int(np.prod(shape)) if shape else 1
    values = np.linspace(lo, hi, n)
    step = (hi - lo) / max(n - 1, 1)
    values = values + rng.uniform(-0.2, 0.2, n) * step  # jitter keeps the gaps >= 0.6·step
    return rng.permutation(values).reshape(shape).astype(dtype)


def away_from(rng, shape, kinks=(0.0,), margin=0.1, lo=-2.0, hi=2.0, dtype="float64"):
    """Uniform values in [lo, hi], at least ``margin`` from every kink (ReLU, abs, clamp)."""
    x = rng.uniform(lo, hi, shape)
    for _ in range(100):
        bad = np.zeros(x.shape, dtype=bool)
        for k in kinks:
            bad |= np.abs(x - k) < margin
        if not bad.any():
            break
        x[bad] = rng.uniform(lo, hi, int(bad.sum()))
    else:  # pragma: no cover - only with an impossible margin
        raise RuntimeError("could not place values away from the kinks")
    return x.astype(dtype)


def positive(rng, shape, lo=0.5, hi=2.0, dtype="float64"):
    """Values in [lo, hi]: safe for log, sqrt, division and non-integer powers."""
    return rng.uniform(lo, hi, shape).astype(dtype)


def normal(rng, shape, dtype="float64"):
    return rng.standard_normal(shape).astype(dtype)


def on(device, array):
    """Move a host array to the device under test."""
    return backend.to_device(array, device)


# input makers for parametrised op tables: each takes the rng and returns an array

def N(*shape):
    return lambda rng: normal(rng, shape)


def P(*shape):
    return lambda rng: positive(rng, shape)


def T(*shape):
    return lambda rng: tie_free(rng, shape)


def K(*shape, kinks=(0.0,)):
    return lambda rng: away_from(rng, shape, kinks=kinks)
