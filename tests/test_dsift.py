"""Dense SIFT (models/dsift.py) against VLFeat 0.9.21's vl_dsift, known answers, gradients.

VLFeat conventions reproduced (vl_dsift_new_basic(W, H, step, binSize): 4×4 bins, 8
orientations, Gaussian window with windowSize 2, bounds = the whole image, no smoothing):

* **Gradient filter**: (I(x+1) − I(x−1))/2 inside; forward/backward one-sided differences
  I(1) − I(0) and I(L−1) − I(L−2) on the first/last column and row (the network pads the image
  by linear extrapolation, so its central difference equals them).
* **Angle**: VLFeat's ``vl_fast_atan2_f`` cubic approximation (max error 0.0061 rad), then
  mod 2π; bilinear between bins t = floor(8θ/2π) and t + 1. ``fast_atan=False`` (exact atan2)
  differs from VLFeat by up to ~0.01 per element (asserted below).
* **Magnitude**: exact sqrt (VLFeat's fast sqrt, two Newton steps, is accurate to ~5e-6
  relative; the descriptors agree to < 1e-5).
* **Spatial bins**: bin i (0..3) convolves with (1 − |u|/b)·exp(−(u − b(i − 1.5))²/(2(2b)²))
  (true convolution, so the network's correlation kernel is flipped), padded by continuity
  (edge replicate); bin centres at frame_x + i·b, frame_x = 0, step, ... while
  frame_x + 3b <= W − 1. Frame centre = frame_x + 1.5b.
* **Normalisation, epsilon**: x/(‖x‖ + FLT_EPSILON), clamp at 0.2, x/(‖x‖ + FLT_EPSILON).
* **Frame norm**: VLFeat's ``norm`` = Σ of the unnormalised descriptor / (3b + 1)² (checked
  with ``normalize=False``).
* **Layout**: element t + 8·bx + 32·by; frames x fastest.

Border frames: none differ. Every frame, the first and last rows and columns included,
matches VLFeat to < 1e-5 (measured 2.8e-6).
"""
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_on_devices

import minigrad as mg
import models
from minigrad import F
from models.dsift import DSIFT, num_frames, spatial_bank
from models.features_ops import SiftNormalize

REF = Path(__file__).resolve().parent / "data" / "vlfeat"  # VLFeat's own outputs, see README
IMAGES = ["astronaut_grey_256x256", "chelsea_grey_203x301"]
SETTINGS = [(8, 8), (5, 5), (4, 8)]  # (step, bin)


def load(name):
    if not (REF / f"{name}.npz").exists():
        pytest.skip(f"VLFeat reference {name}.npz not found under {REF}")
    return np.load(REF / f"{name}.npz", allow_pickle=False)


def descriptors(net, image):
    x = image[None, None] if image.ndim == 2 else image
    with mg.no_grad():
        return net(mg.tensor(x), "dsift").numpy()


# --- VLFeat references -------------------------------------------------------------------------
@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("step, b", SETTINGS)
def test_dsift_matches_vlfeat_everywhere(name, step, b):
    ref = load(name)
    image = ref["image"]
    expected = ref[f"dsift_step{step}_bin{b}_descriptors"]
    frames = ref[f"dsift_step{step}_bin{b}_frames_xy_norm"]
    net = models.get("dsift", bin_size=b, step=step)
    out = descriptors(net, image - 128.0)
    H, W = image.shape
    assert out.shape == (1,) + net.output_shape("dsift", (H, W))
    ours = net.to_vlfeat(out)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)  # every frame
    np.testing.assert_array_equal(net.frames(H, W), frames[:, :2])


@pytest.mark.parametrize("step, b", SETTINGS)
def test_frame_norm_is_vlfeat_mass(step, b):
    ref = load("chelsea_grey_203x301")
    net = DSIFT(bin_size=b, step=step, normalize=False)
    raw = net.to_vlfeat(descriptors(net, ref["image"] - 128.0))
    mass = raw.sum(axis=1) / (3 * b + 1) ** 2
    np.testing.assert_allclose(mass, ref[f"dsift_step{step}_bin{b}_frames_xy_norm"][:, 2],
                               rtol=2e-5)


def test_exact_atan_option_differs_from_vlfeat_as_documented():
    ref = load("astronaut_grey_256x256")
    net = DSIFT(bin_size=8, step=8, fast_atan=False)
    diff = np.abs(net.to_vlfeat(descriptors(net, ref["image"])) -
                  ref["dsift_step8_bin8_descriptors"])
    assert 1e-3 < diff.max() < 0.02  # the 0.0061 rad atan approximation, nothing else


def test_geometry_and_interface():
    net = models.get("dsift")
    assert isinstance(net, DSIFT) and net.kind == "dsift" and net.layers == ("dsift",)
    assert (net.bin_size, net.step, net.channels, net.input_size) == (8, 8, 1, None)
    assert net.output_shape("dsift", (256, 256)) == (128, 29, 29)
    assert net.output_shape("dsift", (203, 301)) == (128, 23, 35)
    assert models.get("dsift", bin_size=5).step == 5
    assert num_frames(25, 8, 8) == 1 and num_frames(24, 8, 8) == 0
    frames = models.get("dsift", bin_size=5, step=3).frames(40, 50)
    assert frames.shape == (num_frames(40, 5, 3) * num_frames(50, 5, 3), 2)
    np.testing.assert_array_equal(frames[:3], [[7.5, 7.5], [10.5, 7.5], [13.5, 7.5]])
    assert net.receptive_field("dsift") == (41, 8)
    out = np.arange(128 * 2 * 3, dtype=np.float32).reshape(1, 128, 2, 3)
    vl = net.to_vlfeat(out)
    assert vl.shape == (6, 128) and vl[1, 5] == out[0, 5, 0, 1]  # x fastest
    with pytest.raises(ValueError, match="at least 25"):
        net(mg.tensor(np.zeros((1, 1, 24, 40))), "dsift")
    with pytest.raises(ValueError, match="grey"):
        net(mg.tensor(np.zeros((1, 3, 40, 40))), "dsift")
    grey = np.random.default_rng(0).integers(0, 256, (30, 31), dtype=np.uint8)
    x = net.preprocess(grey)
    np.testing.assert_array_equal(x.numpy()[0, 0], grey - 128.0)
    np.testing.assert_array_equal(net.deprocess(x), grey)


def test_spatial_bank_is_vlfeats_flipped_kernel():
    b = 5
    bank = spatial_bank(b)
    assert bank.shape == (4, 5 * b - 1)
    for i in range(4):
        taps = bank[i, i * b:i * b + 2 * b - 1]
        assert np.count_nonzero(bank[i]) == 2 * b - 1
        u = np.arange(-b + 1, b)
        vlfeat = (1 - np.abs(u) / b) * np.exp(-0.5 * ((u - b * (i - 1.5)) / (2 * b)) ** 2)
        np.testing.assert_allclose(taps, vlfeat[::-1])


# --- known answers -------------------------------------------------------------------------------
def descriptor_grid(net, image):
    """(rows, cols, by, bx, t) view of the descriptors."""
    d = descriptors(net, image)[0]
    return d.reshape(4, 4, 8, *d.shape[1:]).transpose(3, 4, 0, 1, 2)


def test_vertical_step_edge_is_horizontal_gradient():
    img = np.full((33, 41), -50.0)
    img[:, 20:] = 50.0
    g = descriptor_grid(DSIFT(bin_size=4, step=4), img)
    assert g[..., 0].max() > 0.1  # t = 0: gradient pointing right
    # VLFeat's fast atan2 gives −2e-6 rad for angle 0: a leak below 1e-5 into bin 7
    assert np.abs(g[..., 1:7]).max() == 0 and np.abs(g[..., 7]).max() < 1e-5
    g_exact = descriptor_grid(DSIFT(bin_size=4, step=4, fast_atan=False), img)
    assert np.abs(g_exact[..., 1:]).max() == 0
    g_dark = descriptor_grid(DSIFT(bin_size=4, step=4, fast_atan=False), -img)
    assert g_dark[..., 4].max() > 0.1 and np.abs(np.delete(g_dark, 4, axis=-1)).max() == 0


def smooth_image(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = 70 * np.sin(6 * xx + 3 * yy ** 2 + rng.uniform()) + 40 * np.cos(8 * yy - 5 * xx)
    return img + 5 * rng.standard_normal((h, w))


def test_rotation_by_90_degrees_permutes_bins():
    """np.rot90 (counter-clockwise) turns θ into θ − 90° (t -> t − 2), rotates the frame grid
    and the 4×4 spatial bins the same way (exact atan2; the frame grid is symmetric)."""
    b, step = 4, 3
    n = 3 * b + 1 + 6 * step  # (n − 1 − 3b) divisible by the step: a symmetric grid
    img = smooth_image(n, n, 0)
    net = DSIFT(bin_size=b, step=step, fast_atan=False)
    g0 = descriptor_grid(net, img)  # (rows, cols, by, bx, t)
    g1 = descriptor_grid(net, np.rot90(img).copy())
    predicted = np.rot90(np.rot90(g0, axes=(0, 1)), axes=(2, 3))  # frames and spatial bins
    predicted = np.roll(predicted, -2, axis=-1)  # t -> t − 2: new[t − 2] = old[t]
    np.testing.assert_allclose(g1, predicted, atol=1e-5)


def test_constant_image_gives_zero():
    d = descriptors(models.get("dsift", bin_size=4), np.full((1, 1, 30, 30), 11.0))
    assert d.shape == (1, 128, 5, 5) and np.abs(d).max() == 0


@pytest.mark.parametrize("scale", [0.25, 4.0])
def test_contrast_scaling_invariance(scale):
    img = smooth_image(37, 45, 1)
    net = models.get("dsift", bin_size=5, step=4)
    d0, d1 = descriptors(net, img), descriptors(net, scale * img)
    raw = descriptors(DSIFT(bin_size=5, step=4, normalize=False), img)
    assert (raw / np.linalg.norm(raw, axis=1, keepdims=True) > 0.2).any()  # clamped entries
    np.testing.assert_allclose(d1, d0, atol=1e-5)


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fast_atan", [True, False])
@pytest.mark.parametrize("b, step", [(3, 3), (3, 2)])
def test_dsift_end_to_end_gradcheck(fast_atan, b, step):
    img = smooth_image(15, 17, 2)[None, None] / 10
    net = DSIFT(bin_size=b, step=step, fast_atan=fast_atan)
    mg.gradcheck(lambda x: net(x, "dsift"), img, max_elements=100)


def composed_sift_normalize(x, clamp=0.2, renormalize=True):
    eps = 1.1920929e-07
    y = x / (F.sqrt(F.sum(x * x, axis=1, keepdims=True)) + eps)
    y = F.minimum(y, clamp)
    if renormalize:
        y = y / (F.sqrt(F.sum(y * y, axis=1, keepdims=True)) + eps)
    return y


@pytest.mark.parametrize("renormalize", [True, False])
def test_sift_normalize_matches_composition_and_gradchecks(rng, renormalize):
    x = rng.uniform(0, 1, (2, 128, 3, 2)) ** 4
    x[:, :3] += 3  # a few dominant entries per descriptor: above the clamp
    y1 = x / np.linalg.norm(x, axis=1, keepdims=True)
    clamp = 0.2
    assert (y1 > clamp).any() and np.abs(y1 - clamp).min() > 1e-3  # away from the kink
    ours = SiftNormalize.apply(mg.tensor(x, dtype=None), renormalize=renormalize)
    oracle = composed_sift_normalize(mg.tensor(x, dtype=None), clamp, renormalize)
    np.testing.assert_allclose(ours.numpy(), oracle.numpy(), atol=1e-12)
    v = rng.standard_normal(ours.shape)
    xa = mg.tensor(x, requires_grad=True, dtype=None)
    (SiftNormalize.apply(xa, renormalize=renormalize) * v).sum().backward()
    xb = mg.tensor(x, requires_grad=True, dtype=None)
    (composed_sift_normalize(xb, clamp, renormalize) * v).sum().backward()
    np.testing.assert_allclose(xa.grad, xb.grad, atol=1e-10)
    mg.gradcheck(lambda t: SiftNormalize.apply(t, renormalize=renormalize), x,
                 max_elements=200)


def test_sift_normalize_zero_descriptor_has_finite_gradient():
    x = mg.tensor(np.zeros((1, 128, 1, 1)), requires_grad=True, dtype=None)
    SiftNormalize.apply(x).sum().backward()
    assert np.isfinite(x.grad).all()


@pytest.mark.parametrize("b, step", [(4, 4), (3, 2)])
def test_forward_and_input_gradient_match_torch(b, step):
    torch = pytest.importorskip("torch")
    from benchmarks.torch_features import TorchDSIFT

    img = smooth_image(29, 34, 3)[None, None]
    net = DSIFT(bin_size=b, step=step)
    v = np.random.default_rng(4).standard_normal((1,) + net.output_shape("dsift", (29, 34)))
    x = mg.tensor(img, requires_grad=True, dtype=None)
    (net(x, "dsift") * v).sum().backward()
    xt = torch.tensor(img, requires_grad=True)
    out_t = TorchDSIFT(bin_size=b, step=step, dtype=torch.float64)(xt)
    (out_t * torch.from_numpy(v)).sum().backward()
    with mg.no_grad():
        out = net(mg.tensor(img, dtype=None), "dsift").numpy()
    np.testing.assert_allclose(out, out_t.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), atol=1e-9)


# --- the cuda device (real CuPy, or the stand-in without a GPU) -------------------------------
@pytest.mark.parametrize("fast_atan, step, b", [(True, 5, 5), (False, 4, 8)])
def test_forward_and_input_gradient_on_cuda_match_cpu(fast_atan, step, b, cuda):
    image = load(IMAGES[1])["image"]
    x_host = (image[None, None] - 128.0).astype(np.float32)
    out = {}
    for device in ("cpu", cuda):
        net = models.get("dsift", bin_size=b, step=step, fast_atan=fast_atan, device=device)
        x = mg.Tensor(mg.backend.to_device(x_host, device), requires_grad=True)
        y = net(x, "dsift")
        r = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
        (y * mg.tensor(r, device=device)).sum().backward()
        assert y.device == device and mg.backend.device_of(x.grad) == device
        out[device] = (y, x.grad)
    assert_same_on_devices(out["cpu"][0], out[cuda][0], "dsift descriptors")
    assert_same_on_devices(out["cpu"][1], out[cuda][1], "dsift input gradient")
