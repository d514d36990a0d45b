"""Winograd convolution: exact transform matrices, agreement with PyTorch, float32 accuracy on
network-sized layers, the automatic choice and the constant-weight cache."""
from fractions import Fraction

import numpy as np
import pytest
from conftest import normal, on

import minigrad as mg
import minigrad.functional as F
from minigrad import backend
from minigrad.ops import conv_algorithms, winograd

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def exact_winograd_1d(m, r, AT, G, BT):
    """Random integer g (r taps), d (α samples) and y = Aᵀ [(G g) ⊙ (Bᵀ d)], in Fractions."""
    rng = np.random.default_rng(m * 10 + r)
    alpha = m + r - 1
    g = [Fraction(int(v)) for v in rng.integers(-9, 10, r)]
    d = [Fraction(int(v)) for v in rng.integers(-9, 10, alpha)]
    Gg = [sum(G[x][j] * g[j] for j in range(r)) for x in range(alpha)]
    Bd = [sum(BT[x][k] * d[k] for k in range(alpha)) for x in range(alpha)]
    return g, d, [sum(AT[i][x] * Gg[x] * Bd[x] for x in range(alpha)) for i in range(m)]


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (4, 5), (2, 5), (3, 3), (6, 3), (2, 7), (1, 1)])
def test_toom_cook_matrices_compute_correlation_exactly(m, r):
    AT, G, BT = winograd.toom_cook(m, r)
    g, d, y = exact_winograd_1d(m, r, AT, G, BT)
    assert y == [sum(g[j] * d[i + j] for j in range(r)) for i in range(m)]
    assert all(v.denominator == 1 for row in BT for v in row)  # the fractions live in G


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (2, 5), (4, 5), (6, 3), (1, 1)])
def test_reflected_matrices_correlate_with_the_flipped_kernel_exactly(m, r):
    """The input gradient reuses the forward U: Aᵀ' [(G g) ⊙ (Bᵀ' d)] is the correlation of d
    with g reversed, in exact arithmetic."""
    _, G, _ = winograd.toom_cook(m, r)
    AT2, BT2 = winograd.reflected_matrices(m, r)
    g, d, y = exact_winograd_1d(m, r, AT2, G, BT2)
    assert y == [sum(g[r - 1 - j] * d[i + j] for j in range(r)) for i in range(m)]


def test_point_sets_closed_under_reciprocals_have_a_reflection():
    assert winograd.reflection(3, 5) is None  # 0, ±1, ±2, 1/2: -2 -> -1/2 is not a point
    perm, scale = winograd.reflection(4, 3)
    assert sorted(perm) == list(range(6)) and all(float(c) in (1, 8, 1 / 8) for c in scale)


def test_toom_cook_refuses_too_many_points():
    with pytest.raises(ValueError, match=r"F\(6, 5\) needs .* m \+ r - 1 <= 8"):
        winograd.toom_cook(6, 5)


WINOGRAD = [  # (x shape, w shape, padding, groups): F(2,3), F(4,3), F(3,5), crops, groups
    ((2, 3, 9, 11), (4, 3, 3, 3), 1, 1),
    ((1, 4, 20, 17), (6, 2, 3, 3), 1, 2),
    ((1, 3, 18, 19), (2, 3, 3, 3), 0, 1),
    ((1, 2, 6, 7), (3, 2, 3, 3), 3, 1),  # padding beyond r - 1: the gradient conv crops
    ((1, 4, 13, 14), (4, 4, 5, 5), 2, 1),
    ((1, 4, 27, 27), (6, 2, 5, 5), 2, 2),
    ((2, 2, 5, 6), (3, 2, 5, 5), 0, 1),
    ((1, 3, 8, 9), (2, 3, 2, 2), (1, 0), 1),  # an even kernel, asymmetric padding
]


@pytest.mark.parametrize("constant", [False, True], ids=["trained", "constant"])
@pytest.mark.parametrize("xs, ws, padding, groups", WINOGRAD)
def test_winograd_matches_torch_float64(xs, ws, padding, groups, constant, device, rng):
    x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, ws[:1])
    xt = mg.Tensor(on(device, x), requires_grad=True)
    wt, bt = (mg.Tensor(on(device, a), requires_grad=not constant) for a in (w, b))
    y = F.conv2d(xt, wt, bt, padding=padding, groups=groups, algorithm="winograd")
    x_th, w_th, b_th = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y_th = TF.conv2d(x_th, w_th, b_th, padding=padding, groups=groups)
    g = rng.standard_normal(tuple(y_th.shape))
    y.backward(on(device, g))
    y_th.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y.numpy(), y_th.detach().numpy(), **tol, err_msg="forward")
    np.testing.assert_allclose(backend.asnumpy(xt.grad), x_th.grad.numpy(), **tol, err_msg="dx")
    if constant:
        assert wt.grad is None and bt.grad is None
    else:
        np.testing.assert_allclose(backend.asnumpy(wt.grad), w_th.grad.numpy(), **tol)
        np.testing.assert_allclose(backend.asnumpy(bt.grad), b_th.grad.numpy(), **tol)


def _relative_error(a, ref):
    """Norm-wise: ‖a - ref‖ / ‖ref‖ (the largest element error is about 4× this for F(4, ·))."""
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


LAYERS = [  # network-sized float32 layers: (x shape, w shape, padding, groups, F(m, r))
    ((1, 192, 13, 13), (384, 192, 3, 3), 1, 1, "F(2,3)"),  # AlexNet conv3
    ((1, 128, 56, 56), (128, 128, 3, 3), 1, 1, "F(4,3)"),  # a VGG-16 conv at 56 px
    ((1, 96, 27, 27), (256, 48, 5, 5), 2, 2, "F(3,5)"),  # CaffeNet conv2
]


@pytest.mark.parametrize("xs, ws, padding, groups, tile", LAYERS)
def test_float32_winograd_within_1e5_of_float64(xs, ws, padding, groups, tile, rng):
    """Output and input gradient within 1e-5 (norm-wise relative error) of float64 torch."""
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws) / np.sqrt(ws[1] * ws[2] * ws[3])
    xt = mg.Tensor(x.astype(np.float32), requires_grad=True)
    with conv_algorithms.recorded() as log:
        y = F.conv2d(xt, mg.Tensor(w.astype(np.float32)), padding=padding, groups=groups,
                     algorithm="winograd")
    assert log[0][3] == "winograd" and winograd.tile_size(ws[2], min(y.shape[2:])) == int(
        tile[2])
    x_th = torch.tensor(x, requires_grad=True)
    y_th = TF.conv2d(x_th, torch.tensor(w), padding=padding, groups=groups)
    g = rng.standard_normal(tuple(y_th.shape))
    y.backward(g.astype(np.float32))
    y_th.backward(torch.from_numpy(g))
    assert _relative_error(y.numpy(), y_th.detach().numpy()) < 1e-5
    assert _relative_error(xt.grad, x_th.grad.numpy()) < 1e-5


def test_auto_chooses_by_shape_and_weight_kind():
    choose = conv_algorithms.choose
    assert choose((1, 64, 56, 56), (64, 64, 3, 3), padding=1) == "winograd F(4,3)"
    assert choose((1, 256, 13, 13), (384, 256, 3, 3), padding=1) == "im2col"  # see the note
    assert choose((1, 256, 16, 16), (384, 256, 3, 3), padding=1) == "winograd F(4,3)"
    assert choose((1, 64, 27, 27), (192, 64, 5, 5), padding=2) == "winograd F(3,5)"
    assert choose((1, 64, 56, 56), (64, 64, 3, 3), padding=1, constant=False) == "im2col"
    assert choose((1, 64, 56, 56), (64, 64, 3, 3), stride=2, padding=1) == "im2col"
    assert choose((1, 64, 56, 56), (64, 64, 3, 3), dilation=2, padding=2) == "im2col"
    assert choose((1, 6, 56, 56), (12, 1, 3, 3), padding=1, groups=6) == "im2col"  # depthwise


def test_forced_winograd_refuses_strides_and_unknown_algorithms():
    x, w = mg.tensor(np.ones((1, 2, 8, 8))), mg.tensor(np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="algorithm='winograd' needs stride 1"):
        F.conv2d(x, w, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="algorithm must be one of auto, im2col, winograd"):
        F.conv2d(x, w, algorithm="fft")


def test_transformed_weights_are_cached_and_dropped_with_the_data(rng):
    x = mg.tensor(rng.standard_normal((1, 16, 20, 20)).astype(np.float32))
    w0 = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    w = mg.tensor(w0)
    y1 = F.conv2d(x, w, padding=1).numpy()
    assert ("winograd", 1, "forward", 4) in w._conv_cache[1]
    assert not any(key[2] == "backward" for key in w._conv_cache[1])  # not asked for yet
    w.data = w.data * 2
    y2 = F.conv2d(x, w, padding=1).numpy()
    np.testing.assert_allclose(y2, 2 * y1, rtol=1e-5, atol=1e-5)
    ref = F.conv2d(x, w, padding=1, algorithm="im2col").numpy()
    np.testing.assert_allclose(y2, ref, rtol=1e-4, atol=1e-4)


def test_forced_and_recorded_algorithms(rng):
    x = mg.tensor(rng.standard_normal((1, 16, 20, 20)).astype(np.float32))
    w = mg.tensor(rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    with conv_algorithms.recorded() as log:
        auto = F.conv2d(x, w, padding=1).numpy()
        with conv_algorithms.forced("im2col"):
            baseline = F.conv2d(x, w, padding=1).numpy()
        F.conv2d(x, w, stride=2, algorithm="im2col")
    assert [entry[3] for entry in log] == ["winograd F(4,3)", "im2col", "im2col"]
    assert log[0][:2] == ((1, 16, 20, 20), (16, 16, 3, 3))
    np.testing.assert_allclose(auto, baseline, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="forced: algorithm must be one of"):
        with conv_algorithms.forced("direct"):
            pass


@pytest.mark.parametrize("budget, min_tiles", [(1, 1), (40, 1), (1, 5), (1 << 30, 1)],
                         ids=["row-bands", "two-row-bands", "min-tiles", "one-band"])
def test_winograd_bands_give_the_unbanded_result(budget, min_tiles, monkeypatch, rng):
    """Tile rows run in bands (BAND_BUDGET, MIN_GEMM_TILES): any banding, uneven last band
    included, must give the same output and input gradient as torch in float64."""
    monkeypatch.setattr(winograd, "BAND_BUDGET", budget)
    monkeypatch.setattr(winograd, "MIN_GEMM_TILES", min_tiles)
    x, w = normal(rng, (1, 3, 23, 17)), normal(rng, (4, 3, 3, 3))
    xt = mg.Tensor(x, requires_grad=True)
    y = F.conv2d(xt, mg.Tensor(w), padding=1, algorithm="winograd")
    x_th = torch.tensor(x, requires_grad=True)
    y_th = TF.conv2d(x_th, torch.tensor(w), padding=1)
    g = rng.standard_normal(tuple(y_th.shape))
    y.backward(g)
    y_th.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y.data, y_th.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xt.grad, x_th.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ks, m, keeps_backward", [(3, 4, False), (3, 2, False), (5, 3, True)])
def test_input_gradient_keeps_a_second_transform_only_without_a_reflection(ks, m, keeps_backward,
                                                                           rng):
    """F(4,3) and F(2,3) reuse the forward U for the input gradient (half the memory);
    F(3,5), whose points are not closed under reciprocals, keeps the flipped kernel's own U.
    Either way the gradient is torch's, in float64."""
    size = 20 if m == 4 else 9
    x, w = normal(rng, (1, 16, size, size)), normal(rng, (16, 16, ks, ks))
    xt = mg.Tensor(x, requires_grad=True)
    wt = mg.Tensor(w)
    y = F.conv2d(xt, wt, padding=ks // 2, algorithm="winograd")
    y.backward(np.ones(y.shape))
    cached = {key[2:] for key in wt._conv_cache[1] if key[0] == "winograd"}
    assert cached == ({("forward", m), ("backward", m)} if keeps_backward else {("forward", m)})
    x_th = torch.tensor(x, requires_grad=True)
    TF.conv2d(x_th, torch.tensor(w), padding=ks // 2).sum().backward()
    np.testing.assert_allclose(xt.grad, x_th.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_channels_last_prototype_of_bench_layout_computes_the_same_conv(rng):
    """benchmarks/bench_layout.py times a channels-last copy of the Winograd pipeline: it must
    compute what the NCHW engine (and torch, in float64) computes, or its timings mean nothing."""
    from benchmarks import bench_layout

    x, w = normal(rng, (1, 16, 20, 20)), normal(rng, (24, 16, 3, 3))
    steps = bench_layout.variants(x, winograd.transform_weights(w, 1, 4))
    ref = steps["NCHW"]()
    x_th = torch.tensor(x, requires_grad=True)
    y_th = TF.conv2d(x_th, torch.tensor(w), padding=1)
    y_th.backward(y_th.detach())  # the variants' gradient step feeds the output back in
    np.testing.assert_allclose(ref, x_th.grad.numpy(), rtol=1e-9, atol=1e-9)
    for label in ("NHWC inside", "NHWC at NCHW boundaries"):
        out = steps[label]()
        out = out if out.shape == ref.shape else out.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10, err_msg=label)


def test_pipeline_stages_compute_their_definitions(rng):
    """The stages that ``correlate`` chains (and benchmarks/winograd_stages.py times one by
    one), each against its definition written with indices and einsum."""
    m, r, th, tw = 4, 3, 2, 3
    AT, BT = winograd._matrices(m, r, "float64", np, False)
    x_pad = normal(rng, (2, 3, th * m + r - 1, tw * m + r - 1))
    d = winograd.gather_tiles(x_pad, m, r, th, tw)
    assert d.shape == (6, 6, 2, 3, th, tw) and d.flags.c_contiguous
    for k, l, ty, tx in [(0, 0, 0, 0), (5, 2, 1, 2), (3, 5, 1, 0)]:
        np.testing.assert_array_equal(d[k, l, :, :, ty, tx], x_pad[:, :, ty * m + k, tx * m + l])
    np.testing.assert_allclose(winograd.transform_tiles(d, BT),
                               np.einsum("xk,yl,kl...->xy...", BT, BT, d), rtol=1e-12)
    M = normal(rng, (36, 2, 1, 5, th * tw))
    z = winograd.inverse_transform(M, AT)
    np.testing.assert_allclose(z, np.einsum("ix,jy,xy...->ij...", AT, AT,
                                            M.reshape(6, 6, 2, 1, 5, th * tw)), rtol=1e-12)
    y = winograd.untile(z, th, tw)
    assert y.shape == (2, 1, 5, th * m, tw * m)
    np.testing.assert_array_equal(y[1, 0, 3, 1 * m + 2, 2 * m + 1], z[2, 1, 1, 0, 3, 1 * tw + 2])


@pytest.mark.parametrize("C, O, size, r, groups", [(8, 12, 10, 3, 1), (6, 8, 9, 5, 2),
                                                   (4, 4, 17, 3, 1)])
def test_winograd_stages_benchmark_runs_the_conv_it_times(C, O, size, r, groups, rng):
    """benchmarks/winograd_stages.py splits correlate into stages to time them: what they
    compute together must be the layer's conv (torch's, float32), or its table means nothing."""
    from benchmarks import winograd_stages

    run, flops, layer = winograd_stages.stage_functions(C, O, size, r, groups, rng)
    assert set(run) == set(winograd_stages.STAGES)
    y_th = TF.conv2d(torch.from_numpy(layer["x"]), torch.from_numpy(layer["W"]),
                     torch.from_numpy(layer["bias"]), padding=layer["padding"], groups=groups)
    np.testing.assert_allclose(layer["y"], y_th.numpy(), rtol=1e-4, atol=1e-5)
    m = winograd.tile_size(r, size)
    assert flops == 2 * (m + r - 1) ** 2 * O * (C // groups) * (-(-size // m)) ** 2
