"""Winograd's banding: forward + input gradient of VGG-16-sized F(4,3) layers for several band
sizes (``winograd.BAND_BUDGET``, ``winograd.MIN_GEMM_TILES``), serially and in the parallel mode.

    python -m benchmarks.bench_bands [--threads 2] [--repeat 6] [--rounds 2]

Each setting is timed as a block (an untimed call first, then ``--repeat`` calls; the minimum),
``--rounds`` times in turn; the table gives the median over rounds, in ms. "serial": BLAS at
``--threads`` threads, one Python thread; "parallel": ``backend.parallel(--threads)``, BLAS at one
thread and the bands on the workers. The settings are the module's constants, restored after.
"""
import argparse
import os
import sys
import time

from benchmarks.profile_step import rerun_with_blas_threads

LAYERS = ((64, 224), (128, 112), (256, 56), (512, 28))  # (channels in = out, size): VGG-16
SETTINGS = ((2 ** 18, 64), (2 ** 18, 128), (2 ** 17, 128), (2 ** 18, 256))


def layer_step(channels, size, rng):
    """Forward + input gradient of a 3×3, padding-1 conv by ``winograd.correlate``."""
    import numpy as np

    from minigrad.ops import winograd

    x = rng.standard_normal((1, channels, size, size), dtype=np.float32)
    weight = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.05
    U = winograd.transform_weights(weight, 1, 4)
    pads = ((1, 1), (1, 1))

    def step():
        y = winograd.correlate(x, pads, U, 4, 3, 1)
        return winograd.correlate(y, pads, U.swapaxes(2, 3), 4, 3, 1, reflected=True)
    return step


def block_ms(step, repeat):
    step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def measure(args):
    import numpy as np

    from minigrad import backend
    from minigrad.ops import winograd

    backend.keep_freed_memory()
    rng = np.random.default_rng(0)
    saved = winograd.BAND_BUDGET, winograd.MIN_GEMM_TILES
    rows = []
    try:
        for channels, size in LAYERS:
            step = layer_step(channels, size, rng)
            for mode in ("serial", "parallel"):
                rounds = []
                with backend.parallel(args.threads if mode == "parallel" else None):
                    for _ in range(args.rounds):
                        times = []
                        for budget, tiles in SETTINGS:
                            winograd.BAND_BUDGET, winograd.MIN_GEMM_TILES = budget, tiles
                            times.append(block_ms(step, args.repeat))
                        rounds.append(times)
                rows.append((f"{channels}->{channels} @{size}", mode, np.median(rounds, axis=0)))
    finally:
        winograd.BAND_BUDGET, winograd.MIN_GEMM_TILES = saved
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    rerun_with_blas_threads("benchmarks.bench_bands", args.threads, argv)
    rows = measure(args)
    print(f"Command: `python -m benchmarks.bench_bands --threads {args.threads} --repeat "
          f"{args.repeat} --rounds {args.rounds}`; load average {os.getloadavg()[0]:.1f}\n")
    heads = " | ".join(f"{b >> 10}k / {t} tiles" for b, t in SETTINGS)
    print(f"| layer (fwd + dx) | mode | {heads} |")
    print("|---|---|" + "---:|" * len(SETTINGS))
    for layer, mode, times in rows:
        print(f"| {layer} | {mode} | " + " | ".join(f"{t:.1f}" for t in times) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
