"""minigrad.invert and its PyTorch reference (benchmarks/ref_torch.py) compute the same thing.

From the same start (the same seeded initial x), 20 iterations of ``minigrad.invert`` and of
``TorchInversion`` give the same x to 1e-3 relative (max |Δ| / max |x|, float32), for a CNN
with random weights (both CVPR15 and IJCV16 presets) and for HOG, HOGb and DSIFT.

At deep layers (conv5, fc8), with λTV = 100 and the presets' large steps, float32 rounding
differences of ~1e-7 eventually flip a ReLU or max-pool switch and the trajectories separate
after several iterations (a discrete jump, not a drift; the gradients from the same x still
agree to ~1e-6). IJCV16's AdaGrad step g/(1/η + √G) is nearly sign(g) where the gradient is
tiny, so a few such pixels move by a different amount from the second iteration on. There the
test compares the first 3 iterations, as ‖Δx‖/‖x‖ < 1e-4.

The 20-iteration CNN run forces every conv to im2col: Winograd's float32 rounding (~2e-6,
tests/test_winograd.py) is enough to flip such a switch at iteration 10 of the CaffeNet conv3
run (the difference jumps from 7e-7 to 3e-4 in one step); the fast convolutions are compared
over the 9 iterations before it.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch")

import minigrad as mg  # noqa: E402
import models  # noqa: E402
from minigrad import samples  # noqa: E402
from minigrad.ops import conv_algorithms  # noqa: E402

ref_torch = pytest.importorskip("benchmarks.ref_torch")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a loaded 2-core machine two OpenMP threads can stall."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def image():
    return samples.load("astronaut")


_NETS = {}


def _rep(name):
    if name not in _NETS:
        if name in ("hog", "hogb", "dsift"):
            _NETS[name] = models.get(name)
        else:
            _NETS[name] = models.get(name, weights=None)  # seeded random weights
    return _NETS[name]


def _run_both(name, layer, preset, image, iters, compare_after=None, algorithm="auto", **kw):
    rep = _rep(name)
    img = image if rep.kind == "cnn" else image[:96, :96]
    seen = {}

    def callback(step, x, terms):
        if step == compare_after:
            seen["x"] = np.array(x)

    with conv_algorithms.forced(algorithm):
        result = mg.invert(rep, img, layer, preset=preset, iters=iters, callback=callback, **kw)
    assert result.status == "completed", result.message
    ref = ref_torch.TorchInversion.build(rep, img, layer, preset, iters=iters, **kw)
    if compare_after is None:
        ref.run()
        return result.x, ref.result()
    ref.run(compare_after)  # the callback at step s sees x after s updates
    return seen["x"], ref.result()


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name,layer,preset", [
    ("caffenet", "conv3", "cvpr15"),
    ("hog", "hog", "cvpr15"),
    ("hogb", "hog", "cvpr15"),
    ("dsift", "dsift", "cvpr15"),
    ("hog", "hog", "ijcv16"),
    ("dsift", "dsift", "ijcv16"),
])
def test_twenty_iterations_agree(name, layer, preset, image):
    ours, theirs = _run_both(name, layer, preset, image, iters=20, algorithm="im2col")
    assert ours.shape == theirs.shape
    assert _rel(ours, theirs) < 1e-3


def test_fast_convolutions_agree_until_the_first_switch_flip(image):
    """Space-to-depth + Winograd (conv1), Winograd F(3,5) (conv2): the first 5 of the 20
    iterations within 1e-5 (measured 5.6e-7). A max-pool near-tie then flips: where depends on
    float32 summation order alone (iteration 10 with the Winograd bands of 1ce1ce3, 7 since
    bands hold >= 64 tiles: 2.8e-4 there), so the check stops well before it."""
    with conv_algorithms.recorded() as log:
        with mg.no_grad():
            _rep("caffenet").forward(_rep("caffenet").preprocess(image), "conv3")
    assert [entry[3].split()[0] for entry in log] == ["space-to-depth", "winograd", "im2col"]
    ours, theirs = _run_both("caffenet", "conv3", "cvpr15", image, iters=20, compare_after=5)
    assert _rel(ours, theirs) < 1e-5


@pytest.mark.parametrize("name,layer,preset", [
    ("alexnet", "conv5", "cvpr15"),  # non-unit input scale (ImageNet mean/std)
    ("caffe-alexnet", "conv5", "ijcv16"),  # jitter, AdaGrad-momentum, projection
    ("caffenet", "fc8", "cvpr15"),
])
def test_first_iterations_agree_at_deep_layers(name, layer, preset, image):
    ours, theirs = _run_both(name, layer, preset, image, iters=4, compare_after=3)
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-4


def test_same_initial_x_and_target(image):
    rep = _rep("caffenet")
    ref = ref_torch.TorchInversion.build(rep, image, "conv3", "cvpr15", iters=1)
    first = {}
    result = mg.invert(rep, image, "conv3", preset="cvpr15", iters=1,
                       callback=lambda s, x, t: first.setdefault("x", np.array(x)))
    np.testing.assert_array_equal(first["x"], ref.p.x_init)  # CaffeNet: unit input scale
    with mg.no_grad():
        phi0 = rep.forward(mg.tensor(ref.p.x0), "conv3").numpy()
    np.testing.assert_allclose(ref.phi0.numpy(), phi0, rtol=1e-4, atol=1e-3)
    assert result.x.shape == ref.result().shape


def test_jax_reference_agrees(image):
    ref_jax = pytest.importorskip("benchmarks.ref_jax")
    if not ref_jax.available():
        pytest.skip("jax is not installed (optional; CI does not install it)")
    ours, _ = _run_both("caffenet", "conv3", "cvpr15", image, iters=4, compare_after=3)
    ref = ref_jax.JaxInversion.build(_rep("caffenet"), image, "conv3", "cvpr15", iters=4)
    theirs = ref.run(3).result()
    assert _rel(ours, theirs) < 1e-4
