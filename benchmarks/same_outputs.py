"""Bit-identity check for refactors: run fixed-seed inversions and save or compare their outputs.

    python -m benchmarks.same_outputs --save before.npz      # on the old code
    python -m benchmarks.same_outputs --compare before.npz   # on the new code: exit 1 on any change
    python -m benchmarks.same_outputs --compare before.npz --conv im2col   # without Winograd

Cases: alexnet conv3 and pool5 under both presets (the real weights when cached, else seeded
random ones, recorded in the file), hog and dsift under cvpr15. Every case compares the final
iterate x, the uint8 image(s) and the whole energy history, bit for bit. Also restarts,
window, channels and jitter (ijcv16) cases.
"""
import argparse
import sys

import numpy as np

import minigrad
import models
from minigrad import samples

CASES = [("alexnet", "conv3", "cvpr15", {}), ("alexnet", "pool5", "cvpr15", {}),
         ("alexnet", "conv3", "ijcv16", {}), ("alexnet", "pool5", "ijcv16", {}),
         ("hog", "hog", "cvpr15", {}), ("dsift", "dsift", "cvpr15", {}),
         ("hog", "hog", "ijcv16", {}),
         ("alexnet", "relu4", "cvpr15", {"restarts": 2, "window": 5}),
         ("alexnet", "conv4", "ijcv16", {"restarts": 2, "channels": "first-half"})]


def run_cases(iters):
    image = np.asarray(samples.load("astronaut"))
    small = image[::4, ::4].copy()  # HOG/DSIFT at 128 px keeps the check short
    out = {}
    for net, layer, preset, extra in CASES:
        try:
            rep = models.get(net)
        except Exception:  # noqa: BLE001 - no cached weights: seeded random ones
            rep = models.get(net, weights=None)
        target = image if rep.kind == "cnn" else small
        r = minigrad.invert(rep, target, layer, preset=preset, iters=iters, seed=3,
                            **extra)
        key = f"{net}-{layer}-{preset}" + "".join(f"-{k}={v}" for k, v in extra.items())
        out[key + "/x"] = r.x
        out[key + "/image"] = np.asarray(r.image)
        out[key + "/energy"] = np.asarray(r.history["energy"])
        print(f"{key}: relative error {r.metrics['relative_error']:.6f}, status {r.status}, "
              f"{r.wall_time:.1f} s", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", metavar="NPZ")
    g.add_argument("--compare", metavar="NPZ")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--conv", default="auto", help="force a conv algorithm (e.g. im2col: the "
                   "algorithm of the code before Winograd)")
    args = p.parse_args(argv)
    from minigrad.ops import conv_algorithms

    with conv_algorithms.forced(args.conv):
        out = run_cases(args.iters)
    if args.save:
        np.savez(args.save, **out)
        print(f"wrote {args.save}")
        return 0
    ref = np.load(args.compare)
    diffs = [k for k in sorted(set(ref.files) | set(out))
             if k not in ref.files or k not in out or not np.array_equal(ref[k], out[k])]
    for k in diffs:
        print(f"DIFFERS: {k}")
    print(f"{len(out) - len(diffs)}/{len(out)} arrays bit-identical")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
