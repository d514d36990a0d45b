"""The papers' evaluation script (benchmarks/paper) end to end, in its smallest configuration.

``--tiny`` uses only the bundled sample images (no network) and falls back on seeded random
CNN weights when the real ones are not cached; it runs every section (Table 1, both CNN
curves, every figure) with a few iterations each.
"""
import json
import math
import re

import pytest
from PIL import Image

from benchmarks.paper import run as paper


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    results = paper.main(["--tiny", "--out", str(out)])
    return out, results


def test_report_and_results_written(tiny):
    out, results = tiny
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "## Table 1 (CVPR15)" in report
    for published in ("28.10 ± 7.9", "10.67 ± 5.1", "10.89 ± 7.5", "66.20 ± 13.7"):
        assert published in report
    assert "python -m benchmarks.paper --tiny" in report
    assert re.search(r"Wall time: \d+ s", report)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["mode"] == "tiny" and on_disk["seconds"] > 0
    assert len(on_disk["images"]) == 2  # the bundled samples only
    assert on_disk["inversions"] == results["inversions"] > 0


def test_table1_errors_finite_and_bounded(tiny):
    _, results = tiny
    methods = [r["method"] for r in results["table1"]]
    assert methods[:3] == ["HOG", "HOGb", "DSIFT"]
    for row in results["table1"]:
        assert row["normaliser"] > 0 and row["normaliser_squared"] > 0
        assert len(row["per_image"]) == 2
        for key in ("err", "err_sq", "rel"):
            assert math.isfinite(row[key]["mean"]) and 0 <= row[key]["mean"] <= 300
            assert math.isfinite(row[key]["std"]) and row[key]["std"] >= 0
        for p in row["per_image"]:
            assert p["status"] == "completed"


def test_cnn_curves_cover_every_configuration(tiny):
    _, results = tiny
    for net in ("alexnet", "vgg16"):
        res = results[net]
        assert list(res["curves"]) == ["cvpr15"] + [f"ijcv16 C={c}" for c in (1, 20, 100, 300)]
        for values in res["curves"].values():
            assert len(values) == len(res["layers"]) >= 2
            assert all(math.isfinite(v) and 0 <= v <= 10 for v in values)
        assert all(0 <= d["naturalness"] <= 1 for d in res["details"])


def test_per_layer_tables_show_naturalness(tiny):
    out, results = tiny
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    d = results["alexnet"]["details"][0]
    assert "relative error / naturalness" in report
    assert f"{d['relative_error']:.3f} / {d['naturalness']:.2f}" in report


def test_figures_are_small_pngs_linked_from_the_report(tiny):
    out, results = tiny
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    expected = {"table1", "curves_alexnet", "curves_vgg16", "strip_alexnet", "strip_vgg16",
                "restarts", "lambda_tv", "beta", "window", "halves"}
    assert expected <= set(results["figures"])
    for fig in results["figures"].values():
        path = out / fig["file"]
        assert f"]({fig['file']})" in report
        assert 0 < path.stat().st_size <= 300_000
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 50 and im.height > 50
            im.verify()
