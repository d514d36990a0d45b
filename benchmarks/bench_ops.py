"""Per-op timings, minigrad (NumPy) against PyTorch CPU, forward plus input gradient.

    python -m benchmarks.bench_ops [--repeat 20] [--rounds 3] [--threads 2] [--only conv]
                                   [--parallel]

Shapes are CaffeNet's at a 227x227 input and VGG-16's at 224x224. Weights are constants (no
weight gradients), as in an inversion. Each implementation is timed in blocks: an untimed
warm-up of at least 0.2 s (OpenBLAS's worker threads spin for ~0.1 s after a NumPy GEMM and
slow down whatever runs next), then ``--repeat`` calls; ``--rounds`` rounds, the median of
the per-round medians reported. Prints a Markdown table: the conv algorithm minigrad's
``algorithm="auto"`` picked, minigrad's time, the same with every conv forced to im2col, torch's
time, and the ratios. ``--parallel``: minigrad runs in ``backend.parallel(--threads)`` (BLAS at
one thread, the ops' work split over worker threads: ``invert(threads=N)``).
"""
import argparse
import os
import time

import numpy as np

import minigrad as mg
from minigrad import F
from minigrad.ops import conv_algorithms

WARMUP_S = 0.2


def median_time(fn, repeat, warmup_s=WARMUP_S):
    t_end = time.perf_counter() + warmup_s
    calls = 0
    while calls < 2 or time.perf_counter() < t_end:
        fn()
        calls += 1
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def caffenet_stack(F_, x, W):
    """conv1…pool5 of CaffeNet (pool before norm), written once for both libraries."""
    y = F_.max_pool2d(F_.relu(F_.conv2d(x, W[0], W[1], stride=4)), 3, 2, ceil_mode=True)
    y = F_.local_response_norm(y, 5, 1e-4, 0.75, 1.0)
    y = F_.max_pool2d(F_.relu(F_.conv2d(y, W[2], W[3], padding=2, groups=2)), 3, 2,
                      ceil_mode=True)
    y = F_.local_response_norm(y, 5, 1e-4, 0.75, 1.0)
    y = F_.relu(F_.conv2d(y, W[4], W[5], padding=1))
    y = F_.relu(F_.conv2d(y, W[6], W[7], padding=1, groups=2))
    y = F_.relu(F_.conv2d(y, W[8], W[9], padding=1, groups=2))
    return F_.max_pool2d(y, 3, 2, ceil_mode=True)


def cases(rng):
    """(name, input shape, function(F, x, consts), constant arrays)."""
    w = lambda *s: (rng.standard_normal(s) * 0.01).astype(np.float32)
    stack_consts = [w(96, 3, 11, 11), w(96), w(256, 48, 5, 5), w(256), w(384, 256, 3, 3), w(384),
                    w(384, 192, 3, 3), w(384), w(256, 192, 3, 3), w(256)]
    return [
        ("conv1 11x11/4", (1, 3, 227, 227), lambda F_, x, c: F_.conv2d(x, c[0], c[1], stride=4),
         [w(96, 3, 11, 11), w(96)]),
        ("conv2 5x5 g2", (1, 96, 27, 27),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=2, groups=2),
         [w(256, 48, 5, 5), w(256)]),
        ("conv3 3x3", (1, 256, 13, 13), lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1),
         [w(384, 256, 3, 3), w(384)]),
        ("conv4 3x3 g2", (1, 384, 13, 13),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1, groups=2),
         [w(384, 192, 3, 3), w(384)]),
        ("pool1 3/2 ceil", (1, 96, 55, 55),
         lambda F_, x, c: F_.max_pool2d(x, 3, 2, ceil_mode=True), []),
        ("pool2 3/2 ceil", (1, 256, 27, 27),
         lambda F_, x, c: F_.max_pool2d(x, 3, 2, ceil_mode=True), []),
        ("norm1 LRN 5", (1, 96, 27, 27),
         lambda F_, x, c: F_.local_response_norm(x, 5, 1e-4, 0.75, 1.0), []),
        ("norm2 LRN 5", (1, 256, 13, 13),
         lambda F_, x, c: F_.local_response_norm(x, 5, 1e-4, 0.75, 1.0), []),
        ("vgg conv1_1 3x3 C=3", (1, 3, 224, 224),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1), [w(64, 3, 3, 3), w(64)]),
        ("vgg conv1_2 3x3", (1, 64, 224, 224),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1), [w(64, 64, 3, 3), w(64)]),
        ("vgg conv2_2 3x3", (1, 128, 112, 112),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1), [w(128, 128, 3, 3), w(128)]),
        ("vgg conv3_3 3x3", (1, 256, 56, 56),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1), [w(256, 256, 3, 3), w(256)]),
        ("vgg conv4_3 3x3", (1, 512, 28, 28),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1), [w(512, 512, 3, 3), w(512)]),
        ("vgg conv5_3 3x3", (1, 512, 14, 14),
         lambda F_, x, c: F_.conv2d(x, c[0], c[1], padding=1), [w(512, 512, 3, 3), w(512)]),
        ("vgg pool1 2/2", (1, 64, 224, 224), lambda F_, x, c: F_.max_pool2d(x, 2, 2), []),
        ("fc6 linear", (1, 9216), lambda F_, x, c: F_.linear(x, c[0], c[1]),
         [w(4096, 9216), w(4096)]),
        ("fc7 linear", (1, 4096), lambda F_, x, c: F_.linear(x, c[0], c[1]),
         [w(4096, 4096), w(4096)]),
        ("conv1…pool5 stack", (1, 3, 227, 227), lambda F_, x, c: caffenet_stack(F_, x, c),
         stack_consts),
    ]


def _minigrad_step(fn, x0, consts):
    """Forward, then backward of a ones gradient into the input only (weights constant)."""
    mg_consts = [mg.tensor(c) for c in consts]
    x = mg.tensor(x0, requires_grad=True)

    def step():
        x.grad = None
        y = fn(F, x, mg_consts)
        y.backward(np.ones(y.shape, np.float32))

    return step


def _torch_step(torch, TF, fn, x0, consts):
    t_consts = [torch.from_numpy(c) for c in consts]
    x = torch.from_numpy(x0.copy()).requires_grad_(True)

    def step():
        x.grad = None
        y = fn(TF, x, t_consts)
        y.backward(torch.ones_like(y))

    return step


def _algorithms(fn, x0, consts):
    """The labels of the conv algorithms one minigrad forward of fn ran."""
    with mg.no_grad(), conv_algorithms.recorded() as log:
        fn(F, mg.tensor(x0), [mg.tensor(c) for c in consts])
    labels = [entry[3] for entry in log]
    return labels[0] if len(set(labels)) == 1 else f"{len(labels)} convs" if labels else "–"


def _time_case(fn, x0, consts, torch, TF, args):
    """Median over rounds of (auto, im2col-only, torch), each timed as one block per round."""
    run_mg = _minigrad_step(fn, x0, consts)
    run_torch = _torch_step(torch, TF, fn, x0, consts)
    threads = args.threads if args.parallel else None

    def run_im2col():
        with conv_algorithms.forced("im2col"):
            run_mg()

    def timed(f):
        with mg.backend.parallel(threads if f is not run_torch else None):
            return median_time(f, args.repeat)

    rounds = [[timed(f) for f in (run_mg, run_im2col, run_torch)] for _ in range(args.rounds)]
    return np.median(np.array(rounds), axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", default=None, help="only the ops whose name contains this")
    parser.add_argument("--parallel", action="store_true",
                        help="minigrad in backend.parallel(--threads): BLAS at one thread")
    args = parser.parse_args(argv)
    mg.backend.keep_freed_memory()  # as invert does; set before either library runs
    import torch
    import torch.nn.functional as TF

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, fn, consts in cases(rng):
        x0 = rng.standard_normal(shape).astype(np.float32) * 50
        if args.only and args.only not in name:
            continue
        t_mg, t_im2col, t_torch = _time_case(fn, x0, consts, torch, TF, args)
        rows.append((name, _algorithms(fn, x0, consts), t_mg * 1e3, t_im2col * 1e3,
                     t_torch * 1e3))
    print(f"threads: {args.threads} (BLAS: OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
          f"{'; minigrad in backend.parallel' if args.parallel else ''}), numpy {np.__version__}, "
          f"torch {torch.__version__}, load average {'%.1f %.1f %.1f' % os.getloadavg()}\n")
    print("| op (fwd + input grad) | algorithm | minigrad ms | im2col-only ms | torch ms "
          "| mg/torch | im2col-only/torch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, algo, a, b, c in rows:
        print(f"| {name} | {algo} | {a:.2f} | {b:.2f} | {c:.2f} | {a / c:.2f} | {b / c:.2f} |")
    return rows


if __name__ == "__main__":
    main()
