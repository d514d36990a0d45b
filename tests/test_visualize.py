"""Activation maximisation and caricatures (IJCV16): the energy terms, the runs, the movie,
naturalness and the two commands."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minigrad as mg
from minigrad.inversion import metrics as M
from minigrad.inversion.objectives import FeatureLoss, InnerProduct, get_objective
from minigrad.inversion.presets import InversionError
from minigrad.inversion.visualize import (
    caricature,
    inner_weight,
    maximisation_size,
    maximise,
    unit_target,
)

ROOT = Path(__file__).resolve().parents[1]


def tiny_cnn(seed=0, size=32):
    """A 2-conv random-weight CNN (He init): conv1 5x5/2 → relu1 → conv2 3x3 → relu2."""
    from models.cnn import CNN, Conv, Normalization, ReLU

    layers = [Conv("conv1", 3, 8, 5, stride=2, pad=2), ReLU("relu1"),
              Conv("conv2", 8, 12, 3, pad=1), ReLU("relu2")]
    return CNN("tiny", layers, (size, size), Normalization(pixel_range=1.0,
               mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)), weights=None, seed=seed)


def photo(h=40, w=48):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([128 + 90 * np.sin(xx / 4), 128 + 90 * np.cos(yy / 5),
                     128 + 60 * np.sin((xx + yy) / 6)], -1).astype(np.uint8)


# --- the energy terms -------------------------------------------------------------------------
@pytest.mark.parametrize("batch_w", [1, 3])
def test_inner_product_gradcheck_float64(batch_w):
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((3, 4, 5, 5))
    w = rng.standard_normal((batch_w, 4, 5, 5))
    got = InnerProduct.apply(mg.tensor(phi, dtype="float64"), w, scale=0.7).numpy()
    np.testing.assert_allclose(got, -0.7 * (phi * w).reshape(3, -1).sum(1), rtol=1e-12)
    mg.gradcheck(lambda t: InnerProduct.apply(t, w, scale=0.7), phi)


def test_enhance_term_gradcheck_and_target():
    """enhance: w = Φ0₊/‖Φ0₊‖², so ⟨w, Φ0⟩ = 1; its term's gradient by finite differences."""
    rng = np.random.default_rng(1)
    phi0 = rng.standard_normal((1, 6, 4, 4))
    w = get_objective("enhance").target(phi0, "x")
    pos = np.maximum(phi0, 0)
    np.testing.assert_allclose(w, pos / (pos ** 2).sum(), rtol=1e-12)
    assert (w * phi0).sum() == pytest.approx(1.0, rel=1e-12)
    phi = rng.standard_normal((2, 6, 4, 4))
    mg.gradcheck(lambda t: InnerProduct.apply(t, w, scale=1.0), phi)
    with pytest.raises(InversionError, match="no positive entry"):
        get_objective("enhance").target(-np.abs(phi0), "conv9")


def test_terms_against_pytorch_through_a_network():
    """−C⟨w, Φ(x)⟩ and the enhance objective through conv → relu: value and ∇x vs PyTorch."""
    torch = pytest.importorskip("torch", reason="PyTorch is needed for this comparison")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 9))
    k, b = rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5)
    w = np.abs(rng.standard_normal((2, 5, 7, 7)))
    phi0 = rng.standard_normal((1, 5, 7, 7))
    for target in (w, get_objective("enhance").target(phi0, "l")):
        xt = mg.tensor(x, requires_grad=True, dtype="float64")
        phi = mg.F.relu(mg.F.conv2d(xt, mg.tensor(k, dtype="float64"),
                                    mg.tensor(b, dtype="float64")))
        e = InnerProduct.apply(phi, target, scale=3.0)
        e.sum().backward()
        xr = torch.tensor(x, requires_grad=True)
        pr = torch.relu(torch.nn.functional.conv2d(xr, torch.tensor(k), torch.tensor(b)))
        er = -3.0 * (pr * torch.tensor(target)).flatten(1).sum(1)
        er.sum().backward()
        np.testing.assert_allclose(e.numpy(), er.detach().numpy(), rtol=1e-10)
        np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_feature_loss_moved_but_the_same():
    from minigrad.inversion import loop

    assert loop.FeatureLoss is FeatureLoss
    phi, phi0 = np.ones((2, 3)), np.zeros((1, 3))
    assert FeatureLoss.apply(mg.tensor(phi), phi0, None, scale=0.5).numpy().tolist() == [1.5, 1.5]


# --- the runs ---------------------------------------------------------------------------------
def test_maximise_raises_the_target_channel():
    """A short run on random weights: the target unit ends far above its start and above the
    mean of the other channels at the same position."""
    rep = tiny_cnn()
    layer, chan = "conv2", 5
    hw = maximisation_size(rep, layer)
    start = {}

    def callback(step, x, terms):
        if step == 0:
            start["phi"] = rep.forward(mg.Tensor(x), layer).numpy()

    r = maximise(rep, layer, [chan], max_activation=1.0, iterations=40, callback=callback)
    h, w = rep.output_shape(layer, hw)[1:]
    with mg.no_grad():
        phi = rep.forward(mg.Tensor(r.x), layer).numpy()[0, :, h // 2, w // 2]
    a0 = start["phi"][0, chan, h // 2, w // 2]
    assert r.metrics["activation"] == pytest.approx(phi[chan], rel=1e-5)
    assert phi[chan] > a0 + 10 * max(abs(a0), 0.1)
    assert phi[chan] > 3 * np.delete(phi, chan).mean()
    assert r.image.shape == hw + (3,) and r.status == "completed"


def test_maximise_batch_of_channels_and_leak():
    rep = tiny_cnn()
    r = maximise(rep, "relu2", [0, 3], max_activation=np.ones(12), iterations=8, restarts=2,
                 leak=0.05)
    assert len(r.image) == 4 and len(r.metrics["activation_per_restart"]) == 4
    assert r.metrics["leak"] == 0.05 and rep.leak == 0.0  # the leak is gone after the run
    with pytest.raises(InversionError, match="channel 12"):
        maximise(rep, "conv2", [12], max_activation=1.0, iterations=1)
    with pytest.raises(InversionError, match="positive"):
        maximise(rep, "conv2", [0], max_activation=0.0, iterations=1)


def test_unit_target_and_weight():
    rep = tiny_cnn()
    w = unit_target(rep, "conv2", [1, 4], [2.0, 3.0], (20, 20))
    assert w.shape == (2, 12, 10, 10) and w.sum() == 5.0 and w[0, 1, 5, 5] == 2.0
    assert w[1, 4, 5, 5] == 3.0
    rf = rep.receptive_field("conv2")[0]
    assert inner_weight(rep, "conv2", 4.0) == pytest.approx(10000 / rf ** 2 / 4.0)


def test_fc8_maximisation_with_conv_only_weights_is_refused(tmp_path):
    import models
    import weights
    from models.cnn import MissingWeightsError

    rep = models.get("alexnet", weights=None)
    params = {k: v.numpy() for k, v in rep.params.items() if not k.startswith("fc")}
    p = tmp_path / "conv-only.npz"
    weights.save_npz(p, params, {"variant": "alexnet", "source": "random test weights"})
    conv_only = models.get("alexnet", weights=str(p))
    with pytest.raises(MissingWeightsError, match="fc6.weight.*conv-only weights"):
        mg.visualize(conv_only, "fc8", 3, max_activation=1.0)


def test_caricature_starts_at_the_image():
    from minigrad.app.movie import FrameRecorder

    rep = tiny_cnn()
    image = photo()
    movie = FrameRecorder(rep, 1)
    r = caricature(rep, image, "relu2", iterations=6, callback=movie)
    np.testing.assert_array_equal(movie.frames[0], r.original)
    np.testing.assert_array_equal(r.original, rep.deprocess(rep.preprocess(image)))
    assert movie.steps == list(range(6))
    assert r.history["loss"][0] == pytest.approx(-1.0, abs=0.05)  # ⟨w, Φ(x0)⟩ = 1 (jittered)
    assert {"enhancement", "psnr", "naturalness"} <= set(r.metrics)


# --- the movie --------------------------------------------------------------------------------
def test_gif_has_one_frame_per_n_iterations_plus_the_end(tmp_path):
    from minigrad.app.movie import FrameRecorder

    rep = tiny_cnn()
    movie = FrameRecorder(rep, 5)
    r = mg.invert(rep, photo(32, 32), "relu1", preset="ijcv16", iters=12, callback=movie)
    movie.finish(r)
    paths = movie.write(str(tmp_path), png_frames=True)
    assert movie.steps == [0, 5, 10, 12]
    with Image.open(tmp_path / "evolution.gif") as gif:
        assert gif.n_frames == 4
        assert gif.size == (32, 32 + 18)  # the image and its label strip
    pngs = sorted(p for p in paths if p.endswith(".png"))
    assert [os.path.basename(p) for p in pngs] == [f"frame_{s:05d}.png" for s in (0, 5, 10, 12)]


# --- naturalness ------------------------------------------------------------------------------
def test_naturalness_against_scipy_sobel():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (21, 17, 3)).astype(np.uint8)
    g = a.astype(np.float64) @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    gx = ndimage.sobel(g, axis=1, mode="nearest")
    gy = ndimage.sobel(g, axis=0, mode="nearest")
    ang = np.degrees(np.arctan2(-gy, gx))
    want = np.zeros(18)
    edges = np.linspace(-180, 180, 19)
    for i in range(18):
        sel = (ang >= edges[i]) & (ang <= edges[i + 1]) if i == 0 else \
            (ang > edges[i]) & (ang <= edges[i + 1])
        want[i] = np.hypot(gx, gy)[sel].sum()
    np.testing.assert_allclose(M.gradient_orientation_histogram(a), want / want.sum(),
                               rtol=1e-10)
    assert M.naturalness(a, a) == pytest.approx(1.0)
    b = np.tile(np.arange(17, dtype=np.uint8)[None, :, None] * 10, (21, 1, 3))  # x-ramp only
    c = np.transpose(b, (1, 0, 2))  # y-ramp only: disjoint orientations
    assert M.naturalness(b, c) == pytest.approx(0.0, abs=1e-12)


# --- the commands -----------------------------------------------------------------------------
def run_cli(*args, home):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINIGRAD_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "minigrad.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory):
    import models
    import weights

    rep = models.get("alexnet", weights=None)
    params = {k: v.numpy() for k, v in rep.params.items() if not k.startswith("fc")}
    p = tmp_path_factory.mktemp("w") / "alexnet-random.npz"
    weights.save_npz(p, params, {"variant": "alexnet", "source": "random test weights"})
    return p


def test_cli_visualize_writes_every_file(tmp_path, random_alexnet):
    out = tmp_path / "viz"
    r = run_cli("visualize", "--net", "alexnet", "--weights", random_alexnet, "--layer",
                "conv1", "--channels", "2:5", "--iters", "4", "--frames", "2", "--frame-pngs",
                "--bundled-maxima", "--quiet", "--out", out, home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    names = {"grid.png", "loss.png", "history.csv", "metrics.json", "evolution.gif"}
    assert names <= set(os.listdir(out))
    assert sorted(os.listdir(out / "channels")) == [f"conv1_c{c:03d}.png" for c in (2, 3, 4)]
    assert len(os.listdir(out / "evolution-frames")) == 3  # steps 0, 2 and the end (4)
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["metrics"]["channels"] == [2, 3, 4] and len(meta["metrics"]["max_activation"]) == 3
    assert meta["metrics"]["maxima_images"] == ["astronaut", "chelsea", "coffee", "rocket"]
    assert list((tmp_path / "home" / "weights" / "maxima").glob("alexnet-*-bundled4-v1.npz"))
    for p in ("grid.png", "loss.png"):
        with Image.open(out / p) as im:
            im.verify()


def test_cli_caricature_writes_every_file(tmp_path, random_alexnet):
    src = tmp_path / "photo.png"
    Image.fromarray(photo(64, 80)).save(src)
    out = tmp_path / "car"
    r = run_cli("caricature", src, "--net", "alexnet", "--weights", random_alexnet, "--layers",
                "conv1", "relu1", "--iters", "3", "--frames", "1", "--quiet", "--out", out,
                home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    want = {"caricatures.png", "metrics.json"} | {f"{p}{layer}{ext}" for layer in
                                                  ("conv1", "relu1") for p, ext in
                                                  (("", ".png"), ("loss_", ".png"),
                                                   ("history_", ".csv"), ("evolution_", ".gif"))}
    assert want <= set(os.listdir(out))
    meta = json.loads((out / "metrics.json").read_text())
    assert [row["layer"] for row in meta["layers"]] == ["conv1", "relu1"]
    assert all("enhancement" in row["metrics"] for row in meta["layers"])


def test_cli_visualize_errors_are_one_line(tmp_path, random_alexnet):
    r = run_cli("visualize", "--net", "alexnet", "--weights", random_alexnet, "--layer",
                "fc8", "--out", tmp_path / "x", home=tmp_path / "home")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "conv-only weights" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("visualize", "--net", "alexnet", "--weights", random_alexnet, "--layer",
                "conv1", "--channels", "70:80", "--out", tmp_path / "x", home=tmp_path / "home")
    assert r.returncode == 1 and "--channels '70:80'" in r.stderr


def test_mp4_when_imageio_ffmpeg_is_installed(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg not installed")
    from minigrad.app.movie import FrameRecorder

    rep = tiny_cnn()
    movie = FrameRecorder(rep, 1)
    for step in range(3):
        movie.add(np.full((15, 21, 3), 40 * step, dtype=np.uint8), step)
    paths = movie.write(str(tmp_path))
    assert str(tmp_path / "evolution.mp4") in paths
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "evolution.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (22, 34)  # 21 x (15 + 18) made even
    assert sum(1 for _ in reader) == 3


def test_cli_invert_and_sweep_write_their_movies(tmp_path):
    src = tmp_path / "photo.png"
    Image.fromarray(photo(48, 64)).save(src)
    r = run_cli("invert", src, "--net", "hog", "--iters", "5", "--frames", "2", "--quiet",
                "--out", tmp_path / "inv", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "inv" / "evolution.gif") as gif:
        assert gif.n_frames == 4  # iterations 0, 2, 4 and the end (5)
    assert "naturalness" in json.loads((tmp_path / "inv" / "metrics.json").read_text())["metrics"]
    r = run_cli("sweep", src, "--net", "hog", "--iters", "3", "--frames", "1", "--quiet",
                "--out", tmp_path / "sw", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "sw" / "layers" / "hog-evolution.gif") as gif:
        assert gif.n_frames == 4
    r = run_cli("invert", src, "--net", "hog", "--iters", "2", "--frames", "0", "--out",
                tmp_path / "x", home=tmp_path / "home")
    assert r.returncode == 1 and "--frames must be >= 1" in r.stderr


def test_channel_maxima_cached_and_offline_fallback(tmp_path, monkeypatch):
    from minigrad.app import visualization as V

    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))
    rep = tiny_cnn()
    imgs = [photo(), photo(30, 50)[::-1].copy()]
    got = V.compute_maxima(rep, imgs, ["conv1", "relu2"])
    with mg.no_grad():
        want = np.max([rep.forward(rep.preprocess(a), "relu2").numpy().max(axis=(0, 2, 3))
                       for a in imgs], axis=0)
    np.testing.assert_allclose(got["relu2"], want, rtol=1e-6)
    assert got["conv1"].shape == (8,)

    def no_network(log):
        raise RuntimeError("no network")

    monkeypatch.setattr(V, "_skimage_wheel", no_network)
    images, note = V.natural_images(log=lambda m: None)
    assert list(images) == ["astronaut", "chelsea", "coffee", "rocket"]
    assert "bundled photographs only" in note and "no network" in note
    m, info = V.channel_maxima(rep, "conv2", log=lambda m: None)
    assert m.shape == (12,) and np.all(m > 0) and info["note"] == note
    assert not (tmp_path / "weights" / "maxima").exists()  # a partial set is never cached
    m2, info2 = V.channel_maxima(rep, "conv2", log=lambda m: None, extras=False)
    np.testing.assert_array_equal(m, m2)
    assert info2["cache"] and os.path.isfile(info2["cache"])
    m3, info3 = V.channel_maxima(rep, "conv2", log=lambda m: None, extras=False)
    np.testing.assert_array_equal(m2, m3)


def test_leaky_relus_only_inside_the_block():
    rep = tiny_cnn()
    x = mg.Tensor(np.random.default_rng(4).standard_normal((1, 3, 16, 16)).astype(np.float32))
    with mg.no_grad():
        pre = rep.forward(x, "conv1").numpy()
        with rep.leaky(0.05):
            leaky = rep.forward(x, "relu1").numpy()
        plain = rep.forward(x, "relu1").numpy()
    np.testing.assert_allclose(leaky, np.where(pre > 0, pre, 0.05 * pre), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(plain, np.maximum(pre, 0))
    assert (pre < 0).any()


def test_cli_frames_and_restarts_refuse_bad_values(tmp_path):
    """--frames 0 on the batch sweep and --restarts 0 on visualize: one line naming the option,
    and nothing written."""
    src = tmp_path / "photo.png"
    Image.fromarray(photo(48, 64)).save(src)
    r = run_cli("sweep", src, "--net", "hog", "--iters", "2", "--frames", "0", "--quiet",
                "--out", tmp_path / "sw", home=tmp_path / "home")
    assert r.returncode == 1 and "--frames must be >= 1, got 0" in r.stderr
    assert not (tmp_path / "sw" / "tasks").exists()
    r = run_cli("visualize", "--net", "alexnet", "--layer", "conv1", "--restarts", "0",
                "--out", tmp_path / "viz", home=tmp_path / "home")
    assert r.returncode == 2 and "--restarts: must be an integer >= 1, got 0" in r.stderr
    assert not (tmp_path / "viz").exists()
