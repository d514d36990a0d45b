"""The loop's safeguard (minigrad/inversion/safeguard.py): back-offs where a rate diverges,
bit-identical runs where it does not, the records, and the give-up."""
import math

import numpy as np
import pytest

import minigrad as mg
import models
from minigrad import F
from minigrad.app.progress import Progress
from minigrad.inversion import invert
from minigrad.inversion.optim import AdaGradMomentum, MomentumSGD
from minigrad.inversion.safeguard import GROWTH_FACTOR, MAX_BACKOFFS, WINDOW, Safeguard
from models.base import Representation


class Tiny(Representation):
    """conv3x3(3->8) relu conv3x3(8->8), fixed random weights, 24x24 input; ``nan_from``: the
    forward returns NaN from that call on (the target code is call 1)."""

    name, kind, channels, input_size = "tiny", "cnn", 3, (24, 24)
    layers = ("conv1", "relu1", "conv2")

    def __init__(self, nan_from=None):
        r = np.random.default_rng(0)
        self.w1 = mg.tensor(r.standard_normal((8, 3, 3, 3)) * 0.05)
        self.w2 = mg.tensor(r.standard_normal((8, 8, 3, 3)) * 0.1)
        self.calls, self.nan_from = 0, nan_from

    def forward(self, x, layer):
        self.calls += 1
        y = F.conv2d(x, self.w1, None, padding=1)
        if layer != "conv1":
            y = F.conv2d(F.relu(y), self.w2, None, padding=1)
        if self.nan_from is not None and self.calls >= self.nan_from:
            y = y * float("nan")
        return y

    def preprocess(self, image):
        return mg.tensor((np.asarray(image, np.float32) - 120.0).transpose(2, 0, 1)[None])

    def deprocess(self, x):
        a = np.asarray(getattr(x, "data", x))
        a = a[0] if a.ndim == 4 else a
        return np.clip(np.rint(a.transpose(1, 2, 0) + 120), 0, 255).astype(np.uint8)

    def receptive_field(self, layer):
        return {"conv1": (3, 1), "relu1": (3, 1), "conv2": (5, 1)}[layer]

    def to(self, device):
        return self


def photo(h=24, w=24):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([128 + 90 * np.sin(xx / 5), 128 + 90 * np.cos(yy / 7),
                     128 + 50 * np.sin((xx + yy) / 9)], -1).astype(np.uint8)


def same_run(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    assert a.history == b.history and a.metrics["lr_backoffs"] == b.metrics["lr_backoffs"] == 0


# --- never where the schedule is stable ------------------------------------------------------
@pytest.mark.parametrize("preset", ["cvpr15", "ijcv16"])
def test_bit_identical_on_caffenet_with_random_weights(preset):
    rep = models.get("caffenet", weights=None)  # seeded He-initialised weights
    img = np.asarray(np.random.default_rng(0).integers(0, 256, (227, 227, 3)), np.uint8)
    img = (img // 2 + photo(227, 227) // 2).astype(np.uint8)
    on = invert(rep, img, "conv2", preset=preset, iters=40, seed=1)
    off = invert(rep, img, "conv2", preset=preset, iters=40, seed=1, safeguard=False)
    same_run(on, off)
    assert on.status == "completed"
    assert set(on.history["lr"]) <= {v for v, _ in on.options["schedule"]}


@pytest.mark.parametrize("preset", ["cvpr15", "ijcv16"])
def test_bit_identical_on_hog(preset):
    rep = models.get("hog")
    img = photo(64, 64)
    on = invert(rep, img, preset=preset, iters=120, seed=2)
    off = invert(rep, img, preset=preset, iters=120, seed=2, safeguard=False)
    same_run(on, off)


# --- backs off where it diverges ---------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow the safeguard undoes
@pytest.mark.parametrize("sync_every", [1, 10])
def test_a_diverging_rate_is_backed_off_and_completes(sync_every):
    rep, img = Tiny(), photo()
    off = invert(rep, img, "conv2", iters=200, lr=40.0, sync_every=sync_every, safeguard=False)
    assert off.status == "non-finite"  # the rate diverges without the safeguard ...
    on = invert(rep, img, "conv2", iters=200, lr=40.0, sync_every=sync_every)
    m, h = on.metrics, on.history
    assert on.status == "completed" and 1 <= m["lr_backoffs"] <= MAX_BACKOFFS  # ... not with it
    assert len(m["lr_backoff_steps"]) == m["lr_backoffs"] and "back-off" in on.message
    assert h["step"] == list(range(200)) and m["iterations"] == 200  # redone steps, no gaps
    assert all(math.isfinite(e) for e in h["energy"]) and np.all(np.isfinite(on.x))
    sched = [v for v, n in on.options["schedule"] for _ in range(n)]
    assert any(lr < s for lr, s in zip(h["lr"], sched))  # history's lr: the rates used
    assert all(lr <= s for lr, s in zip(h["lr"], sched))
    assert m["relative_error"] < 0.5 * off.metrics["relative_error"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_safeguard_gives_up_after_a_bounded_number_of_backoffs():
    rep = Tiny(nan_from=6)  # NaN whatever the rate: nothing to rescue
    r = invert(rep, photo(), "conv2", iters=60)
    assert r.status == "non-finite" and r.metrics["lr_backoffs"] == MAX_BACKOFFS
    assert f"after {MAX_BACKOFFS} learning-rate back-offs" in r.message
    assert np.all(np.isfinite(r.x))


def test_failure_rule():
    g = Safeguard(MomentumSGD())
    assert g.failure([5.0, 4.0, 3.0, 2.9, 3.5], 0) is None  # falling, small swings
    e = [5.0, 4.0, 3.0, 2.0, 2.5, 2.4, 2.0 * GROWTH_FACTOR * 1.01]
    i, reason = g.failure(e, 2)
    assert i == 6 and "grew" in reason
    assert g.failure(e[:6] + [float("nan")], 6) == (6, "non-finite")
    # the reference is the minimum over the WINDOW entries before: older ones do not count
    far = [0.01] + [1.0] * WINDOW + [50.0]
    assert g.failure(far, 1) is None


@pytest.mark.parametrize("make", [lambda: MomentumSGD(0.9), lambda: AdaGradMomentum(0.9, 0.9)])
def test_optimiser_state_round_trip(make):
    r = np.random.default_rng(0)
    x0, g1, g2 = (r.standard_normal((1, 3, 4, 4)) for _ in range(3))
    opt, x = make(), x0.copy()
    opt.step(x, g1, 0.1)
    saved, x_saved = opt.get_state(), x.copy()
    opt.step(x, g2, 0.1)
    x_next = x.copy()
    opt.step(x, g1, 0.1)  # moves the buffers on: the snapshot must not follow
    opt.set_state(saved)
    x = x_saved.copy()
    opt.step(x, g2, 0.1)
    np.testing.assert_array_equal(x, x_next)


def test_progress_line_shows_the_backoffs():
    class Out:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    out = Out()
    p = Progress(10, "tiny:conv2", stream=out)
    terms = {"energy": 1.0, "loss": 0.5, "tv": 0.1, "alpha": 0.1, "lr": 4e-4}
    p(0, None, dict(terms, backoffs=0))
    assert "back-off" not in out.text
    p(9, None, dict(terms, backoffs=2))
    assert "lr=0.0004 (2 back-offs)" in out.text


# --- the command line ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_invert_exits_3_and_sweep_shows_diverged_when_the_safeguard_gives_up(tmp_path, capsys):
    import json

    from minigrad import cli
    from minigrad import images as im

    path = tmp_path / "in.png"
    im.save_png(str(path), photo(48, 48))
    args = [str(path), "--net", "hog", "--iters", "20", "--lr", "1e12", "--quiet"]
    rc = cli.main(["invert", *args, "--out", str(tmp_path / "inv")])
    meta = json.loads((tmp_path / "inv" / "metrics.json").read_text())
    assert rc == cli.EXIT_DIVERGED == 3 and meta["status"] == "non-finite"
    assert meta["metrics"]["lr_backoffs"] == MAX_BACKOFFS
    assert "diverged" in capsys.readouterr().err
    assert cli.main(["sweep", *args, "--out", str(tmp_path / "sw")]) == 0
    table = capsys.readouterr().out
    assert "diverged" in table.splitlines()[1] and "nan" not in table.lower()


def test_a_backoff_is_in_metrics_json(tmp_path):
    import json

    from minigrad import cli
    from minigrad import images as im

    path = tmp_path / "in.png"
    im.save_png(str(path), photo(48, 48))
    with np.errstate(over="ignore", invalid="ignore"):
        rc = cli.main(["invert", str(path), "--net", "hog", "--iters", "40", "--lr", "4",
                       "--quiet", "--out", str(tmp_path / "o")])
    meta = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert rc == 0 and meta["status"] == "completed" and meta["metrics"]["lr_backoffs"] >= 1
    assert len(meta["metrics"]["lr_backoff_steps"]) == meta["metrics"]["lr_backoffs"]
    rows = (tmp_path / "o" / "history.csv").read_text().splitlines()
    lrs = [float(r.split(",")[1]) for r in rows[1:]]
    sched = [v for v, n in meta["options"]["schedule"] for _ in range(n)]
    assert len(lrs) == len(sched) and any(a < b for a, b in zip(lrs, sched))  # capped rates


def test_paper_report_shows_a_diverged_layer_as_diverged():
    from benchmarks.paper import report

    details = [{"layer": "pool2", "config": "cvpr15", "status": "non-finite"},
               {"layer": "pool2", "config": "ijcv16", "status": "completed"}]
    assert report._curve_cell(188.5, details, "cvpr15") == "*diverged*"
    assert report._curve_cell(0.3125, details, "ijcv16") == "0.312"
