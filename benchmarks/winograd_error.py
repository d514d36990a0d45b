"""Float32 error of the Winograd convolution, output and input gradient, against float64.

    python -m benchmarks.winograd_error [--seeds 3]

For each tile size the automatic choice uses on AlexNet/VGG-sized layers, runs the conv with
float32 and with float64 data (the same float32-rounded input, weight and output gradient) and
prints the norm-wise relative error ‖y32 − y64‖ / ‖y64‖ of the output and of the input gradient,
the worst over the seeds, for im2col and for Winograd with each interpolation point set:
minigrad's (``winograd.points``) and the 0, ±1, ±2 of Lavin & Gray for F(4, 3).
"""
import argparse
import contextlib

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad.ops import winograd

LAYERS = [  # (label, input channels, output channels, size, kernel)
    ("F(4,3): VGG-16 conv3_2", 256, 256, 56, 3),
    ("F(4,3): VGG-16 conv1_2", 64, 64, 224, 3),
    ("F(2,3): AlexNet conv4 (forced)", 384, 256, 13, 3),
    ("F(3,5): AlexNet conv2", 64, 192, 27, 5),
]
LAVIN_GRAY_F43 = {6: (0, 1, -1, 2, -2)}


@contextlib.contextmanager
def point_sets(sets):
    """Run with winograd.POINT_SETS = sets (the caches of matrices cleared around it)."""
    previous = winograd.POINT_SETS
    winograd.POINT_SETS = sets
    winograd._MATRICES.clear()
    winograd.reflection.cache_clear()
    try:
        yield
    finally:
        winograd.POINT_SETS = previous
        winograd._MATRICES.clear()
        winograd.reflection.cache_clear()


def conv_and_gradient(x, w, gy, algorithm, k):
    xt = mg.Tensor(x, requires_grad=True)
    y = F.conv2d(xt, mg.Tensor(w), padding=k // 2, algorithm=algorithm)
    y.backward(gy)
    return y.data, xt.grad


def errors(C, O, size, k, algorithm, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, C, size, size)).astype(np.float32)
    w = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    gy = rng.standard_normal((1, O, size, size)).astype(np.float32)
    y32, g32 = conv_and_gradient(x, w, gy, algorithm, k)
    y64, g64 = conv_and_gradient(x.astype(np.float64), w.astype(np.float64),
                                 gy.astype(np.float64), "im2col", k)
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    return rel(y32, y64), rel(g32, g64)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    variants = [("im2col", "im2col", None), ("winograd, minigrad's points", "winograd", None),
                ("winograd, 0, ±1, ±2 for F(4,3)", "winograd", LAVIN_GRAY_F43)]
    print(f"Command: `python -m benchmarks.winograd_error --seeds {args.seeds}`\n")
    print("| layer | algorithm | output rel. error | input-gradient rel. error |")
    print("|---|---|---:|---:|")
    for label, C, O, size, k in LAYERS:
        for name, algorithm, sets in variants:
            if sets is not None and not label.startswith("F(4,3)"):
                continue
            with point_sets(winograd.POINT_SETS if sets is None else sets):
                worst = np.max([errors(C, O, size, k, algorithm, s) for s in range(args.seeds)],
                               axis=0)
            print(f"| {label} | {name} | {worst[0]:.2e} | {worst[1]:.2e} |", flush=True)
    print(f"\nminigrad's points: F(4,3) {', '.join(str(p) for p in winograd.points(6))}, ∞; "
          f"F(2,3) {', '.join(str(p) for p in winograd.points(4))}, ∞; "
          f"F(3,5) {', '.join(str(p) for p in winograd.points(7))}, ∞.")


if __name__ == "__main__":
    main()
