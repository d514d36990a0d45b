"""HOG / HOGb (models/hog.py) against VLFeat 0.9.21's own outputs, known answers, gradients.

VLFeat conventions reproduced (vl_hog, UoCTTI variant, numOrientations = 9):

* **Gradient filter**: central differences I(x+1) − I(x−1) and I(y+1) − I(y−1), *without* the
  1/2 factor, computed only for pixels 1..W−2 × 1..H−2; the one-pixel image border casts no
  votes (our 3×3 conv has no padding). Colour: per pixel the channel with the largest
  gx² + gy², the first channel on ties (strictly larger wins).
* **Orientations**: directed bin j (0..17) is centred at jπ/9, angles clockwise from +x with
  y pointing down. Hard: the nearest bin (VLFeat's largest |score| among the 9 undirected
  directions, + 9 for a negative score; near ties are decided with VLFeat's float32 scores,
  a vertical gradient gx = 0 goes to bin 4 / 13). Bilinear (HOGb): weight 1 − d/(π/9) to the
  two nearest bins, d the angular distance.
* **Spatial splatting**: a pixel x votes into cells floor(hx) and floor(hx) + 1 with
  hx = (x + 0.5)/s − 0.5 and weights 1 − frac, frac (the same along y); votes outside the grid
  are dropped. hogW = (W + s//2)//s, hogH = (H + s//2)//s.
* **Epsilon / normalisation**: per-cell energy = Σ over the 9 undirected bins (h_o + h_{o+9})²;
  block factor 1/sqrt(Σ of the 2×2 cells' energies + 1e-4); at the grid border a missing
  neighbour cell is replaced by the nearest border cell (VLFeat clamps the indices).
  Each of the 27 values is min(0.2, factor·h) averaged as 0.5·Σ over the 4 blocks (up-left,
  up-right, down-left, down-right).
* **Texture features** (channels 27–30): t_q = (1/√18)·Σ_o min(0.2, factor_q·(h_o + h_{o+9}))
  for the four blocks q in the same order.

Border cells: none differ. HOG matches VLFeat everywhere (all rows and columns) to float32
rounding (< 1e-5). HOGb differs everywhere by at most 2e-4 (measured 1.2e-4): VLFeat computes
the bilinear weight as acosf(min(score/|g|, 1)) in float32, whose rounding near 1 (spacing
6e-8 gives up to 3.5e-4 rad) quantises the weight of nearly aligned gradients; our network
uses the exact angle. ``test_hogb_difference_is_vlfeat_acos_arithmetic`` proves this by
feeding VLFeat-arithmetic votes through our pooling and normalisation: they then agree to
float32 rounding. The reference files hold HOGb at cell 8 only.
"""
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_on_devices

import minigrad as mg
import models
from minigrad import F
from models.features_common import gradient_bank, half_gradient_bank
from models.features_ops import (
    CentralDifferences,
    OrientationBinning,
    StridedFilterBank1d,
    UocttiNormalize,
    _block_products,
    _padded_blocks,
    angle,
)
from models.hog import HOG, hog_size, render_hog, tent_filter

REF = Path(__file__).resolve().parent / "data" / "vlfeat"  # VLFeat's own outputs, see README
IMAGES = ["astronaut_grey_256x256", "chelsea_grey_203x301", "coffee_rgb_160x240"]


def load(name):
    if not (REF / f"{name}.npz").exists():
        pytest.skip(f"VLFeat reference {name}.npz not found under {REF}")
    return np.load(REF / f"{name}.npz", allow_pickle=False)


def network_input(image):
    """VLFeat saw 0..255 values; the network's input space is 255·gray − 128 (same gradients)."""
    x = image[None, None] if image.ndim == 2 else image[None]
    return mg.tensor(x - 128.0)


def features(net, x):
    with mg.no_grad():
        return net(x if isinstance(x, mg.Tensor) else mg.tensor(x), "hog").numpy()


# --- VLFeat references -------------------------------------------------------------------------
@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("cell", [8, 4])
def test_hog_matches_vlfeat_everywhere(name, cell):
    ref = load(name)
    expected = ref[f"hog_uoctti_cell{cell}"]
    net = models.get("hog", cell_size=cell)
    ours = net.to_vlfeat(net(network_input(ref["image"]), "hog"))
    H, W = ref["image"].shape[-2:]
    assert ours.shape == expected.shape == (31,) + hog_size(H, W, cell)
    # every cell, border rows and columns included: no border difference
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", IMAGES)
def test_hogb_matches_vlfeat_to_its_acos_rounding(name):
    ref = load(name)
    net = models.get("hogb")
    ours = net.to_vlfeat(net(network_input(ref["image"]), "hog"))
    diff = np.abs(ours - ref["hogb_uoctti_cell8"])
    assert diff.max() <= 2e-4  # everywhere, borders included (documented above)
    assert np.median(diff) <= 1e-6  # most cells agree to float32 rounding


def vlfeat_arithmetic_votes(image):
    """HOGb votes (18, H-2, W-2) computed with VLFeat's float32 arithmetic: scores g·u_k with
    float32 unit vectors, the best |score|, weight acosf(min(|score|/|g|, 1))/(π/9)."""
    img = image.astype(np.float32)
    img = img[None] if img.ndim == 2 else img
    gx = img[:, 1:-1, 2:] - img[:, 1:-1, :-2]
    gy = img[:, 2:, 1:-1] - img[:, :-2, 1:-1]
    best = (gx * gx + gy * gy).argmax(axis=0)[None]
    gx, gy = np.take_along_axis(gx, best, 0)[0], np.take_along_axis(gy, best, 0)[0]
    g = np.sqrt(gx * gx + gy * gy)
    ux = np.array([math.cos(k * math.pi / 9) for k in range(9)], np.float32)[:, None, None]
    uy = np.array([math.sin(k * math.pi / 9) for k in range(9)], np.float32)[:, None, None]
    scores = gx[None] * ux + gy[None] * uy
    order = np.argsort(-np.abs(scores), axis=0, kind="stable")
    k0, k1 = order[0], order[1]
    s0 = np.take_along_axis(scores, k0[None], 0)[0]
    s1 = np.take_along_axis(scores, k1[None], 0)[0]
    w1 = np.arccos(np.minimum(np.abs(s0) / np.maximum(g, np.float32(1e-10)), 1).astype(
        np.float32)) / np.float32(math.pi / 9)
    votes = np.zeros((18,) + g.shape, np.float32)
    for k, s, w in ((k0, s0, 1 - w1), (k1, s1, w1)):
        np.put_along_axis(votes, (k + 9 * (s < 0))[None], (g * w)[None], axis=0)
    return votes


@pytest.mark.parametrize("name", IMAGES)
def test_hogb_difference_is_vlfeat_acos_arithmetic(name):
    """Our spatial pooling + normalisation on VLFeat-arithmetic votes reproduce VLFeat's HOGb
    to float32 rounding: the whole HOGb residual comes from the orientation weights."""
    ref = load(name)
    votes = mg.tensor(vlfeat_arithmetic_votes(ref["image"])[None])
    H, W = ref["image"].shape[-2:]
    s = 8
    hogH, hogW = hog_size(H, W, s)
    tent = tent_filter(s).astype(np.float32)
    before = s // 2 + 1
    h = StridedFilterBank1d.apply(votes, weight=tent, stride=s, axis=-2,
                                  pad=(before, s * (hogH + 1) - before - (H - 2)))
    h = StridedFilterBank1d.apply(h, weight=tent, stride=s, axis=-1,
                                  pad=(before, s * (hogW + 1) - before - (W - 2)))
    out = UocttiNormalize.apply(h).numpy()[0]
    np.testing.assert_allclose(out, ref["hogb_uoctti_cell8"], atol=2e-6, rtol=0)


def test_cell_counts_and_interface():
    net = models.get("hog")
    assert isinstance(net, HOG) and net.kind == "hog" and net.layers == ("hog",)
    assert net.input_size is None and net.channels == 1
    assert net.output_shape("hog", (203, 301)) == (31, 25, 38)  # VLFeat: (W + s/2)/s
    assert net.output_shape("hog", (256, 256)) == (31, 32, 32)
    assert models.get("hog", cell_size=4).output_shape("hog", (203, 301)) == (31, 51, 75)
    assert models.get("hog", num_orientations=6).dimension == 22
    assert net.receptive_field("hog") == (34, 8)
    assert models.get("hogb").name == "hogb" and models.get("hogb").bilinear
    with pytest.raises(models.UnknownNameError, match="valid layers: hog"):
        net(mg.tensor(np.zeros((1, 1, 16, 16))), "conv1")
    with pytest.raises(ValueError, match="at least"):
        net(mg.tensor(np.zeros((1, 1, 6, 6))), "hog")


def test_preprocess_deprocess():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    net = models.get("hog")
    x = net.preprocess(grey)
    assert x.shape == (1, 1, 9, 11) and x.dtype == np.float32
    np.testing.assert_array_equal(x.numpy()[0, 0], grey.astype(np.float32) - 128)
    np.testing.assert_array_equal(net.deprocess(x), grey)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    gray = rgb @ np.array([0.2125, 0.7154, 0.0721])
    np.testing.assert_allclose(net.preprocess(rgb).numpy()[0, 0], gray - 128, atol=1e-4)
    colour = models.get("hog", color=True)
    assert colour.channels == 3
    xc = colour.preprocess(rgb)
    assert xc.shape == (1, 3, 9, 11)
    np.testing.assert_array_equal(colour.deprocess(xc), rgb)


# --- known answers -------------------------------------------------------------------------------
def step_edge(n=32, dark_to_bright=True):
    img = np.full((n, n), -60.0)
    img[:, n // 2:] = 60.0
    return img if dark_to_bright else -img


@pytest.mark.parametrize("name", ["hog", "hogb"])
@pytest.mark.parametrize("bright_right, expected_bin", [(True, 0), (False, 9)])
def test_vertical_step_edge_is_horizontal_gradient(name, bright_right, expected_bin):
    f = features(models.get(name), step_edge(32, bright_right)[None, None])[0]
    directed = f[:18]
    assert directed[expected_bin].max() > 0.1
    others = np.delete(directed, expected_bin, axis=0)
    assert np.abs(others).max() == 0  # gy = 0 exactly: only the horizontal bin
    assert f[18].max() > 0.1  # undirected bin 0 (both directions fold into it)
    assert np.abs(f[19:27]).max() == 0
    edge_cols = np.nonzero(directed[expected_bin].max(axis=0))[0]
    assert set(edge_cols) <= {1, 2}  # the cells whose tents cover columns 15..16


def smooth_image(n, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = 80 * np.sin(7 * xx + 3 * yy ** 2 + rng.uniform()) + 50 * np.cos(9 * yy - 4 * xx)
    return img + 5 * rng.standard_normal((n, n))


def texture_permutation_rot90():
    # np.rot90 (counter-clockwise) maps the up-left block to down-left, up-right to up-left,
    # down-left to down-right, down-right to up-right: new[q] = old[perm[q]]
    return [1, 3, 0, 2]


def test_rotation_by_90_degrees_permutes_bins():
    """With 4 orientations (8 directed bins of 45°), rotating the image by 90°
    counter-clockwise (np.rot90) turns a gradient at angle θ into one at θ − 90°: directed bin
    j -> j − 2, undirected k -> k − 2 (mod 4), the cell grid rotates the same way, and the
    texture blocks permute."""
    img = smooth_image(48, 0)
    net = models.get("hogb", cell_size=8, num_orientations=4)
    f = features(net, img[None, None])[0]
    g = features(net, np.rot90(img).copy()[None, None])[0]
    rot = np.rot90(f, axes=(1, 2))
    for j in range(8):
        np.testing.assert_allclose(g[(j - 2) % 8], rot[j], atol=1e-5)
    for k in range(4):
        np.testing.assert_allclose(g[8 + (k - 2) % 4], rot[8 + k], atol=1e-5)
    for q, src in enumerate(texture_permutation_rot90()):
        np.testing.assert_allclose(g[12 + q], rot[12 + src], atol=1e-5)


@pytest.mark.parametrize("name", ["hog", "hogb"])
def test_rotation_by_180_degrees_permutes_bins(name):
    """9 orientations: 180° maps directed bin j to j + 9, keeps the undirected bins, flips the
    cell grid, and reverses the order of the texture blocks."""
    img = smooth_image(48, 1)
    net = models.get(name)
    f = features(net, img[None, None])[0]
    g = features(net, img[::-1, ::-1].copy()[None, None])[0]
    rot = f[:, ::-1, ::-1]
    np.testing.assert_allclose(g[:18], np.roll(rot[:18], 9, axis=0), atol=1e-5)
    np.testing.assert_allclose(g[18:27], rot[18:27], atol=1e-5)
    np.testing.assert_allclose(g[27:31], rot[27:31][::-1], atol=1e-5)


@pytest.mark.parametrize("name", ["hog", "hogb"])
def test_constant_image_gives_zero(name):
    f = features(models.get(name), np.full((1, 1, 40, 40), 37.0))
    assert f.shape == (1, 31, 5, 5) and np.abs(f).max() == 0


@pytest.mark.parametrize("name", ["hog", "hogb"])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_contrast_scaling_invariance(name, scale):
    """Normalisation cancels a global contrast change (only the 1e-4 under the root breaks it,
    negligible for real gradients); the 0.2 clamp acts after it, so clamped values agree too."""
    img = smooth_image(40, 2)
    net = models.get(name)
    f = features(net, img[None, None])
    g = features(net, scale * img[None, None])
    assert (f[:, :27] >= 0.2 - 1e-6).any()  # some values sit at the clamp
    np.testing.assert_allclose(g, f, atol=1e-5)


def test_colour_uses_strongest_channel():
    img = smooth_image(32, 3)
    colour = np.stack([0.2 * img, img, -0.9 * img])  # green has the largest gradient everywhere
    f_colour = features(models.get("hog", color=True), colour[None])
    f_green = features(models.get("hog"), img[None, None])
    np.testing.assert_allclose(f_colour, f_green, atol=1e-6)


# --- gradients -----------------------------------------------------------------------------------
def test_hogb_end_to_end_gradcheck():
    img = smooth_image(20, 4)[None, None] / 10
    net = models.get("hogb", cell_size=4)
    mg.gradcheck(lambda x: net(x, "hog"), img, max_elements=120)


def test_hog_end_to_end_gradcheck():
    """Hard assignment: the gradient flows through the magnitude only (piecewise exact)."""
    img = smooth_image(20, 5)[None, None] / 10
    net = models.get("hog", cell_size=4)
    mg.gradcheck(lambda x: net(x, "hog"), img, max_elements=120)


def test_colour_hogb_gradcheck():
    rng = np.random.default_rng(6)
    img = np.stack([smooth_image(16, 6), 0.7 * smooth_image(16, 7),
                    rng.standard_normal((16, 16))])[None] / 10
    net = models.get("hogb", cell_size=4, color=True)
    mg.gradcheck(lambda x: net(x, "hog"), img, max_elements=100)


def off_axis_gradient(rng, shape):
    """Gradients with magnitudes in [1, 3] and angles at least 0.05 bin from a bin edge or a
    tie (so neither floor(p) nor round(p) changes under a 1e-6 perturbation)."""
    n = rng.uniform(1, 3, shape)
    p = rng.integers(0, 18, shape) + rng.uniform(0.05, 0.45, shape) + 0.5 * rng.integers(0, 2,
                                                                                          shape)
    theta = p * (2 * math.pi / 18)
    return n * np.cos(theta), n * np.sin(theta)


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("fast_atan", [False, True])
def test_orientation_binning_gradcheck(rng, bilinear, fast_atan):
    gx, gy = off_axis_gradient(rng, (2, 1, 5, 6))
    mg.gradcheck(lambda a, b: OrientationBinning.apply(a, b, num_bins=18, bilinear=bilinear,
                                                       fast_atan=fast_atan), gx, gy)


def test_orientation_binning_values():
    gx = np.array([1.0, 0.0, -2.0, 0.0, np.cos(0.1)])[None, None, None]
    gy = np.array([0.0, 3.0, 0.0, -1.0, np.sin(0.1)])[None, None, None]
    hard = OrientationBinning.apply(mg.tensor(gx), mg.tensor(gy), num_bins=18,
                                    bilinear=False).numpy()[0, :, 0]
    assert hard[0, 0] == 1 and hard[4, 1] == 3 and hard[9, 2] == 2 and hard[13, 3] == 1
    assert hard[0, 4] == pytest.approx(1)  # 0.1 rad < 10°: nearest bin 0
    soft = OrientationBinning.apply(mg.tensor(gx), mg.tensor(gy), num_bins=18,
                                    bilinear=True).numpy()[0, :, 0]
    np.testing.assert_allclose(soft[4:6, 1], [1.5, 1.5], atol=1e-6)  # 90° between 80° and 100°
    f = 0.1 / (math.pi / 9)
    np.testing.assert_allclose(soft[0:2, 4], [1 - f, f], atol=1e-6)
    np.testing.assert_allclose(soft.sum(axis=0), [1, 3, 2, 1, 1], atol=1e-6)


def composed_filter_bank(x, weight, stride, pad, axis, mode):
    """Oracle: the same filtering with F.pad/concat + a depthwise F.conv2d."""
    O, K = weight.shape
    C = x.shape[1]
    if axis == -1:
        x = x.permute(0, 1, 3, 2)
    before, after = pad
    if mode == "edge":
        parts = [x[:, :, 0:1]] * before + [x] + [x[:, :, -1:]] * max(after, 0)
        x = F.concat(parts, dim=2)
    else:
        x = F.pad(x, (0, 0, before, max(after, 0)))
    if after < 0:
        x = x[:, :, :x.shape[2] + after]
    w = np.tile(weight[:, None, :, None], (C, 1, 1, 1))  # (C·O, 1, K, 1)
    y = F.conv2d(x, mg.tensor(w, dtype=None), stride=(stride, 1), groups=C)
    return y.permute(0, 1, 3, 2) if axis == -1 else y


@pytest.mark.parametrize("axis", [-2, -1])
@pytest.mark.parametrize("mode", ["zero", "edge"])
@pytest.mark.parametrize("stride, pad, taps", [(4, (3, 5), (2, 8)), (3, (2, -1), (3, 11)),
                                               (5, (4, 4), (4, 24))])
def test_strided_filter_bank_matches_conv_and_gradchecks(rng, axis, mode, stride, pad, taps):
    O, K = taps
    weight = rng.uniform(0.1, 1, (O, K))
    if O == 4:  # DSIFT-like: filter o lives at offset o·stride (leading zero blocks skipped)
        weight[:, :] = 0
        for o in range(4):
            weight[o, o * stride:o * stride + 2 * stride - 1] = rng.uniform(0.1, 1, 2 * stride - 1)
    x = rng.standard_normal((2, 3, 23, 21))
    ours = StridedFilterBank1d.apply(mg.tensor(x, dtype=None), weight=weight, stride=stride,
                                     pad=pad, mode=mode, axis=axis)
    oracle = composed_filter_bank(mg.tensor(x, dtype=None), weight, stride, pad, axis, mode)
    np.testing.assert_allclose(ours.numpy(), oracle.numpy(), atol=1e-10)
    v = rng.standard_normal(ours.shape)
    xa = mg.tensor(x, requires_grad=True, dtype=None)
    (StridedFilterBank1d.apply(xa, weight=weight, stride=stride, pad=pad, mode=mode,
                               axis=axis) * v).sum().backward()
    xb = mg.tensor(x, requires_grad=True, dtype=None)
    (composed_filter_bank(xb, weight, stride, pad, axis, mode) * v).sum().backward()
    np.testing.assert_allclose(xa.grad, xb.grad, atol=1e-10)
    mg.gradcheck(lambda t: StridedFilterBank1d.apply(t, weight=weight, stride=stride, pad=pad,
                                                     mode=mode, axis=axis), x[:1, :2],
                 max_elements=150)


def composed_uoctti(h, clamp=0.2):
    """Oracle: UoCTTI normalisation from minigrad.functional ops."""
    O = h.shape[1] // 2
    Hc, Wc = h.shape[2:]
    u = h[:, :O] + h[:, O:]
    hu = F.concat([h, u], dim=1)
    c = F.sum(u * u, axis=1, keepdims=True)
    c = F.concat([c[:, :, :, 0:1], c, c[:, :, :, -1:]], dim=3)
    c = F.concat([c[:, :, 0:1], c, c[:, :, -1:]], dim=2)
    energy = c[:, :, :-1, :-1] + c[:, :, 1:, :-1] + c[:, :, :-1, 1:] + c[:, :, 1:, 1:]
    f = 1 / F.sqrt(energy + 1e-4)
    total, tex = 0, []
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        v = F.minimum(f[:, :, dy:dy + Hc, dx:dx + Wc] * hu, clamp)
        total = total + v
        tex.append(F.sum(v[:, 2 * O:], axis=1, keepdims=True) * (1 / math.sqrt(18)))
    return F.concat([total * 0.5] + tex, dim=1)


def block_values(h):
    """The 4·27 normalised values per cell before the clamp (numpy)."""
    O = h.shape[1] // 2
    u = h[:, :O] + h[:, O:]
    c = np.pad((u * u).sum(1, keepdims=True), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    e = c[:, :, :-1, :-1] + c[:, :, 1:, :-1] + c[:, :, :-1, 1:] + c[:, :, 1:, 1:]
    f = 1 / np.sqrt(e + 1e-4)
    Hc, Wc = h.shape[2:]
    hu = np.concatenate([h, u], 1)
    return np.stack([f[:, :, dy:dy + Hc, dx:dx + Wc] * hu
                     for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))])


def clamp_in_a_gap(values, quantile=0.8):
    """A clamp level near the given quantile of the values, in the middle of a gap between
    two neighbouring values, so no value is within the finite-difference reach of the kink."""
    v = np.sort(values.ravel())
    i = int(quantile * v.size)
    gaps = np.diff(v[i - 50:i + 50])
    j = i - 50 + int(gaps.argmax())
    assert gaps.max() > 1e-4
    return float(0.5 * (v[j] + v[j + 1]))


def test_uoctti_normalize_matches_composition_and_gradchecks():
    rng = np.random.default_rng(7)
    h = rng.uniform(0.0, 1.0, (2, 18, 4, 5)) ** 3
    clamp = clamp_in_a_gap(block_values(h))
    ours = UocttiNormalize.apply(mg.tensor(h, dtype=None), clamp=clamp)
    oracle = composed_uoctti(mg.tensor(h, dtype=None), clamp)
    np.testing.assert_allclose(ours.numpy(), oracle.numpy(), atol=1e-12)
    v = rng.standard_normal(ours.shape)
    ha = mg.tensor(h, requires_grad=True, dtype=None)
    (UocttiNormalize.apply(ha, clamp=clamp) * v).sum().backward()
    hb = mg.tensor(h, requires_grad=True, dtype=None)
    (composed_uoctti(hb, clamp) * v).sum().backward()
    np.testing.assert_allclose(ha.grad, hb.grad, atol=1e-10)
    mg.gradcheck(lambda t: UocttiNormalize.apply(t, clamp=clamp), h, max_elements=200)
    # the default 0.2 clamp, on the same values, equals the composition too
    np.testing.assert_allclose(UocttiNormalize.apply(mg.tensor(h, dtype=None)).numpy(),
                               composed_uoctti(mg.tensor(h, dtype=None)).numpy(), atol=1e-12)


# --- rendering ---------------------------------------------------------------------------------
def test_render_draws_edge_oriented_glyphs():
    net = models.get("hog")
    f = features(net, step_edge(32)[None, None])
    img = net.render(f)
    assert img.dtype == np.uint8 and img.shape == (4 * 21, 4 * 21)
    cell = img[21:42, 21:42].astype(float)  # row 1, column 1: on the edge
    assert cell.max() == 255
    # horizontal gradient -> a vertical bar (the edge direction) through the cell centre
    assert cell[:, 10].mean() > 200 and cell[10, :].mean() < cell[:, 10].mean() / 3
    assert render_hog(np.zeros((31, 2, 3))).max() == 0


@pytest.mark.parametrize("name", ["hog", "hogb"])
def test_forward_and_input_gradient_match_torch(name):
    torch = pytest.importorskip("torch")
    from benchmarks.torch_features import TorchHOG

    img = smooth_image(45, 8)[None, None]
    v = np.random.default_rng(9).standard_normal((1, 31, 6, 6))
    x = mg.tensor(img, requires_grad=True, dtype=None)
    out = models.get(name)(x, "hog")
    (out * v).sum().backward()
    xt = torch.tensor(img, requires_grad=True)
    out_t = TorchHOG(bilinear=name == "hogb", dtype=torch.float64)(xt)
    (out_t * torch.from_numpy(v)).sum().backward()
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), atol=1e-10)


# --- the cuda device (real CuPy, or the stand-in without a GPU) -------------------------------
@pytest.mark.parametrize("name, image, cell", [("hog", IMAGES[0], 8), ("hogb", IMAGES[1], 4),
                                               ("hog", IMAGES[2], 8), ("hogb", IMAGES[2], 8)])
def test_forward_and_input_gradient_on_cuda_match_cpu(name, image, cell, cuda):
    """VLFeat's images (grey and colour; near-tie pixels included): the same features and
    input gradient on both devices."""
    x_host = network_input(load(image)["image"]).numpy()
    colour = x_host.shape[1] == 3
    out = {}
    for device in ("cpu", cuda):
        net = models.get(name, cell_size=cell, color=colour, device=device)
        x = mg.Tensor(mg.backend.to_device(x_host, device), requires_grad=True)
        y = net(x, "hog")
        r = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
        (y * mg.tensor(r, device=device)).sum().backward()
        assert y.device == device and mg.backend.device_of(x.grad) == device
        out[device] = (y, x.grad)
    assert_same_on_devices(out["cpu"][0], out[cuda][0], f"{name} features")
    assert_same_on_devices(out["cpu"][1], out[cuda][1], f"{name} input gradient")


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.filterwarnings("ignore:invalid value")
def test_non_finite_gradient_votes_nan_into_bin_0(bilinear, device):
    """A NaN angle has no integer bin (casting it is undefined): the pixel's NaN magnitude goes
    to bin 0, every other pixel votes as before, and HOG runs (its clamp at 0.2 then caps the
    NaN cells)."""
    rng = np.random.default_rng(0)
    gx, gy = rng.standard_normal((2, 1, 1, 6, 7)).astype(np.float32)
    on = mg.backend.to_device

    def votes(gx, gy):
        return OrientationBinning.apply(on(gx, device), on(gy, device), num_bins=18,
                                        bilinear=bilinear).numpy()
    clean = votes(gx, gy)
    gx[0, 0, 2, 3] = np.nan
    gy[0, 0, 4, 5] = np.inf
    bad = votes(gx, gy)
    assert np.isnan(bad[0, 0, 2, 3]) and (bad[0, 2:-1, 2, 3] == 0).all()
    assert not np.isfinite(bad[0, :, 4, 5]).all()  # an infinite gradient has a finite angle
    keep = np.ones((6, 7), bool)
    keep[2, 3] = keep[4, 5] = False
    np.testing.assert_array_equal(bad[..., keep], clean[..., keep])
    img = rng.uniform(-100, 100, (1, 1, 32, 32)).astype(np.float32)
    img[0, 0, 20, 20] = np.nan
    f = features(models.get("hogb" if bilinear else "hog", device=device), on(img, device))
    assert f.shape == (1, 31, 4, 4)


@pytest.mark.parametrize("channels, scale", [(1, 1.0), (3, 1.0), (1, 0.5)],
                         ids=["hog-grey", "hog-colour", "dsift"])
def test_central_differences_are_the_gradient_conv_to_the_bit(channels, scale, rng):
    """HOG's and DSIFT's [-1, 0, 1] filters as slice differences: the float32 values of the
    grouped 3×3 conv they replaced, exactly; the input gradient is torch's in float64."""
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((2, channels, 17, 23)) * 100).astype(np.float32)
    bank = gradient_bank(channels) if scale == 1 else half_gradient_bank()
    ours = CentralDifferences.apply(mg.tensor(x), scale=scale).numpy()
    conv = F.conv2d(mg.tensor(x), mg.tensor(bank.astype(np.float32)), groups=channels,
                    algorithm="im2col").numpy()
    assert ours.dtype == np.float32 and np.array_equal(ours, conv)
    x64 = x.astype(np.float64)
    g = rng.standard_normal(ours.shape)
    xt = mg.Tensor(x64, requires_grad=True)
    CentralDifferences.apply(xt, scale=scale).backward(g)
    x_th = torch.tensor(x64, requires_grad=True)
    torch.nn.functional.conv2d(x_th, torch.tensor(bank), groups=channels).backward(
        torch.tensor(g))
    np.testing.assert_allclose(xt.grad, x_th.grad.numpy(), rtol=1e-12, atol=1e-12)
    mg.gradcheck(lambda t: CentralDifferences.apply(t, scale=scale), x64[:1, :1, :6, :7])
    with pytest.raises(ValueError, match="at least 3x3 pixels, got 2x5"):
        CentralDifferences.apply(mg.tensor(x[:, :, :2, :5]))


def test_angle_is_atan2_in_0_2pi_signed_zeros_included(rng):
    gx = (rng.standard_normal(20000) * 50).astype(np.float32)
    gy = (rng.standard_normal(20000) * 50).astype(np.float32)
    gx[:6] = [0.0, -0.0, 0.0, -0.0, 3.0, -3.0]
    gy[:6] = [2.0, 2.0, -2.0, -2.0, -0.0, -0.0]
    ref = np.mod(np.arctan2(gy.astype(np.float64), gx.astype(np.float64)), 2 * np.pi)
    ours = angle(gx, gy)
    assert ours.dtype == np.float32 and ours.min() >= 0 and ours.max() <= np.float32(2 * np.pi)
    diff = np.abs(ours - ref)
    diff = np.minimum(diff, 2 * np.pi - diff)  # 2π and 0 are the same direction
    assert diff.max() < 1e-6
    np.testing.assert_allclose(ours[:4], [np.pi / 2, np.pi / 2, 3 * np.pi / 2, 3 * np.pi / 2],
                               rtol=1e-7)
    with np.errstate(all="raise"):  # 0/0 and x/0 are meant: no warning, no error
        zero = angle(np.float32([0.0]), np.float32([0.0]))
    assert np.isnan(zero[0])  # OrientationBinning sends it to bin 0 (its magnitude is 0)


@pytest.mark.parametrize("mode", ["zero", "edge"])
def test_blocks_read_in_place_equal_the_padded_copy(mode, rng):
    """StridedFilterBank1d reads the blocks inside x as a view and pads only the first and last:
    the same products as padding the whole signal, for every padding, crop and length."""
    wt = rng.standard_normal((3, 4))
    for L in (5, 8, 9, 13, 16, 23):
        x = rng.standard_normal((2, 3, L, 5))
        for before in range(0, 9):
            for after in range(-3, 9):
                for extra in (0, 1, 2):
                    nb = max((L + before + after) // 4 + extra - 1, 1)
                    whole = wt @ _padded_blocks(x, before, after, nb, 4, mode)
                    ours = _block_products(wt, x, before, after, nb, 4, mode)
                    assert np.array_equal(ours, whole), (L, before, after, nb)
