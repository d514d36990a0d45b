"""The Winograd conv in both layouts: NCHW (minigrad's) against channels-last (NHWC).

    python -m benchmarks.bench_layout [--repeat 10] [--rounds 3] [--threads 2]

Forward plus input gradient of F(4,3) on VGG-16's 3×3 layers, three ways:
- **NCHW**: ``winograd.correlate``, as the networks run it;
- **NHWC inside**: the same pipeline on channels-last arrays (written here, not in minigrad):
  the tile gather then copies contiguous runs of C channels and the output tiles land in
  contiguous runs of O, so it is what a network kept channels-last throughout would pay;
- **NHWC at NCHW boundaries**: the same, with the transposing copies in and out that each conv
  would need if only the convs went channels-last.
Every variant computes the same numbers (checked against NCHW before timing). Each is timed in
blocks, an untimed warm-up of at least 0.2 s first (``bench_ops.median_time``), ``--rounds``
rounds; the median of the rounds is printed.
"""
import argparse
import os

import numpy as np

from benchmarks.bench_ops import median_time
from minigrad import backend
from minigrad.ops import winograd

LAYERS = [("conv1_2", 64, 64, 224), ("conv2_2", 128, 128, 112), ("conv3_2", 256, 256, 56),
          ("conv4_2", 512, 512, 28)]


def correlate_nhwc(x, pad, U, m, r, reflected=False):
    """winograd.correlate on x (N, H, W, C) and U (α², 1, Og, Cg) -> (N, oh, ow, Og)."""
    N, H, W, C = x.shape
    alpha = m + r - 1
    oh, ow = H + 2 * pad - r + 1, W + 2 * pad - r + 1
    th, tw = -(-oh // m), -(-ow // m)
    x_pad = np.zeros((N, th * m + r - 1, tw * m + r - 1, C), dtype=x.dtype)
    x_pad[:, pad:pad + H, pad:pad + W] = x
    O = U.shape[2]
    UT = U[:, 0].swapaxes(1, 2)  # (α², C, O): the GEMM is tiles × C @ C × O
    AT, BT = winograd._matrices(m, r, x.dtype, np, reflected)
    y = np.empty((N, th * m, tw * m, O), dtype=x.dtype)
    band = winograd.band_rows(alpha, N, C, th, tw)
    band = -(-th // -(-th // band))  # as many bands, of even sizes
    for t0 in range(0, th, band):
        t1 = min(t0 + band, th)
        rows = x_pad[:, t0 * m:t1 * m + r - 1]
        sN, sH, sW, sC = rows.strides
        tiles = backend.as_strided(rows, (alpha, alpha, N, t1 - t0, tw, C),
                                   (sH, sW, sN, sH * m, sW * m, sC))
        d = np.ascontiguousarray(tiles).reshape(alpha, -1)
        v = BT @ (BT @ d).reshape(alpha, alpha, -1)  # (α, α, N·tiles·C)
        M = v.reshape(alpha * alpha, -1, C) @ UT  # (α², N·tiles, O)
        z = (AT @ M.reshape(alpha, -1)).reshape(m, alpha, -1)
        out = (AT @ z).reshape(m, m, N, t1 - t0, tw, O).transpose(2, 3, 0, 4, 1, 5)
        y[:, t0 * m:t1 * m] = out.reshape(N, (t1 - t0) * m, tw * m, O)
    return y[:, :oh, :ow]


def variants(x_nchw, U):
    """name -> step(): forward and input gradient (the reflected forward U), as in invert."""
    x_nhwc = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    Ub = U.swapaxes(2, 3)

    def nchw():
        y = winograd.correlate(x_nchw, ((1, 1), (1, 1)), U, 4, 3, 1)
        return winograd.correlate(y, ((1, 1), (1, 1)), Ub, 4, 3, 1, True)

    def nhwc():
        y = correlate_nhwc(x_nhwc, 1, U, 4, 3)
        return correlate_nhwc(y, 1, Ub, 4, 3, True)

    def boundaries():
        y = correlate_nhwc(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)), 1, U, 4, 3)
        y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))  # back to NCHW for the next op
        g = correlate_nhwc(np.ascontiguousarray(y.transpose(0, 2, 3, 1)), 1, Ub, 4, 3, True)
        return np.ascontiguousarray(g.transpose(0, 3, 1, 2))

    return {"NCHW": nchw, "NHWC inside": nhwc, "NHWC at NCHW boundaries": boundaries}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    backend.keep_freed_memory()
    rng = np.random.default_rng(0)
    print(f"Command: `python -m benchmarks.bench_layout --repeat {args.repeat} --rounds "
          f"{args.rounds} --threads {args.threads}`; load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| layer | NCHW ms | NHWC inside ms | NHWC at NCHW boundaries ms | inside / NCHW | "
          "boundaries / NCHW |")
    print("|---|---:|---:|---:|---:|---:|")
    with threadpool_limits(args.threads, user_api="blas"):
        for name, O, C, size in LAYERS:
            x = rng.standard_normal((1, C, size, size)).astype(np.float32)
            W = (rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
            steps = variants(x, winograd.transform_weights(W, 1, 4))
            ref = steps["NCHW"]()
            for label, step in steps.items():
                out = step()
                out = out if out.shape == ref.shape else out.transpose(0, 3, 1, 2)
                np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(),
                                           err_msg=label)
            times = {k: [] for k in steps}
            for _ in range(args.rounds):
                for label, step in steps.items():  # in blocks, never alternating per call
                    times[label].append(median_time(step, args.repeat))
            ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
            a, b, c = ms["NCHW"], ms["NHWC inside"], ms["NHWC at NCHW boundaries"]
            print(f"| {name} {C}->{O} @{size} | {a:.1f} | {b:.1f} | {c:.1f} | {b / a:.2f} | "
                  f"{c / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
