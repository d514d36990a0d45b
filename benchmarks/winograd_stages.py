"""Where a Winograd layer's time goes: each stage of ``winograd.correlate``'s forward timed on
its own, at one BLAS thread, as each worker of the parallel mode runs it.

    python -m benchmarks.winograd_stages [--repeat 10] [--rounds 3]

The layers are VGG-16's F(4,3) convs and the AlexNets' F(3,5) conv2, on one image in float32.
The stages are those of one band of tile rows, run over the bands that ``correlate`` cuts and
summed (``winograd.band_rows``):
- pad: the zero-padded copy of the input;
- gather: the overlapping α×α tiles copied out;
- Bᵀ d B: the input transform, two small GEMMs;
- GEMM: the α² products U[ξν] @ V[ξν];
- Aᵀ M A: the inverse transform;
- untile: the transposing copy back to (N, O, h, w);
- store: the crop and the bias, written into the output.

For each layer the script prints:
- the milliseconds per stage, each timed in blocks (``bench_ops.median_time``) over
  ``--rounds`` rounds, the median of the rounds;
- the GEMM's rate against a one-thread 1024² SGEMM (this machine's BLAS peak);
- "GEMM only": the share of the layer's time left if every other stage were free;
- torch's forward at one thread when torch is installed, and both ratios to it: the whole
  layer's and the GEMM's alone. The GEMM alone bounds what any rewrite of the other stages
  could reach.
A last row sums VGG-16's Winograd convs up to conv3_3, the layers of ``run.py``'s vgg16:conv3_3
case but conv1_1 (im2col), ReLU and pooling.
"""
import argparse
import os
import sys

import numpy as np

from benchmarks.bench_ops import median_time
from benchmarks.profile_step import rerun_with_blas_threads
from benchmarks.roofline import sgemm_gflops
from minigrad import backend
from minigrad.ops import winograd

# (name, in channels, out channels, size, kernel, groups)
LAYERS = [("vgg16 conv1_2", 64, 64, 224, 3, 1), ("vgg16 conv2_1", 64, 128, 112, 3, 1),
          ("vgg16 conv2_2", 128, 128, 112, 3, 1), ("vgg16 conv3_1", 128, 256, 56, 3, 1),
          ("vgg16 conv3_3", 256, 256, 56, 3, 1), ("vgg16 conv4_3", 512, 512, 28, 3, 1),
          ("alexnet conv2", 64, 192, 27, 5, 1), ("caffenet conv2", 96, 256, 27, 5, 2)]
# VGG-16's Winograd convs up to conv3_3 (conv1_1, 3 channels in, runs im2col), as layers of the
# table: conv3_2 has conv3_3's shape
TO_CONV3_3 = {"vgg16 conv1_2": 1, "vgg16 conv2_1": 1, "vgg16 conv2_2": 1, "vgg16 conv3_1": 1,
              "vgg16 conv3_3": 2}
STAGES = ("pad", "gather", "Bᵀ d B", "GEMM", "Aᵀ M A", "untile", "store")


def stage_functions(C, O, size, r, groups, rng):
    """(stage name -> a function running that stage over every band of one forward, the GEMM's
    FLOPs, the layer: its x, W, bias, padding, groups and the output y the stages wrote).
    Each stage's inputs are computed beforehand from the stage before (a size-preserving
    padding); the stages together must give ``winograd.correlate``'s output, bit for bit, or
    this raises."""
    x = rng.standard_normal((1, C, size, size), dtype=np.float32)
    W = rng.standard_normal((O, C // groups, r, r), dtype=np.float32) / float(C * r * r) ** 0.5
    bias = rng.standard_normal((1, O, 1, 1), dtype=np.float32)
    m, p = winograd.tile_size(r, size), r // 2
    U, alpha, th = winograd.transform_weights(W, groups, m), m + r - 1, -(-size // m)
    AT, BT = winograd._matrices(m, r, x.dtype, np, False)
    pad = th * m + r - 1 - size - p
    x_pad = winograd._pad_or_crop(x, p, pad, p, pad)
    bands = backend.split_range(th, -(-th // winograd.band_rows(alpha, 1, C, th, th)))
    rows = [x_pad[:, :, t0 * m:t1 * m + r - 1] for t0, t1 in bands]
    d = [winograd.gather_tiles(xr, m, r, t1 - t0, th) for xr, (t0, t1) in zip(rows, bands)]
    v = [winograd.transform_tiles(di, BT).reshape(alpha * alpha, 1, groups, C // groups, -1)
         for di in d]
    M = [U[:, None] @ vi for vi in v]
    z = [winograd.inverse_transform(Mi, AT) for Mi in M]
    tiles = [winograd.untile(zi, t1 - t0, th).reshape(1, O, (t1 - t0) * m, th * m)
             for zi, (t0, t1) in zip(z, bands)]
    y = np.empty((1, O, size, size), dtype=x.dtype)
    run = {
        "pad": lambda: winograd._pad_or_crop(x, p, pad, p, pad),
        "gather": lambda: [winograd.gather_tiles(xr, m, r, t1 - t0, th)
                           for xr, (t0, t1) in zip(rows, bands)],
        "Bᵀ d B": lambda: [winograd.transform_tiles(di, BT) for di in d],
        "GEMM": lambda: [U[:, None] @ vi for vi in v],
        "Aᵀ M A": lambda: [winograd.inverse_transform(Mi, AT) for Mi in M],
        "untile": lambda: [winograd.untile(zi, t1 - t0, th) for zi, (t0, t1) in zip(z, bands)],
        "store": lambda: [winograd._store(y[:, :, t0 * m:min(t1 * m, size)], ti, bias)
                          for ti, (t0, t1) in zip(tiles, bands)],
    }
    run["store"]()
    expected = winograd.correlate(x, ((p, p), (p, p)), U, m, r, groups, bias=bias.ravel())
    if not np.array_equal(y, expected):  # the stages must be correlate's, split up
        raise AssertionError(f"winograd_stages: the stages of {C}->{O} @{size} do not add up "
                             "to winograd.correlate")
    gemm_flops = 2 * alpha * alpha * O * (C // groups) * th * th
    layer = {"x": x, "W": W, "bias": bias.ravel(), "padding": p, "groups": groups, "y": y}
    return run, gemm_flops, layer


def torch_forward_ms(x, W, padding, groups, repeat):
    """torch's conv2d forward at one thread, in ms; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    xt, Wt = torch.from_numpy(x), torch.from_numpy(W)
    with torch.no_grad():
        return 1e3 * median_time(lambda: torch.nn.functional.conv2d(
            xt, Wt, padding=padding, groups=groups), repeat)


def measure(args):
    backend.keep_freed_memory()
    rng = np.random.default_rng(0)
    peak = sgemm_gflops(1024)
    rows = []
    for name, C, O, size, r, groups in LAYERS:
        run, gemm_flops, layer = stage_functions(C, O, size, r, groups, rng)
        rounds = [[1e3 * median_time(run[s], args.repeat) for s in STAGES]
                  for _ in range(args.rounds)]
        ms = np.median(rounds, axis=0)
        torch_ms = torch_forward_ms(layer["x"], layer["W"], layer["padding"], groups,
                                    args.repeat)
        rows.append((name, f"{C}->{O} @{size} F({winograd.tile_size(r, size)},{r})", ms,
                     gemm_flops / (ms[STAGES.index("GEMM")] * 1e-3) / 1e9, torch_ms))
    return peak, rows


def vgg_sum(rows):
    """The row of VGG-16's Winograd convs to conv3_3 (``TO_CONV3_3``), summed; None without
    torch's times."""
    picked = [(TO_CONV3_3[name], ms, torch_ms) for name, _, ms, _, torch_ms in rows
              if name in TO_CONV3_3]
    if any(torch_ms is None for _, _, torch_ms in picked):
        return None
    return (sum(k * ms for k, ms, _ in picked), sum(k * t for k, _, t in picked))


def table(peak, rows):
    out = ["| layer | " + " | ".join(f"{s} ms" for s in STAGES) + " | total ms | GEMM GFLOP/s "
           "(% of peak) | GEMM only | torch ms | total / torch | GEMM / torch |",
           "|---|" + "---:|" * (len(STAGES) + 6)]
    for name, shape, ms, rate, torch_ms in rows:
        total, gemm = ms.sum(), ms[STAGES.index("GEMM")]
        vs_torch = (f"{torch_ms:.2f} | {total / torch_ms:.2f} | {gemm / torch_ms:.2f}"
                    if torch_ms else "– | – | –")
        out.append(f"| {name} {shape} | " + " | ".join(f"{t:.2f}" for t in ms) +
                   f" | {total:.2f} | {rate:.0f} ({100 * rate / peak:.0f} %) | "
                   f"{100 * gemm / total:.0f} % | {vs_torch} |")
    summed = vgg_sum(rows)
    if summed is not None:
        ms, torch_ms = summed
        total, gemm = ms.sum(), ms[STAGES.index("GEMM")]
        out.append("| **VGG-16's Winograd convs to conv3_3** | " +
                   " | ".join(f"{t:.1f}" for t in ms) + f" | {total:.1f} | | "
                   f"{100 * gemm / total:.0f} % | {torch_ms:.1f} | {total / torch_ms:.2f} | "
                   f"{gemm / torch_ms:.2f} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rerun_with_blas_threads("benchmarks.winograd_stages", 1, argv)
    peak, rows = measure(args)
    print(f"Command: `python -m benchmarks.winograd_stages --repeat {args.repeat} --rounds "
          f"{args.rounds}`; load average {os.getloadavg()[0]:.1f}; one BLAS thread, SGEMM "
          f"1024² {peak:.0f} GFLOP/s\n")
    print(table(peak, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
