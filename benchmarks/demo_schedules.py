"""How stable a cvpr15 schedule is at one AlexNet layer: the demo's image, several seeds and
both conv algorithms (a different float32 summation order).

    python -m benchmarks.demo_schedules [--layers conv5,pool5] [--schedules 100/200/100,200/300/100]

Each schedule is iterations per phase (lr × 1, 0.1, 0.01). Every (layer, schedule) runs with
seeds 0, 1 and 2 (``algorithm="auto"``) and with seed 0 and every conv forced to im2col; the
relative errors are printed with their spread. A schedule whose error moves a lot between
these runs has not converged: the demo should not show it (``minigrad/app/demo.py``).
"""
import argparse
import os
import time

import numpy as np

import models
from minigrad import images, samples
from minigrad.app.demo import CNN_SIZE
from minigrad.inversion import invert
from minigrad.ops import conv_algorithms

RUNS = [(0, "auto"), (1, "auto"), (2, "auto"), (0, "im2col")]


def parse_schedule(text):
    try:
        lengths = tuple(int(v) for v in text.split("/"))
    except ValueError:
        raise SystemExit(f"demo_schedules: a schedule is iterations per phase like 100/200/100, "
                         f"got {text!r}") from None
    if not lengths or min(lengths) < 1:
        raise SystemExit(f"demo_schedules: phases need at least 1 iteration, got {text!r}")
    return lengths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="conv5,pool5")
    p.add_argument("--schedules", default="100/200/100,200/300/100")
    p.add_argument("--image", default="astronaut", help="bundled sample name")
    args = p.parse_args(argv)
    schedules = [parse_schedule(s) for s in args.schedules.split(",")]
    rep = models.get("alexnet")
    image = images.resize_longest(np.asarray(samples.load(args.image)), CNN_SIZE)
    print(f"Command: `python -m benchmarks.demo_schedules --layers {args.layers} --schedules "
          f"{args.schedules}`; image {args.image} at {CNN_SIZE} px, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| layer | schedule | seed 0 | seed 1 | seed 2 | seed 0, im2col | max / min | "
          "s per run |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for layer in args.layers.split(","):
        for lengths in schedules:
            errors, t0 = [], time.perf_counter()
            for seed, algorithm in RUNS:
                with conv_algorithms.forced(algorithm):
                    result = invert(rep, image, layer, preset="cvpr15", seed=seed,
                                    lr_lengths=lengths)
                errors.append(result.metrics["relative_error"])
            seconds = (time.perf_counter() - t0) / len(RUNS)
            cells = " | ".join(f"{e:.3f}" for e in errors)
            print(f"| {layer} | {'/'.join(map(str, lengths))} | {cells} | "
                  f"{max(errors) / min(errors):.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
