"""The `minigrad` command end to end, in subprocesses: outputs, Ctrl-C, every error path."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import STANDIN
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=300, standin=False):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MINIGRAD_DEBUG", None)
    entry = [str(ROOT / "tests" / "standin_cli.py")] if standin else ["-m", "minigrad.cli"]
    return subprocess.run([sys.executable, *entry, *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    yy, xx = np.mgrid[0:64, 0:80]
    a = np.stack([128 + 90 * np.sin(xx / 5), 128 + 90 * np.cos(yy / 7),
                  128 + 50 * np.sin((xx + yy) / 9)], -1).astype(np.uint8)
    p = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(a).save(p)
    return p


@pytest.fixture(scope="module")
def conv_only_weights(tmp_path_factory):
    """Random (not pretrained) conv-only alexnet weights in the project's .npz format."""
    import models
    import weights

    rep = models.get("alexnet", weights=None)
    params = {k: v.numpy() for k, v in rep.params.items() if not k.startswith("fc")}
    p = tmp_path_factory.mktemp("w") / "alexnet-random.npz"
    weights.save_npz(p, params, {"variant": "alexnet", "source": "random test weights"})
    return p


def check_png(path):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        return img.size


def assert_one_line_error(r, *needles):
    assert r.returncode not in (0, 130), r
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("minigrad: error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_invert_hog_writes_every_output(photo, tmp_path):
    out = tmp_path / "out"
    r = run("invert", photo, "--net", "hog", "--iters", 30, "--restarts", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "relative error" in r.stderr and "30/30" in r.stderr  # progress with the terms
    assert "E=" in r.stderr and "tv=" in r.stderr
    for name in ("reconstruction.png", "comparison.png", "loss.png"):
        check_png(out / name)
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["interrupted"] is False
    assert m["net"] == "hog" and m["options"]["restarts"] == 2 and m["options"]["iters"] == 30
    assert len(m["metrics"]["relative_error_per_restart"]) == 2
    assert {"numpy", "minigrad", "python"} <= set(m["versions"]) and m["wall_time_s"] > 0
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 30 and set(rows[0]) == {"step", "lr", "loss", "alpha", "tv", "energy"}
    assert float(rows[-1]["energy"]) < float(rows[0]["energy"])
    # comparison: original, two restarts, HOG glyphs of original and of the reconstruction
    w, h = check_png(out / "comparison.png")
    assert w > 4 * 160


def test_invert_cnn_window_and_channels(photo, tmp_path, conv_only_weights):
    out = tmp_path / "o"
    r = run("invert", photo, "--net", "alexnet", "--weights", conv_only_weights, "--layer",
            "conv2", "--iters", 6, "--window", 5, "--channels", "first-half", "--seed", 3,
            "--threads", 2, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["options"]["window"] == 5 and m["options"]["channels"] == "first-half"
    assert m["options"]["seed"] == 3 and m["layer"] == "conv2"
    assert m["options"]["threads"] == 2
    assert check_png(out / "reconstruction.png") == (224, 224)


def test_sweep(photo, tmp_path, conv_only_weights):
    out = tmp_path / "sweep"
    r = run("sweep", photo, "--net", "alexnet", "--weights", conv_only_weights, "--layers",
            "conv1", "relu1", "pool1", "--iters", 5, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "conv1" in r.stdout and "pool1" in r.stdout and "rel.err" in r.stdout
    check_png(out / "sweep.png")
    for layer in ("conv1", "relu1", "pool1"):
        check_png(out / "layers" / f"{layer}.png")
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [row["layer"] for row in rows] == ["conv1", "relu1", "pool1"]
    assert json.loads((out / "metrics.json").read_text())["layers"][2]["layer"] == "pool1"


def test_layers_command():
    r = run("layers", "hog")
    assert r.returncode == 0, r.stderr
    assert "hog" in r.stdout and "31x" in r.stdout


def test_sigint_writes_files(photo, tmp_path):
    out = tmp_path / "int"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "minigrad.cli", "invert", str(photo), "--net",
                          "hog", "--iters", "100000", "--out", str(out)], cwd=ROOT, env=env,
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait for the first progress line: the loop runs
            line = p.stderr.readline()
            if "/100000" in line or not line:
                break
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["interrupted"] is True and m["status"] == "interrupted"
    assert 0 < m["metrics"]["iterations"] < 100000
    check_png(out / "reconstruction.png")
    check_png(out / "comparison.png")
    assert len(list(csv.reader(open(out / "history.csv")))) == m["metrics"]["iterations"] + 1


@pytest.mark.slow
def test_demo_quick(tmp_path):
    """The main job, quick: real AlexNet weights (fetched on first use), HOG, DSIFT."""
    out = tmp_path / "demo"
    t = time.time()
    r = run("demo", "--quick", "--out", out, "--quiet", timeout=600)
    assert r.returncode == 0, r.stderr
    html = (out / "index.html").read_text()
    for net in ("hog", "dsift", "alexnet"):
        assert f"<h2>{net}</h2>" in html
        check_png(out / net / "sweep.png")
    check_png(out / "contact_sheet.png")
    m = json.loads((out / "metrics.json").read_text())
    errors = {row["layer"]: row["relative_error"] for row in m["sections"]["alexnet"]}
    assert set(errors) == {"conv1", "pool2", "conv4", "pool5"}
    import re

    links = re.findall(r"(?:href|src)='([^']+)'", html)
    assert links and all((out / link).is_file() for link in links)
    assert errors["conv1"] < 0.8 and all(np.isfinite(list(errors.values())))
    print(f"demo --quick: {time.time() - t:.1f} s")


# --- error paths: one line, non-zero, no traceback -----------------------------------------------
def test_missing_image(tmp_path):
    r = run("invert", tmp_path / "missing.png", "--net", "hog", "--out", tmp_path / "o")
    assert_one_line_error(r, "missing.png", "no such file")


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("this is not a PNG")
    r = run("invert", bad, "--net", "hog", "--out", tmp_path / "o")
    assert_one_line_error(r, "cannot read image", "bad.png")


def test_huge_image_refused_with_the_limit(tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 8000)).save(huge)  # 64 megapixels, a tiny file
    r = run("invert", huge, "--net", "hog", "--out", tmp_path / "o")
    assert_one_line_error(r, "8000x8000", "limit of 50 megapixels", "--resize")


def test_unknown_net_lists_valid_ones(photo, tmp_path):
    r = run("invert", photo, "--net", "resnet", "--out", tmp_path / "o")
    assert_one_line_error(r, "unknown network 'resnet'", "alexnet", "hog", "dsift")


def test_unknown_layer_lists_valid_ones(photo, tmp_path, conv_only_weights):
    r = run("invert", photo, "--net", "alexnet", "--weights", conv_only_weights, "--layer",
            "conv9", "--out", tmp_path / "o")
    assert_one_line_error(r, "unknown layer 'conv9'", "conv1, relu1, pool1", "fc8")


def test_fc_layer_without_fc_weights(photo, tmp_path, conv_only_weights):
    r = run("invert", photo, "--net", "alexnet", "--weights", conv_only_weights, "--layer",
            "fc6", "--out", tmp_path / "o")
    assert_one_line_error(r, "fc6", "weights convert")


def test_unwritable_output_dir(photo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("invert", photo, "--net", "hog", "--out", blocker / "sub")
    assert_one_line_error(r, "output directory", "not writable")


def test_bad_option_values(photo, tmp_path):
    r = run("invert", photo, "--net", "hog", "--channels", "third-half", "--out", tmp_path / "o")
    assert_one_line_error(r, "first-half")
    r = run("invert", photo, "--net", "hog", "--device", "tpu", "--out", tmp_path / "o")
    assert_one_line_error(r, "unknown device")
    r = run("invert", photo, "--net", "hog", "--threads", 0, "--out", tmp_path / "o")
    assert r.returncode == 2  # argparse's usage, then its one error line
    assert r.stderr.splitlines()[-1].endswith("argument --threads: must be an integer >= 1, got 0")


def test_threads_without_threadpoolctl_is_a_one_line_error(photo, tmp_path):
    blocked = ("import sys; sys.modules['threadpoolctl'] = None; from minigrad.cli import main; "
               "sys.exit(main(sys.argv[1:]))")
    args = ["invert", photo, "--net", "hog", "--threads", 2, "--out", tmp_path / "o"]
    r = subprocess.run([sys.executable, "-c", blocked, *map(str, args)], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                       text=True, timeout=300)
    assert_one_line_error(r, "needs threadpoolctl", "minigrad[parallel]")
    assert not (tmp_path / "o").exists()  # refused before the run: nothing written


def test_gradcheck_and_weights_subcommands():
    r = run("gradcheck", "relu")
    assert r.returncode == 0, r.stderr
    assert "relu" in r.stdout and "pass" in r.stdout
    r = run("weights", "--help")
    assert r.returncode == 0 and "fetch" in r.stdout


def test_bench_is_the_benchmark_script_not_a_command():
    """The CLI does not import benchmarks/ (a source-checkout folder): `python -m benchmarks.run`
    is the documented way, and `minigrad bench` is an unknown command."""
    r = run("bench", "--help")
    assert r.returncode != 0 and "invalid choice: 'bench'" in r.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage: python -m benchmarks.run" in r.stdout and "--quick" in r.stdout
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--cases", "no-such-case",
                        "--no-memory"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "no-such-case" in (r.stdout + r.stderr)


def test_lr_option_and_divergence_warning(photo, tmp_path):
    out = tmp_path / "fast"
    r = run("invert", photo, "--net", "hog", "--iters", 10, "--lr", 1e12, "--out", out)
    assert r.returncode == 3, r.stderr  # the safeguard gave up: its own exit status
    m = json.loads((out / "metrics.json").read_text())
    assert m["options"]["lr"] == 1e12 and m["status"] == "non-finite"
    assert "diverged" in r.stderr and "non-finite" in r.stderr and "lower --lr" in r.stderr
    check_png(out / "reconstruction.png")  # the last finite x is still written
    r = run("invert", photo, "--net", "hog", "--preset", "ijcv16", "--iters", 3, "--lr", 5.0,
            "--out", tmp_path / "ijcv")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ijcv" / "metrics.json").read_text())
    assert m["options"]["eta"] == 5.0


# --- --device cuda (real CuPy, or the CuPy stand-in in the child without a GPU) ---------------
@pytest.fixture(scope="module")
def random_weights(tmp_path_factory, conv_only_weights):
    """Random conv-only weights per CNN, in the project's .npz format."""
    import models
    import weights

    paths = {"alexnet": conv_only_weights}
    for name in ("caffenet", "vgg16"):
        rep = models.get(name, weights=None)
        params = {k: v.numpy() for k, v in rep.params.items() if not k.startswith("fc")}
        paths[name] = tmp_path_factory.mktemp("w") / f"{name}-random.npz"
        weights.save_npz(paths[name], params, {"variant": name, "source": "random test weights"})
    return paths


@pytest.mark.parametrize("net, layer", [("alexnet", "conv3"), ("caffenet", "pool1"),
                                        ("vgg16", "conv1_2"), ("hog", None), ("hogb", None),
                                        ("dsift", None)])
def test_invert_on_cuda_writes_the_cpus_png(net, layer, photo, tmp_path, random_weights):
    extra = ["--weights", random_weights[net], "--layer", layer] if layer else []
    outs = {}
    for device in ("cpu", "cuda"):
        outs[device] = tmp_path / device
        r = run("invert", photo, "--net", net, *extra, "--iters", 4, "--device", device,
                "--out", outs[device], "--quiet", standin=STANDIN and device == "cuda")
        assert r.returncode == 0, r.stderr
        m = json.loads((outs[device] / "metrics.json").read_text())
        assert m["options"]["device"] == device
    cpu, gpu = (np.asarray(Image.open(outs[d] / "reconstruction.png")) for d in ("cpu", "cuda"))
    assert cpu.shape == gpu.shape
    if STANDIN:
        np.testing.assert_array_equal(gpu, cpu)  # the same PNG
    else:  # float32 on other hardware: a pixel may round the other way
        assert np.abs(gpu.astype(int) - cpu.astype(int)).max() <= 1
