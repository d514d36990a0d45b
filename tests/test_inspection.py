"""Gradients you can see: ``invert --inspect``, the graph's SVG/HTML, ``gradcheck --show``."""
import contextlib
import io
import json
import shutil
import stat

import numpy as np
import pytest
from PIL import Image

import minigrad as mg
import models
from minigrad import F, cli, gradcheck_all
from minigrad.app import inspection
from minigrad.inversion.presets import get_preset


@pytest.fixture(scope="module")
def grey():
    yy, xx = np.mgrid[0:40, 0:48]
    return (128 + 90 * np.sin(xx / 5.0) * np.cos(yy / 6.0)).astype(np.uint8)


@pytest.fixture(scope="module")
def inspected(tmp_path_factory, grey):
    """`minigrad invert grey.png --net hog --iters 12 --inspect`: (status, out/inspect)."""
    work = tmp_path_factory.mktemp("inspect")
    Image.fromarray(grey).save(work / "grey.png")
    with contextlib.redirect_stderr(io.StringIO()):
        status = cli.main(["invert", str(work / "grey.png"), "--net", "hog", "--iters", "12",
                           "--out", str(work / "out"), "--inspect"])
    return status, work / "out" / "inspect"


def read_png(path):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_inspect_writes_pictures_chart_graphs_and_index(inspected):
    status, out = inspected
    assert status == 0
    record = json.loads((out / "inspect.json").read_text())
    steps = [entry["step"] for entry in record["iterations"]]
    assert steps == [0, 11]  # the first iteration and the last one
    index = (out / "index.html").read_text()
    for step in steps:
        for name in (f"grad-iter{step:04d}.png", f"graph-iter{step:04d}.html"):
            assert (out / name).is_file() and name in index
        grads = np.load(out / f"gradients-iter{step:04d}.npz")
        assert sorted(grads.files) == ["alpha", "loss", "tv"]
        assert all(grads[k].shape == (1, 40, 48) and np.isfinite(grads[k]).all()
                   for k in grads.files)
        entry = record["iterations"][steps.index(step)]
        assert entry["grad_norm"]["tv"] == pytest.approx(float(np.linalg.norm(grads["tv"])))
    assert "layer-norms.png" in index
    chart = read_png(out / "layer-norms.png")
    assert chart.shape[0] > 100 and chart.std() > 0


def test_each_gradient_picture_is_not_constant(inspected):
    _, out = inspected
    for step in (0, 11):
        sheet = read_png(out / f"grad-iter{step:04d}.png")
        cell = 200
        h, w = round(40 * cell / 48), cell  # the 40x48 image scaled to fit a 200 px cell
        for i in range(4):  # the iterate, then the data term, TV and the alpha-norm
            x0 = inspection.SHEET_PAD + i * (cell + inspection.SHEET_PAD)
            panel = sheet[inspection.SHEET_HEAD:inspection.SHEET_HEAD + h, x0:x0 + w]
            assert panel.reshape(-1, 3).std(axis=0).max() > 1, f"panel {i} is constant"
        legend = sheet[inspection.SHEET_HEAD + h:].reshape(-1, 3).astype(int)
        red = (legend[:, 0] > 200) & (legend[:, 2] < 60)
        blue = (legend[:, 2] > 200) & (legend[:, 0] < 60)
        assert red.any() and blue.any()  # the colour bar spans both signs


def test_the_shared_scale_shows_terms_decades_apart():
    big = np.linspace(-1e3, 1e3, 64).reshape(1, 8, 8)
    small = np.linspace(-1e-3, 2e-3, 64).reshape(1, 8, 8)
    big[0, 0, 0] = small[0, 0, 0] = -1e-3
    top, floor = inspection.shared_scale({"a": big, "b": small})
    assert top == pytest.approx(1e3) and floor == pytest.approx(2e-4)
    tiles = inspection.gradient_tiles({"a": big, "b": small}, (top, floor))
    assert all(len(np.unique(t.reshape(-1, 3), axis=0)) > 10 for t in tiles.values())
    # one scale: the same value has the same colour in both tiles, and it is bluish
    assert tiles["a"][0, 0].tolist() == tiles["b"][0, 0].tolist()
    r, g, b = tiles["b"][0, 0].tolist()
    assert b == 255 and r == g < 255
    white = inspection.diverging(np.zeros(1))
    assert white.tolist() == [[255, 255, 255]]


@pytest.fixture(scope="module")
def hog_inspector(grey):
    return inspection.Inspector("unused", models.get("hog"), grey, "hog", "cvpr15", {"iters": 5})


def test_tv_gradient_of_a_constant_image_is_zero(hog_inspector):
    x = np.full((1, 1, 40, 48), 37.0, dtype=np.float32)
    g = inspection.term_gradients(hog_inspector.pb, x)
    assert np.all(g["tv"] == 0)
    w = get_preset("cvpr15").term_weights(hog_inspector.pb.opts)
    np.testing.assert_allclose(g["alpha"], w.alpha * 6 * 37.0 ** 5, rtol=1e-5)


def test_term_gradients_match_the_energy_written_from_its_formula(hog_inspector, grey):
    """C‖Φ(x) − Φ0‖²/‖Φ0‖² + (λα Σx⁶ + λTV Σ(dx² + dy²))/(2σ²), composed from F ops."""
    pb, rep = hog_inspector.pb, models.get("hog")
    x = np.random.default_rng(3).standard_normal((1, 1, 40, 48)).astype(np.float32) * 30
    got = inspection.term_gradients(pb, x)
    o = pb.opts
    phi0 = rep.forward(rep.preprocess(grey), "hog").data
    terms = {
        "loss": lambda t: o["loss_weight"] * F.sum((rep.forward(t, "hog") - phi0) ** 2)
        / float((phi0 ** 2).sum()),
        "alpha": lambda t: F.sum(t ** 6) * (o["lambda_alpha"] / 2 / o["sigma"] ** 2),
        "tv": lambda t: (F.sum((t[..., :, 1:] - t[..., :, :-1]) ** 2)
                         + F.sum((t[..., 1:, :] - t[..., :-1, :]) ** 2))
        * (o["lambda_tv"] / 2 / o["sigma"] ** 2),
    }
    for name, fn in terms.items():
        t = mg.tensor(x, requires_grad=True)
        fn(t).backward()
        scale = np.abs(t.grad).max()
        np.testing.assert_allclose(got[name], t.grad[0], atol=1e-4 * scale, err_msg=name)


def test_layer_norms_name_every_layer_and_start_at_the_image_gradient(grey):
    rep = models.get("alexnet", weights=None)
    image = np.stack([grey] * 3, -1)
    insp = inspection.Inspector("unused", rep, image, "conv2", "cvpr15", {"iters": 3})
    x = insp.first[1]
    rows = inspection.layer_norms(insp.pb, x)
    assert [name for name, _ in rows] == ["image", "conv1", "relu1", "pool1", "conv2"]
    assert all(v > 0 for _, v in rows)
    data_grad = inspection.term_gradients(insp.pb, x)["loss"]
    assert rows[0][1] == pytest.approx(float(np.linalg.norm(data_grad)), rel=1e-4)
    hog_rows = inspection.layer_norms(
        inspection.Inspector("unused", models.get("hog"), grey, "hog").pb,
        np.zeros((1, 1, 40, 48), np.float32) + np.arange(48, dtype=np.float32) ** 1.5)
    names = [name for name, _ in hog_rows]
    assert names[0] == "image" and "OrientationBinning" in names
    assert names[-1] == "UocttiNormalize (hog)"


def test_the_first_recorded_iterate_is_the_loops_starting_canvas(hog_inspector, grey):
    seen = []
    mg.invert(models.get("hog"), grey, "hog", iters=5,
              callback=lambda step, x, terms: seen.append((step, np.array(x))))
    np.testing.assert_array_equal(seen[0][1], hog_inspector.first[1])  # HOG: unit scale


# --- the graph as SVG or HTML -----------------------------------------------------------------
def small_graph():
    x = mg.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    x.name = "pixels"
    y = (F.relu(x) ** 2).sum()
    g = mg.graph(y)
    y.backward()
    return g


def test_graph_html_is_self_contained_with_every_node_and_norm():
    g = small_graph()
    page = g.to_html("t<i>tle")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for forbidden in ("<script", "http:", "https:", "src=", "<link"):
        assert forbidden not in page
    assert "t&lt;i&gt;tle" in page  # escaped
    assert page.count("<tr>") == 1 + len(g.nodes)
    for name in ("Sum", "Pow", "ReLU", "input pixels"):
        assert f"<td>{name}</td>" in page
    # the input's |grad| is ‖2·relu(x)‖ = ‖(2, 0, 6, 1)‖
    assert f"{np.linalg.norm([2.0, 0.0, 6.0, 1.0]):.4g}" in page


def test_render_writes_svg_with_dot_and_html_without(tmp_path, monkeypatch):
    g = small_graph()
    cat = shutil.which("cat")
    empty = tmp_path / "nodot"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RuntimeError, match="dot.*not installed"):
        g.to_svg()
    assert g.render(tmp_path / "g") == f"{tmp_path / 'g'}.html"
    assert (tmp_path / "g.html").read_text().startswith("<!DOCTYPE html>")
    fake = tmp_path / "fakedot"
    fake.mkdir()
    script = fake / "dot"  # stands in for Graphviz: echoes the DOT it got inside an <svg>
    script.write_text(f"#!/bin/sh\necho '<svg xmlns=\"http://www.w3.org/2000/svg\">'\n"
                      f"{cat}\necho '</svg>'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake))
    path = g.render(tmp_path / "h")
    assert path == f"{tmp_path / 'h'}.svg"
    text = (tmp_path / "h.svg").read_text()
    assert text.startswith("<svg") and "digraph minigrad" in text and "|grad|" in text


def test_real_graphviz_svg():
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    svg = small_graph().to_svg()
    assert "<svg" in svg and "ReLU" in svg


# --- gradcheck --show -----------------------------------------------------------------------
class BrokenCube(mg.Function):
    """y = x³ with a planted error: element (2, 1) of the gradient is 3x² + 0.5."""

    def forward(self, x):
        self.x = x
        return x * x * x

    def backward(self, gy):
        gx = 3 * self.x * self.x * gy
        gx[2, 1] += 0.5
        return gx


def test_show_finds_the_planted_error_and_names_the_element(capsys):
    x = np.random.default_rng(0).standard_normal((3, 4))
    ok = gradcheck_all.show(BrokenCube.apply, x, name="BrokenCube")
    out = capsys.readouterr().out
    assert ok is False
    assert "worst element (2, 1)" in out and "FAIL" in out
    worst = [line for line in out.splitlines() if line.endswith("<- worst")]
    assert len(worst) == 1 and worst[0].split()[:2] == ["(2,", "1)"]
    analytic, numeric, err = (float(v) for v in worst[0].split()[2:5])
    assert err == pytest.approx(0.5, abs=1e-6) and analytic - numeric == pytest.approx(0.5, 1e-5)
    assert "--- BrokenCube.forward" in out and "gx[2, 1] += 0.5" in out


def test_cli_show_on_a_broken_case_and_on_a_good_op(capsys, monkeypatch):
    broken = ("broken_cube", BrokenCube.apply, [lambda rng: rng.standard_normal((3, 4))])
    monkeypatch.setattr(gradcheck_all, "CASES", gradcheck_all.CASES + [broken])
    assert cli.main(["gradcheck", "broken_cube", "--show"]) == 1
    out = capsys.readouterr().out
    assert "worst element (2, 1)" in out
    assert cli.main(["gradcheck", "relu", "--show"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out.splitlines()[1] and "<- worst" in out
    assert "--- ReLU.forward  (minigrad/ops/" in out and "def backward(self, gy):" in out


def test_cli_show_needs_an_op_and_a_known_one(capsys):
    assert cli.main(["gradcheck", "--show"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--show needs an op name" in err[0]
    assert cli.main(["gradcheck", "no_such_op", "--show"]) == 2
    assert "no op matches 'no_such_op'" in capsys.readouterr().out


def test_compare_gradients_on_a_correct_op_is_the_closed_form():
    from minigrad.gradcheck import compare_gradients

    x = np.random.default_rng(1).standard_normal((2, 5))
    v = np.random.default_rng(0).standard_normal((2, 5))  # gradcheck's v for seed 0
    (c,) = compare_gradients(lambda t: F.exp(t) * t, x)
    assert c.ok and c.shape == (2, 5) and c.input == 0
    np.testing.assert_allclose(c.analytic, v * np.exp(x) * (1 + x), rtol=1e-12)
    np.testing.assert_allclose(c.numeric, c.analytic, rtol=1e-6, atol=1e-8)
