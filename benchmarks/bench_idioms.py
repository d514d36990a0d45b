"""The NumPy idioms the HOG/HOGb/DSIFT ops chose between, timed on their own arrays.

    python -m benchmarks.bench_idioms [--size 510] [--repeat 20]

One grey image of ``--size``² pixels in float32 (HOG's interior gradient at 512 px is 510²),
and its 18-bin vote volume. Each pair is what
``models/features_ops.py`` used before and uses now; each is timed in blocks after an untimed
call (``bench_ops.median_time``), and the ratio printed.
"""
import argparse
import math
import os

import numpy as np

from benchmarks.bench_ops import median_time
from models.features_ops import _block_products, _padded_blocks, angle


def pairs(size, rng):
    """(label, before, after) callables on HOG-sized arrays."""
    gx = (rng.standard_normal((1, 1, size, size)) * 50).astype(np.float32)
    gy = (rng.standard_normal((1, 1, size, size)) * 50).astype(np.float32)
    theta = np.arctan2(gy, gx)
    two_pi = np.float32(2 * math.pi)
    votes = rng.standard_normal((1, 18, size, size)).astype(np.float32)
    wt = rng.standard_normal((2, 8)).astype(np.float32)
    nb = (size + 13) // 8

    def angle_before():
        t = np.arctan2(gy, gx)
        return np.where(t < 0, t + two_pi, t)

    return [
        ("angle in [0, 2π): arctan2 + where / arctan of the quotient + arithmetic",
         angle_before, lambda: angle(gx, gy)),
        ("select: where(θ < 0, θ + 2π, θ) / θ + 2π·(θ < 0)",
         lambda: np.where(theta < 0, theta + two_pi, theta),
         lambda: theta + two_pi * (theta < 0)),
        ("pooling blocks: pad the whole volume / read inner blocks in place",
         lambda: wt @ _padded_blocks(votes, 5, 8, nb, 8, "zero"),
         lambda: _block_products(wt, votes, 5, 8, nb, 8, "zero")),
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=510)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    print(f"Command: `python -m benchmarks.bench_idioms --size {args.size} --repeat "
          f"{args.repeat}`; load average {os.getloadavg()[0]:.1f}\n")
    print("| idiom (before / after) | before ms | after ms | after / before |")
    print("|---|---:|---:|---:|")
    for label, before, after in pairs(args.size, np.random.default_rng(0)):
        t0, t1 = median_time(before, args.repeat), median_time(after, args.repeat)
        print(f"| {label} | {1e3 * t0:.2f} | {1e3 * t1:.2f} | {t1 / t0:.2f} |", flush=True)


if __name__ == "__main__":
    main()
