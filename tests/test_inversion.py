"""minigrad.invert: presets, convergence, restarts, masks, NaN handling, determinism."""
import math

import numpy as np
import pytest
from conftest import assert_same_on_devices, on

import minigrad as mg
import models
from minigrad import F
from minigrad.inversion import (
    SIGMA_CAFFENET,
    InversionError,
    build_mask,
    input_scale,
    invert,
    jitter_for,
    lambda_tv_for,
    resolve_options,
    schedule_for,
)
from minigrad.inversion import metrics as M
from minigrad.inversion.optim import (
    AdaGradMomentum,
    MomentumSGD,
    PiecewiseSchedule,
    project_pixel_norm,
)
from models.base import Representation


class TinyNet(Representation):
    """conv3x3(3->8) relu maxpool2 conv3x3(8->16), fixed random weights, 32x32 input."""

    name, kind, channels, input_size = "tiny", "cnn", 3, (32, 32)
    layers = ("conv1", "relu1", "pool1", "conv2")

    def __init__(self, seed=0, nan_after=None):
        r = np.random.default_rng(seed)
        self.w1 = mg.tensor(r.standard_normal((8, 3, 3, 3)) * 0.05)
        self.b1 = mg.tensor(r.standard_normal(8) * 0.1)
        self.w2 = mg.tensor(r.standard_normal((16, 8, 3, 3)) * 0.1)
        self.b2 = mg.tensor(np.zeros(16))
        self.calls, self.nan_after = 0, nan_after

    def forward(self, x, layer):
        self.calls += 1
        y = F.conv2d(x, self.w1, self.b1, padding=1)
        if layer != "conv1":
            y = F.relu(y)
            if layer != "relu1":
                y = F.max_pool2d(y, 2, 2)
                if layer != "pool1":
                    y = F.conv2d(y, self.w2, self.b2, padding=1)
        if self.nan_after is not None and self.calls > self.nan_after:
            y = y * float("nan")
        return y

    def preprocess(self, image):
        a = np.asarray(image, np.float32)
        return mg.tensor((a - 120.0).transpose(2, 0, 1)[None])

    def deprocess(self, x):
        a = mg.backend.asnumpy(mg.backend.unwrap(x))
        a = a[0] if a.ndim == 4 else a
        return np.clip(np.rint(a.transpose(1, 2, 0) + 120), 0, 255).astype(np.uint8)

    def receptive_field(self, layer):
        return {"conv1": (3, 1), "relu1": (3, 1), "pool1": (4, 2), "conv2": (8, 8)}[layer]

    def to(self, device):
        for name in ("w1", "b1", "w2", "b2"):
            setattr(self, name, getattr(self, name).to(device))
        self.device = device
        return self


def smooth_image(h=32, w=32):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 90 * np.sin(xx / 5), 128 + 90 * np.cos(yy / 7),
                    128 + 50 * np.sin((xx + yy) / 9)], -1)
    return img.astype(np.uint8)


@pytest.fixture
def net():
    return TinyNet()


@pytest.fixture(scope="module")
def image():
    return smooth_image()


# --- presets -------------------------------------------------------------------------------
def test_cvpr15_constants_and_schedules():
    caffenet = models.get("caffenet", weights=None)
    opts = resolve_options(caffenet, "conv3")
    assert (opts["alpha"], opts["lambda_alpha"], opts["beta"]) == (6.0, 8e-10, 2.0)
    s = schedule_for(opts, (227, 227))
    assert len(s) == 400 and s(0) == 0.004 and s(100) == pytest.approx(4e-4)
    assert s(300) == pytest.approx(4e-5) and s.changes_at(100) and s.changes_at(300)
    assert not s.changes_at(101)
    hog = models.get("hog")
    assert len(schedule_for(resolve_options(hog, "hog"), (64, 64))) == 800
    assert resolve_options(hog, "hog")["lambda_tv"] == 1.0
    w = resolve_options(caffenet, "conv5", window=5)
    sw = schedule_for(w, (227, 227))
    assert len(sw) == 600 and sw(0) == pytest.approx(4e-4) and sw(599) == pytest.approx(4e-6)
    # iters stretches the schedule but keeps its shape
    short = schedule_for(resolve_options(caffenet, "conv1", iters=40), (227, 227))
    assert [n for _, n in short.segments] == [10, 20, 10]


def test_sigma_is_the_papers_for_caffenet(image):
    rep = models.get("caffenet", weights=None)
    img = np.full((227, 227, 3), 100, np.uint8)
    r = invert(rep, img, "conv1", iters=1)
    assert r.options["sigma"] == pytest.approx(SIGMA_CAFFENET, rel=1e-9)
    hog = models.get("hog")
    r = invert(hog, smooth_image(40, 48), iters=1)
    assert r.options["sigma"] == pytest.approx(SIGMA_CAFFENET / math.sqrt(3 * 227 * 227)
                                               * math.sqrt(40 * 48), rel=1e-9)


@pytest.mark.parametrize("name", ["caffenet", "caffe-alexnet", "alexnet"])
def test_lambda_tv_groups_and_jitter_match_the_paper(name):
    rep = models.get(name, weights=None)
    paper = {"conv1": 1, "relu1": 1, "pool1": 1, "norm1": 1, "conv2": 1, "relu2": 1,
             "pool2": 10, "norm2": 10, "conv3": 10, "relu3": 10, "conv4": 10, "relu4": 10,
             "conv5": 100, "relu5": 100, "pool5": 100, "fc6": 100, "fc8": 100}
    for layer, lam in paper.items():
        if layer in rep.layers:
            assert lambda_tv_for(rep, layer) == lam, layer
    # IJCV16 (caffe-alexnet order conv-relu-norm-pool): J = 1 for conv1…norm1, 2 up to norm2,
    # 4 up to relu5, 8 for pool5…fc8; the other variants follow J = max(round(stride/4), 1)
    spec = dict.fromkeys(["conv1", "relu1", "norm1"], 1)
    spec.update(dict.fromkeys(["pool1", "conv2", "relu2", "norm2"], 2))
    spec.update(dict.fromkeys(["pool2", "conv3", "relu3", "conv4", "relu4", "conv5", "relu5"], 4))
    spec.update(dict.fromkeys(["pool5", "fc6", "relu6", "fc7", "relu7", "fc8"], 8))
    if name == "caffenet":  # pool before norm: norm1/norm2 come after the stride change
        spec.update({"norm1": 2, "norm2": 4})
    for layer in rep.layers:
        assert jitter_for(rep, layer) == spec[layer], (name, layer)


def test_ijcv16_constants(net, image):
    opts = resolve_options(net, "conv2", "ijcv16")
    assert opts["V"] == pytest.approx(80 / 6.5) and opts["bound"] == 160.0
    assert opts["loss_weight"] == 1.0 and opts["jitter"] == 2
    s = schedule_for(opts, (32, 32))
    eta = 32 * 32 * 0.05 * 80 ** 2 / 6
    assert len(s) == 350 and s(0) == pytest.approx(eta) and s(300) == pytest.approx(eta / 10)
    assert resolve_options(models.get("hog"), "hog", "ijcv16")["loss_weight"] == 100.0


def test_input_scale_maps_pixel_units_to_the_input_space():
    s = input_scale(models.get("alexnet", weights=None), (224, 224)).ravel()
    np.testing.assert_allclose(s, 1 / (255 * np.array([0.229, 0.224, 0.225])), rtol=1e-5)
    np.testing.assert_allclose(input_scale(models.get("caffenet", weights=None),
                                           (227, 227)).ravel(), 1, rtol=1e-6)


def test_unknown_option_and_layer(net, image):
    with pytest.raises(InversionError, match="valid options"):
        invert(net, image, "conv1", lamda_tv=3)
    with pytest.raises(InversionError, match="valid layers: conv1, relu1"):
        invert(net, image, "conv9")
    with pytest.raises(InversionError, match="valid presets"):
        invert(net, image, "conv1", preset="cvpr16")


# --- convergence ---------------------------------------------------------------------------
@pytest.mark.parametrize("preset,limit", [("cvpr15", 0.15), ("ijcv16", 0.7)])
def test_energy_decreases_and_error_is_small_on_a_small_net(net, image, preset, limit):
    r = invert(net, image, "conv2", preset=preset)
    e = r.history["energy"]
    assert r.status == "completed" and len(e) == len(r.history["lr"]) == r.metrics["iterations"]
    assert e[-1] < 0.05 * e[0]
    assert np.mean(e[-10:]) < np.mean(e[:10])
    assert r.metrics["relative_error"] < limit
    assert r.image.shape == image.shape and r.image.dtype == np.uint8
    assert r.metrics["psnr"] > 12
    # the network's weights never receive gradients
    assert all(t.grad is None and not t.requires_grad for t in (net.w1, net.b1, net.w2))


def test_ijcv16_respects_the_pixel_bound(net, image):
    r = invert(net, image, "conv1", preset="ijcv16", iters=60)
    norms = np.sqrt((r.x.astype(np.float64) ** 2).sum(axis=1))
    assert norms.max() <= 160 * (1 + 1e-5)


def test_energy_decreases_and_error_is_small_on_hog():
    hog = models.get("hog")
    img = smooth_image(48, 48)
    r = invert(hog, img)  # the cvpr15 preset: 800 iterations
    assert r.history["energy"][-1] < 0.1 * r.history["energy"][0]
    assert r.metrics["relative_error"] < 0.45
    assert r.image.shape == (48, 48)


# --- options -------------------------------------------------------------------------------
def test_restarts_are_independent_reconstructions_in_one_batch(net, image):
    single = invert(net, image, "relu1", iters=30)
    many = invert(net, image, "relu1", iters=30, restarts=3)
    assert len(many.image) == 3 and many.x.shape == (3, 3, 32, 32)
    assert len(many.metrics["relative_error_per_restart"]) == 3
    assert not np.array_equal(many.x[0], many.x[1])
    # restart 0 starts from the same noise as the single run and follows the same path
    np.testing.assert_allclose(many.x[0], single.x[0], rtol=1e-3, atol=1e-2)
    assert many.metrics["relative_error_per_restart"][0] == pytest.approx(
        single.metrics["relative_error"], rel=1e-3)


def test_window_mask_ignores_the_code_outside_the_window(net, image):
    with mg.no_grad():
        code = net.forward(net.preprocess(image), "conv2").numpy()  # (1, 16, 16, 16)
    m = build_mask(code.shape, window=5)
    assert m.sum() == 16 * 25 and m[0, 0, 5:11, 5:11].sum() == 25
    assert m[0, 0, 4, 4] == 0 and m[0, 0, 10, 10] == 0 and m[0, 0, 9, 9] == 1
    changed = code.copy()
    changed[:, :, :5] += 3.0  # outside the central 5x5 (rows 5..9)
    a = invert(net, code=code, layer="conv2", window=5, iters=20)
    b = invert(net, code=changed, layer="conv2", window=5, iters=20)
    assert np.array_equal(a.x, b.x)
    inside = code.copy()
    inside[:, :, 7, 7] += 3.0
    assert not np.array_equal(a.x, invert(net, code=inside, layer="conv2", window=5,
                                             iters=20).x)
    assert a.options["iters"] == 20 and a.options["schedule"][0][0] == pytest.approx(4e-4)


@pytest.mark.parametrize("channels,keep", [("first-half", slice(0, 8)),
                                           ("second-half", slice(8, 16)),
                                           (slice(2, 5), slice(2, 5)), ("2:5", slice(2, 5))])
def test_channel_masks_select_exactly_those_channels(net, image, channels, keep):
    with mg.no_grad():
        code = net.forward(net.preprocess(image), "conv2").numpy()
    m = build_mask(code.shape, channels=channels)
    expect = np.zeros(16)
    expect[keep] = 1
    np.testing.assert_array_equal(m[0, :, 0, 0], expect)
    other = code.copy()
    other[:, expect == 0] *= -2.0
    a = invert(net, code=code, layer="conv2", channels=channels, iters=15)
    assert np.array_equal(a.x, invert(net, code=other, layer="conv2", channels=channels,
                                          iters=15).x)
    inside = code.copy()
    inside[:, expect == 1] *= -2.0
    assert not np.array_equal(a.x, invert(net, code=inside, layer="conv2", channels=channels,
                                              iters=15).x)


def test_bad_masks(net, image):
    with pytest.raises(InversionError, match="does not fit"):
        invert(net, image, "conv2", window=40)
    with pytest.raises(InversionError, match="first-half"):
        invert(net, image, "conv2", channels="third-half")


def test_code_target_equals_image_target(net, image):
    with mg.no_grad():
        code = net.forward(net.preprocess(image), "pool1")
    a = invert(net, image, "pool1", iters=10)
    b = invert(net, code=code, layer="pool1", iters=10)
    c = invert(net, code=code.numpy()[0], layer="pool1", iters=10)  # without the batch axis
    assert np.array_equal(a.x, b.x) and np.array_equal(a.x, c.x)


def test_determinism_same_seed_bit_identical(net, image):
    a = invert(net, image, "conv2", preset="ijcv16", iters=25, seed=3)
    b = invert(net, image, "conv2", preset="ijcv16", iters=25, seed=3)
    c = invert(net, image, "conv2", preset="ijcv16", iters=25, seed=4)
    assert np.array_equal(a.x, b.x) and a.history == b.history
    assert not np.array_equal(a.x, c.x)


def test_callback_and_early_stop(net, image):
    seen = []
    r = invert(net, image, "conv1", iters=400, tol=1e-3, patience=3,
               callback=lambda step, x, terms: seen.append((step, x.shape, dict(terms))))
    assert r.status == "converged" and "relative energy change" in r.message
    assert len(seen) == r.metrics["iterations"] < 400
    assert seen[0][0] == 0 and seen[0][1] == (1, 3, 32, 32)
    assert set(seen[0][2]) == {"loss", "alpha", "tv", "energy", "lr", "backoffs"}
    # the presets never stop early
    assert invert(net, image, "conv1", iters=50).metrics["iterations"] == 50


def test_nan_stops_and_keeps_the_last_finite_x(image):
    xs = {}
    bad = TinyNet(nan_after=1 + 6)  # 1 call for the target, then NaN from iteration 6 on
    r = invert(bad, image, "conv2", iters=50, safeguard=False,  # the loop without back-offs
               callback=lambda step, x, terms: xs.__setitem__(step, np.array(x)))
    assert r.status == "non-finite"
    assert "iteration 6" in r.message and "iteration 5" in r.message and "loss" in r.message
    assert np.all(np.isfinite(r.x)) and len(r.history["energy"]) == 7
    np.testing.assert_array_equal(r.x, xs[5])  # the iterate whose energy was last finite


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf
def test_divergence_is_caught(net, image):
    r = invert(net, image, "conv1", iters=200, lr=1e6)
    assert r.status == "non-finite" and np.all(np.isfinite(r.x))


def test_interrupt_returns_partial_result(net, image):
    def cb(step, x, terms):
        if step == 4:
            raise KeyboardInterrupt

    r = invert(net, image, "conv1", iters=100, callback=cb, on_interrupt="return")
    assert r.status == "interrupted" and r.metrics["iterations"] == 5
    with pytest.raises(KeyboardInterrupt):
        invert(net, image, "conv1", iters=100, callback=cb)


# --- optimisers ----------------------------------------------------------------------------
def test_momentum_sgd_and_reset(device):
    x, ones = on(device, np.zeros(3)), on(device, np.ones(3))
    opt = MomentumSGD(0.9)
    opt.step(x, ones, 1.0)
    opt.step(x, ones, 1.0)
    np.testing.assert_allclose(host(x), -(1 + 1.9))
    opt.reset()
    opt.step(x, ones, 0.1)
    np.testing.assert_allclose(host(x), -(2.9 + 0.1))


def test_adagrad_momentum_rule(device):
    g = np.array([2.0, -1.0])
    x, g_dev = on(device, np.zeros(2)), on(device, g)
    opt = AdaGradMomentum()
    opt.step(x, g_dev, lr=10.0)
    G = g * g
    v1 = -g / (0.1 + np.sqrt(G))
    np.testing.assert_allclose(host(x), [-2 / 2.1, 1 / 1.1])
    opt.step(x, g_dev, lr=10.0)
    G = 0.9 * G + g * g
    v2 = 0.9 * v1 - g / (0.1 + np.sqrt(G))
    np.testing.assert_allclose(host(x), v1 + v2)
    opt.reset()
    assert np.all(host(opt.v) == 0) and np.allclose(host(opt.G), G, rtol=1e-15)


def test_projection_and_schedule(device):
    x = np.zeros((1, 3, 1, 2))
    x[0, :, 0, 0] = [300.0, 400.0, 0.0]
    x[0, :, 0, 1] = [1.0, 2.0, 2.0]
    x = on(device, x)
    project_pixel_norm(x, 160.0)
    np.testing.assert_allclose(host(x)[0, :, 0, 0], [96, 128, 0])
    np.testing.assert_allclose(host(x)[0, :, 0, 1], [1, 2, 2])
    s = PiecewiseSchedule([(1.0, 2), (0.5, 1)])
    assert [s(i) for i in range(4)] == [1.0, 1.0, 0.5, 0.5] and s.segment_index(2) == 1


# --- the cuda device (real CuPy, or the stand-in without a GPU) -------------------------------
CUDA_CASES = [
    ("conv2", dict(preset="cvpr15", iters=12)),
    ("relu1", dict(preset="ijcv16", iters=12)),
    ("pool1", dict(iters=8, restarts=2)),
    ("conv2", dict(iters=8, window=5, jitter=3)),
    ("conv2", dict(preset="ijcv16", iters=8, channels="first-half")),
]


def host(a):
    return mg.backend.asnumpy(a)


def _same_result(cpu, gpu):
    assert_same_on_devices(cpu.x, gpu.x, "x")
    cpu_images = cpu.image if isinstance(cpu.image, list) else [cpu.image]
    gpu_images = gpu.image if isinstance(gpu.image, list) else [gpu.image]
    for a, b in zip(cpu_images, gpu_images):
        assert_same_on_devices(a, b, "image")
    for term in ("loss", "alpha", "tv", "energy"):
        assert_same_on_devices(np.array(cpu.history[term]), np.array(gpu.history[term]), term)
    assert cpu.status == gpu.status == "completed"


@pytest.mark.parametrize("layer,opts", CUDA_CASES, ids=lambda v: str(v))
def test_invert_on_cuda_matches_cpu(layer, opts, image, cuda):
    cpu = invert(TinyNet(), image, layer, **opts)
    net = TinyNet()
    gpu = invert(net, image, layer, device=cuda, **opts)
    assert net.w1.device == cuda and gpu.options["device"] == cuda
    assert cpu.options["device"] == "cpu"
    _same_result(cpu, gpu)


@pytest.mark.parametrize("name", ["hog", "hogb", "dsift"])
def test_feature_inversion_on_cuda_matches_cpu(name, cuda):
    img = smooth_image(40, 40)
    cpu = invert(models.get(name), img, iters=10)
    rep = models.get(name).to(cuda)  # moved by the caller, as the CLI does: still recorded
    gpu = invert(rep, img, iters=10)
    assert gpu.options["device"] == cuda
    _same_result(cpu, gpu)


def test_metrics_take_device_arrays_on_cuda(cuda):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((1, 3, 4, 4))
    mask = (rng.random((1, 3, 4, 4)) > 0.5).astype(np.float32)
    on = mg.backend.to_device
    for fn, args in [(M.relative_error, (a, b)), (M.rmse, (a[:1], b)), (M.psnr, (a[:1], b))]:
        assert fn(*[on(v, cuda) for v in args]) == fn(*args)
    b_tensor = mg.tensor(b, dtype=None, device=cuda)
    assert M.relative_error(on(a, cuda), b_tensor, mask=on(mask, cuda)) == \
        M.relative_error(a, b, mask=mask)
    codes = rng.standard_normal((4, 10))
    assert M.pairwise_normaliser(on(codes, cuda)) == M.pairwise_normaliser(codes)
