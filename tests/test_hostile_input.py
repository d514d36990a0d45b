"""Careless input and hostile runs (issue 13, items 1 and 8-15): resize limits, signals that
keep the run, bad rates, non-finite forwards, output directories and modes, the Python API."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from test_cli import ROOT, assert_one_line_error, check_png, photo, run  # noqa: F401

import minigrad as mg
import models
from minigrad import images as im
from minigrad import samples
from minigrad.inversion import InversionError, invert, resolve_options
from minigrad.inversion.image_input import as_image, composite_on_white


# ------------------------------------------------------------------ item 1: resize limits
def test_resize_beyond_the_pixel_limit_is_refused_before_decoding(tmp_path):
    p = tmp_path / "small.png"
    Image.new("RGB", (80, 64), (10, 20, 30)).save(p)
    tracemalloc.start()
    with pytest.raises(im.ImageReadError) as info:
        im.read_image(p, resize=100000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(info.value) == (f"resize 100000 would make image {p} 100000x80000 (8000.0 "
                               "megapixels), above the limit of 50 megapixels; use a resize "
                               "of at most 7905")
    assert peak < 16 << 20
    assert im.read_image(p, resize=7905)[0].shape == (6324, 7905, 3)


@pytest.mark.parametrize("value", [0, -3, 7, 2.5, True])
def test_resize_below_8_or_not_an_integer_is_refused(tmp_path, value):
    p = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(p)
    with pytest.raises(im.ImageReadError, match=r"^resize must be an integer of at least 8 "
                                                r"pixels, got "):
        im.read_image(p, resize=value)


@pytest.mark.parametrize("args,message", [
    (["--resize", "0"], "argument --resize: must be an integer >= 8, got 0"),
    (["--resize", "100000"], "resize 100000 would make image"),
    (["--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
    (["--lr", "inf"], "argument --lr: must be a finite number > 0, got inf"),
    (["--lr", "0"], "argument --lr: must be a finite number > 0, got 0"),
    (["--lr=-1e-3"], "argument --lr: must be a finite number > 0, got -1e-3"),
    (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    (["--iters", "0"], "argument --iters: must be an integer >= 1, got 0"),
])
def test_bad_numbers_on_the_command_line_name_the_option(photo, tmp_path, args, message):  # noqa: F811
    out = tmp_path / "out"
    r = run("invert", photo, "--net", "hog", "--out", out, *args)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr
    assert message in r.stderr.strip().splitlines()[-1]
    assert not out.exists()  # nothing created for a run that never started


# ------------------------------------------------------------------- item 8: signals
def _start(photo, out):  # noqa: F811
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "minigrad.cli", "invert", str(photo), "--net",
                          "hog", "--iters", "100000", "--out", str(out)], cwd=ROOT, env=env,
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first progress line: the loop runs
        line = p.stderr.readline()
        if "/100000" in line or not line:
            break
    time.sleep(0.5)
    return p


def _check_outputs(out, signame):
    m = json.loads((out / "metrics.json").read_text())
    assert m["interrupted"] is True and m["status"] == "interrupted"
    assert m["signal"] == signame
    assert 0 < m["metrics"]["iterations"] < 100000
    for name in ("reconstruction.png", "comparison.png", "loss.png"):
        check_png(out / name)
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == m["metrics"]["iterations"] + 1
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


@pytest.mark.parametrize("signals,status,name", [
    ([signal.SIGTERM], 143, "SIGTERM"),
    ([signal.SIGINT, signal.SIGINT], 130, "SIGINT"),  # the second 50 ms after the first
    ([signal.SIGTERM, signal.SIGINT, signal.SIGTERM], 143, "SIGTERM"),
])
def test_signals_write_the_current_run(photo, tmp_path, signals, status, name):  # noqa: F811
    out = tmp_path / "run"
    p = _start(photo, out)
    try:
        for s in signals:
            p.send_signal(s)
            time.sleep(0.05)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == status, err
    assert "Traceback" not in err and "interrupted: wrote the current image" in err
    _check_outputs(out, name)


# ------------------------------------------------- item 9: non-finite forward passes
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("net", ["hog", "hogb", "dsift"])
def test_a_diverging_run_ends_as_the_non_finite_stop(net):
    rep = models.get(net)
    image = np.asarray(samples.load("astronaut"))[::8, ::8].copy()
    r = invert(rep, image, iters=20, lr=1e300)  # finite, accepted; x overflows at once
    assert r.status == "non-finite"
    assert r.message.startswith("the energy became non-finite at iteration 1 (")
    assert np.all(np.isfinite(r.x))


def test_orientation_binning_never_casts_nan_to_an_index():
    from models.features_ops import OrientationBinning

    gx = np.full((1, 1, 3, 3), np.nan, np.float32)
    gy = np.zeros_like(gx)
    gy[0, 0, 1, 1] = np.nan
    for bilinear in (True, False):
        out = OrientationBinning.apply(mg.tensor(gx), mg.tensor(gy), num_bins=18,
                                       bilinear=bilinear).numpy()
        assert out.shape == (1, 18, 3, 3) and np.isnan(out[:, 0]).all()


# ------------------------------------------------------------ item 10: output directories
def test_failed_invert_creates_no_output_directory(photo, tmp_path):  # noqa: F811
    out = tmp_path / "a" / "b"
    r = run("invert", photo, "--net", "hog", "--layer", "nope", "--out", out)
    assert r.returncode == 1 and not (tmp_path / "a").exists()


def test_over_long_output_path_creates_nothing(photo, tmp_path):  # noqa: F811
    out = tmp_path.joinpath(*["d" * 120] * 33 + ["x" * 300])
    r = run("invert", photo, "--net", "hog", "--out", out)
    assert_one_line_error(r, "output directory", "above the limit of 255")
    assert os.listdir(tmp_path) == []


def test_make_out_dir_removes_what_it_made_when_it_fails(tmp_path, monkeypatch):
    from minigrad.app import CLIError, outdir

    real = os.mkdir
    made = []

    def flaky(path, *a):
        if len(made) == 2:
            raise OSError(28, "No space left on device")
        real(path, *a)
        made.append(path)

    monkeypatch.setattr(os, "mkdir", flaky)
    with pytest.raises(CLIError, match="cannot be created: No space left on device"):
        outdir.make_out_dir(tmp_path / "a" / "b" / "c")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------ item 11: file modes
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_modes(tmp_path, mask):
    old = os.umask(mask)
    try:
        im.save_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
        im.save_json(tmp_path / "a.json", {"a": 1})
        with open(tmp_path / "ref", "w"):
            pass
    finally:
        os.umask(old)
    expect = stat.S_IMODE(os.stat(tmp_path / "ref").st_mode)
    assert expect == 0o666 & ~mask
    for name in ("a.png", "a.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expect


# ------------------------------------------------------------- item 12: image or code
@pytest.fixture(scope="module")
def net():
    return models.get("alexnet", weights=None)


def test_a_float_photo_is_refused_with_how_to_pass_it(net):
    picture = np.random.default_rng(0).random((224, 224, 3))
    with pytest.raises(InversionError) as info:
        invert(net, picture, "conv1", iters=1)
    msg = str(info.value)
    assert msg.startswith("image has dtype float64, shape (224, 224, 3): pass a uint8 image")
    assert "np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)" in msg
    assert "invert(rep, code=...)" in msg and "\n" not in msg
    with pytest.raises(InversionError, match="has dtype float32"):
        invert(net, mg.tensor(picture.transpose(2, 0, 1)[None]).numpy(), "conv1", iters=1)


def test_exactly_one_target(net):
    image = np.zeros((8, 8, 3), np.uint8)
    for kwargs in ({}, {"image": image, "code": np.ones((1, 64, 1, 1), np.float32)}):
        with pytest.raises(InversionError, match="^invert needs exactly one target"):
            invert(net, layer="conv1", **kwargs)


def test_rgba_is_composited_exactly_as_the_command_line_does(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    from_file, notes = im.read_image(tmp_path / "t.png")
    np.testing.assert_array_equal(from_file, as_image(rgba))
    a = rgba[..., 3:].astype(np.float64)
    expect = np.floor((rgba[..., :3] * a + 255 * (255 - a)) / 255 + 0.5)
    np.testing.assert_array_equal(composite_on_white(rgba[..., :3], rgba[..., 3:]), expect)
    assert "alpha channel dropped (composited on white)" in notes[0]


def test_rgba_array_and_file_invert_identically(tmp_path):
    rep = models.get("hog")
    rgba = np.random.default_rng(2).integers(0, 256, (32, 40, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    a = invert(rep, rgba, iters=3)
    b = invert(rep, im.read_image(tmp_path / "t.png")[0], iters=3)
    np.testing.assert_array_equal(a.x, b.x)


# ---------------------------------------------------------- item 13: numeric options
@pytest.mark.parametrize("option,value,message", [
    ("lr", "fast", "lr must be a finite number > 0, got 'fast'"),
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
    ("sigma", 0, "sigma must be a finite number > 0, got 0"),
    ("lambda_tv", -1, "lambda_tv must be a finite number >= 0, got -1"),
    ("momentum", 1.0, "momentum must be a number in [0, 1), got 1.0"),
    ("iters", 2.5, "iters must be an integer >= 1, got 2.5"),
    ("seed", -1, "seed must be an integer >= 0, got -1"),
    ("restarts", True, "restarts must be an integer >= 1, got True"),
    ("lr_factors", (1.0, float("inf")), "lr_factors must be a sequence of finite numbers > 0"),
    ("size", (0, 4), "size must be a sequence of integers >= 1, got (0, 4)"),
])
def test_every_numeric_option_is_validated(net, option, value, message):
    with pytest.raises(InversionError) as info:
        resolve_options(net, "conv1", "cvpr15", **{option: value})
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("option,value", [("eta", -1.0), ("B", float("inf")), ("decay", -0.1),
                                          ("phase_iters", (300, 0)), ("V", 0)])
def test_ijcv16_options_are_validated(net, option, value):
    with pytest.raises(InversionError, match=f"^{option} must be "):
        resolve_options(net, "conv1", "ijcv16", **{option: value})


def test_valid_overrides_are_kept_unchanged(net):
    o = resolve_options(net, "conv1", "cvpr15", lr=np.float32(0.1), iters=np.int64(5), tol=1e-3)
    assert o["lr"] == np.float32(0.1) and o["iters"] == 5 and o["tol"] == 1e-3


# ------------------------------------------------------------------ item 14: tensor(None)
def test_tensor_of_none_is_a_type_error():
    with pytest.raises(TypeError, match=r"^tensor\(\) needs data \(a number, a list or an "
                                        r"array\), got None$"):
        mg.tensor(None)


# ----------------------------------------------------------------- item 15: small notes
def _png16(path, w=5, h=4):
    import struct
    import zlib

    rows = b"".join(b"\x00" + bytes(range(w * 6)) for _ in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_16_bit_rgb_png_gets_a_note(tmp_path):
    _png16(tmp_path / "c16.png")
    a, notes = im.read_image(tmp_path / "c16.png")
    assert a.shape == (4, 5, 3)
    assert notes == ["16-bit RGB image reduced to 8 bits per channel"]


def test_animated_gif_gets_a_note(tmp_path):
    frames = [Image.new("RGB", (6, 5), c) for c in ((0, 0, 0), (255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    a, notes = im.read_image(tmp_path / "a.gif")
    assert a.shape == (5, 6, 3) and np.all(a == 0)
    assert "animated image with 3 frames: only the first frame is used" in notes
