"""The gallery of IJCV16's other two natural pre-images, into docs/gallery/.

    python -m benchmarks.visualizations                 # every part, the paper's 300 iterations
    python -m benchmarks.visualizations --part conv3 --iters 300
    python -m benchmarks.visualizations --part caricature --out /tmp/gallery

Parts: ``conv3`` and ``conv5`` (16 channels each of torchvision AlexNet, activation
maximisation), ``vgg`` (8 channels of VGG-16's conv3_3, the last conv of block 3),
``caricature`` (two bundled photographs at relu3, relu4 and conv5, and the evolution GIF of
the first one at relu4). Each part writes its PNG (and GIF) and adds its record — command,
iterations, seconds, activations — to ``visualizations.json`` in the output folder.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import models
from minigrad import images as im
from minigrad import samples
from minigrad.app.movie import FrameRecorder
from minigrad.app.visualization import visualize
from minigrad.inversion.visualize import caricature

ROOT = Path(__file__).resolve().parents[1]
MAXIMISATIONS = {  # part -> (net, layer, channels)
    "conv3": ("alexnet", "conv3", list(range(16))),
    "conv5": ("alexnet", "conv5", list(range(16))),
    "vgg": ("vgg16", "conv3_3", list(range(8))),
}
CARICATURE_IMAGES, CARICATURE_LAYERS = ("astronaut", "chelsea"), ("relu3", "relu4", "conv5")
GIF_EVERY = 10


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def maximisation_part(part, iters, out):
    net, layer, chans = MAXIMISATIONS[part]
    rep = models.get(net)
    t0 = time.perf_counter()
    r = visualize(rep, layer, chans, iterations=iters, log=log)
    seconds = time.perf_counter() - t0
    m = r.metrics
    ratios = [a / mx for a, mx in zip(m["activation_per_restart"], m["max_activation"])]
    labels = [f"c{c} {q:.1f}x" for c, q in zip(chans, ratios)]
    name = f"maximise_{net}_{layer}.png"
    im.save_png(out / name, im.grid(r.image, labels, ncols=8, cell=128, title=(
        f"{net} {layer}: activation maximisation, IJCV16, {iters} iterations (label: "
        "activation / max over 8 natural images)")))
    log(f"{part}: {seconds:.0f} s, activation/max {min(ratios):.2f}..{max(ratios):.2f}")
    return {"file": name, "net": net, "layer": layer, "channels": chans, "iterations": iters,
            "seconds": seconds, "image_size": list(r.image[0].shape[:2]),
            "activation_over_max": ratios, "maxima_images": m["maxima_images"],
            "maxima_note": m["maxima_note"], "status": r.status}


def caricature_part(iters, out):
    rep = models.get("alexnet")
    tiles, labels, rows, t0 = [], [], [], time.perf_counter()
    for name in CARICATURE_IMAGES:
        image = samples.load(name)
        for layer in CARICATURE_LAYERS:
            movie = FrameRecorder(rep, GIF_EVERY) if (name, layer) == ("astronaut", "relu4") \
                else None
            r = caricature(rep, image, layer, iterations=iters, callback=movie)
            if not tiles or len(tiles) % (len(CARICATURE_LAYERS) + 1) == 0:
                tiles.append(r.original)
                labels.append(name)
            tiles.append(r.image)
            labels.append(f"{layer} x{r.metrics['enhancement']:.1f}")
            rows.append({"image": name, "layer": layer, "enhancement": r.metrics["enhancement"],
                         "seconds": r.wall_time, "status": r.status})
            log(f"caricature {name} {layer}: <w, phi> {r.metrics['enhancement']:.2f}, "
                f"{r.wall_time:.0f} s")
            if movie is not None:
                movie.finish(r)
                movie.write(str(out), name="evolution_caricature_astronaut_relu4")
    im.save_png(out / "caricatures_alexnet.png", im.grid(
        tiles, labels, ncols=len(CARICATURE_LAYERS) + 1, cell=192, title=(
            f"alexnet caricatures, IJCV16, {iters} iterations (label: <w, phi(x)>, 1 for the "
            "photograph)")))
    return {"file": "caricatures_alexnet.png", "gif": "evolution_caricature_astronaut_relu4.gif",
            "gif_every": GIF_EVERY, "iterations": iters, "runs": rows,
            "seconds": time.perf_counter() - t0}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", *MAXIMISATIONS, "caricature"], default="all")
    ap.add_argument("--iters", type=int, default=300, help="iterations (the paper: 300)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "visualizations.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    parts = [*MAXIMISATIONS, "caricature"] if args.part == "all" else [args.part]
    for part in parts:
        entry = caricature_part(args.iters, args.out) if part == "caricature" \
            else maximisation_part(part, args.iters, args.out)
        entry["command"] = (f"python -m benchmarks.visualizations --part {part} "
                            f"--iters {args.iters}")
        record = json.loads(record_path.read_text()) if record_path.is_file() else record
        record[part] = entry
        im.save_json(record_path, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
