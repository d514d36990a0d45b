"""Relative error and time per layer, with the real weights, and the README gallery.

    python -m benchmarks.bench_layers [--image astronaut] [--iters N] [--gallery docs/gallery]

Inverts the bundled sample at every AlexNet layer conv1…pool5 (torchvision's ImageNet conv
weights) with the cvpr15 and ijcv16 presets, and HOG, HOGb and DSIFT with cvpr15, each at the
preset's full schedule unless --iters is given. Prints a Markdown table (relative error, PSNR,
wall time, time per iteration), writes it between markers in benchmarks/RESULTS.md, and saves
the gallery PNGs the README shows: the cvpr15 layer strip, HOG against its inversion, and four
restarts from pool5.
"""
import argparse
import os
import platform
import time

import numpy as np

import minigrad
import models
from minigrad import images, samples
from minigrad.tensor import Tensor, no_grad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALEXNET_LAYERS = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3",
                  "conv4", "relu4", "conv5", "relu5", "pool5")
BEGIN, END = "<!-- BEGIN benchmarks/bench_layers.py -->", "<!-- END benchmarks/bench_layers.py -->"


def run_one(rep, image, layer, preset, iters, **options):
    overrides = {"iters": iters} if iters else {}
    r = minigrad.invert(rep, image, layer, preset=preset, **overrides, **options)
    n = r.metrics["iterations"]
    return r, {"net": rep.name, "layer": layer, "preset": preset, "iters": n,
               "rel": r.metrics["relative_error"], "psnr": r.metrics.get("psnr", float("nan")),
               "time": r.wall_time, "ms_per_iter": 1e3 * r.wall_time / max(n, 1),
               "status": r.status}


def table(rows):
    lines = ["| net | layer | preset | iterations | relative error | PSNR dB | time s | ms/iter |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        flag = "" if r["status"] == "completed" else f" ({r['status']})"
        lines.append(f"| {r['net']} | {r['layer']} | {r['preset']} | {r['iters']} | "
                     f"{r['rel']:.3f}{flag} | {r['psnr']:.1f} | {r['time']:.1f} | "
                     f"{r['ms_per_iter']:.1f} |")
    return "\n".join(lines)


def write_section(path, body):
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    section = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with images.atomic_open(path, "w") as f:
        f.write(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="astronaut", help="bundled sample name")
    ap.add_argument("--iters", type=int, help="iterations per run (default: the preset's)")
    ap.add_argument("--gallery", default=os.path.join(ROOT, "docs", "gallery"))
    ap.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    args = ap.parse_args(argv)
    image = samples.load(args.image)
    os.makedirs(args.gallery, exist_ok=True)
    t0 = time.perf_counter()
    rows, strip, strip_labels = [], [], []

    alexnet = models.get("alexnet")
    for preset in ("cvpr15", "ijcv16"):
        for layer in ALEXNET_LAYERS:
            r, row = run_one(alexnet, image, layer, preset, args.iters)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
            if preset == "cvpr15":
                strip.append(r.image)
                strip_labels.append(f"{layer} {row['rel']:.2f}")
    original = alexnet.deprocess(alexnet.preprocess(image))
    images.save_png(os.path.join(args.gallery, "alexnet_layers.png"), images.grid(
        [original] + strip, ["original"] + strip_labels, ncols=7, cell=128,
        title="AlexNet (torchvision weights), cvpr15: reconstruction per layer "
              "(label: relative error)"))

    hog_row = None
    for name in ("hog", "hogb", "dsift"):
        rep = models.get(name)
        r, row = run_one(rep, image, rep.layers[0], "cvpr15", args.iters)  # grey inside
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
        if name == "hog":
            hog_row = (rep, r)
    rep, r = hog_row
    with no_grad():
        glyphs_orig = rep.render(rep.forward(rep.preprocess(image), "hog").data)
        glyphs_rec = rep.render(rep.forward(Tensor(r.x), "hog").data)
    images.save_png(os.path.join(args.gallery, "hog_inversion.png"), images.grid(
        [r.original, glyphs_orig, r.image, glyphs_rec],
        ["original", "its HOG", f"HOG inversion {r.metrics['relative_error']:.2f}",
         "HOG of the inversion"], ncols=4, cell=192, title="HOG (cvpr15 preset)"))

    r, row = run_one(alexnet, image, "pool5", "cvpr15", args.iters, restarts=4)
    rows.append({**row, "layer": "pool5, 4 restarts"})
    print(table([rows[-1]]).splitlines()[-1], flush=True)
    images.save_png(os.path.join(args.gallery, "pool5_restarts.png"), images.grid(
        [original] + list(r.image), ["original"] + [f"restart {i + 1}" for i in range(4)],
        ncols=5, cell=160, title="AlexNet pool5, four restarts (cvpr15)"))

    total = time.perf_counter() - t0
    command = "python -m benchmarks.bench_layers" + (f" --iters {args.iters}" if args.iters
                                                     else "")
    body = (f"## Relative error and time per layer (benchmarks/bench_layers.py)\n\n"
            f"Command: `{command}`  \n"
            f"Date: {time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores "
            f"({platform.processor() or platform.machine()}), NumPy {np.__version__}, "
            f"minigrad {minigrad.__version__}; total {total:.0f} s.  \n"
            f"Image: the bundled `{args.image}` sample (AlexNet: RGB at 224×224, torchvision's "
            f"ImageNet conv weights; HOG/HOGb/DSIFT: grey at its own "
            f"{image.shape[0]}×{image.shape[1]}). Each run is one `minigrad.invert` call, "
            f"seed 0; time is its wall time, including computing the target code.\n\n"
            + table(rows) + "\n\nGallery: `docs/gallery/` (shown in the README).")
    print("\n" + body)
    write_section(args.results, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
