"""The demo's index.html (minigrad/app/demo.py): every linked file exists, pictures shown at
>= 192 px, the HOG glyphs beside the inversion, settings as a table, error and status under
each tile, 'diverged' instead of a number."""
import html.parser
import os

import numpy as np
import pytest

from minigrad import images as im
from minigrad.app import demo


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.figures, self.tables, self.text, self.tag = [], 0, 0, [], None

    def handle_starttag(self, tag, attrs):
        a, self.tag = dict(attrs), tag
        self.links += [a[k] for k in ("href", "src") if k in a]
        self.figures += tag == "figure"
        self.tables += tag == "table"

    def handle_data(self, data):
        if self.tag != "style":
            self.text.append(data)


def row(layer, err, status="completed", backoffs=0):
    return {"layer": layer, "relative_error": err, "psnr": 12.0, "iterations": 200,
            "time_s": 1.0, "cpu_s": 1.0, "status": status, "lambda_tv": 1.0, "jitter": 1,
            "lr_backoffs": backoffs}


def fake_section(out, net, rows, glyphs=False):
    sub = os.path.join(out, net)
    os.makedirs(os.path.join(sub, "layers"))
    pic = np.random.default_rng(0).integers(0, 256, (224, 224, 3)).astype(np.uint8)
    im.save_png(os.path.join(sub, "original.png"), pic)
    for r in rows:
        im.save_png(os.path.join(sub, "layers", f"{r['layer']}.png"), pic)
    if glyphs:
        for name in ("original", "reconstruction"):
            im.save_png(os.path.join(sub, f"glyphs_{name}.png"), pic[:, :, 0])
    return net, sub, rows


def test_every_linked_file_exists_and_the_page_shows_what_it_should(tmp_path, capsys):
    out = str(tmp_path)
    sections = [fake_section(out, "hog", [row("hog", 0.25)], glyphs=True),
                fake_section(out, "alexnet", [row("conv1", 0.12, backoffs=1),
                                              row("pool5", 9.9, "non-finite")])]
    settings = demo.settings_for(False)
    demo.write_index(out, sections, False, 100.0, settings)
    page = open(os.path.join(out, "index.html")).read()
    p = Links()
    p.feed(page)
    assert p.links and all(os.path.isfile(os.path.join(out, link)) for link in p.links)
    for net, _, rows in sections:  # every per-layer image is linked
        for r in rows:
            assert f"{net}/layers/{r['layer']}.png" in p.links
    text = " ".join(p.text)
    assert p.tables == 1 and "{" not in text  # the settings: a table, not a Python dict
    assert "error 0.120 · completed · 1 back-off(s)" in text
    assert "error diverged · non-finite" in text and "9.9" not in text
    assert f"width:{demo.TILE}px" in page and demo.TILE >= 192
    order = [link for link in p.links if link.startswith("hog/") and "src" not in link]
    hog = [os.path.basename(link) for link in order[::2]]  # <a href> then <img src>
    assert hog.index("glyphs_original.png") == hog.index("original.png") + 1
    assert hog.index("glyphs_reconstruction.png") == hog.index("hog.png") + 1
    assert p.figures == 1 + 1 + 2 + 1 + 2  # hog: original, glyphs ×2, hog; alexnet: 1 + 2
    sheet = im.read_image(os.path.join(out, "contact_sheet.png"))[0]
    assert sheet.shape[1] >= 7 * 160  # one grid of 7 pictures in a row, no half-empty strips
    assert "hog hog" not in capsys.readouterr().out


def test_demo_settings_fit_the_budget():
    s = demo.settings_for(False)
    assert s["layers"] == demo.DEMO_LAYERS and set(s["schedules"]) == set(demo.DEMO_LAYERS) | {
        "hog", "dsift"}
    # the large-rate phase is never cut below the preset's 100 (a shorter one left noise)
    cnn = {k: v for k, v in s["schedules"].items() if k in demo.DEMO_LAYERS}
    assert all(v[0] >= 100 for v in cnn.values()) and tuple(cnn["conv5"]) == demo.LONG
    assert demo.settings_for(False, iters=50)["schedules"] is None


def test_loss_plot_ticks_are_round_numbers():
    assert im.nice_ticks(399) == [0, 100, 200, 300]
    assert im.nice_ticks(299) == [0, 50, 100, 150, 200, 250]
    assert im.nice_ticks(9) == [0, 2, 4, 6, 8] and im.nice_ticks(0) == [0]
    assert all(t % 200 == 0 for t in im.nice_ticks(799))


def test_demo_schedules_benchmark_refuses_malformed_schedules():
    from benchmarks.demo_schedules import parse_schedule

    assert parse_schedule("200/300/100") == (200, 300, 100)
    with pytest.raises(SystemExit, match="iterations per phase like 100/200/100, got '1x2'"):
        parse_schedule("1x2")
    with pytest.raises(SystemExit, match="phases need at least 1 iteration, got '100/0'"):
        parse_schedule("100/0")
