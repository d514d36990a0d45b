"""Per-op timings, minigrad (NumPy) against PyTorch CPU, forward plus input gradient.

    python -m benchmarks.bench_ops [--repeat 30] [--threads 2]

Shapes are CaffeNet's at a 227x227 input. Weights are constants (no weight gradients), as in
an inversion. Prints a Markdown table: median time per call and the ratio minigrad / torch.
"""
import argparse
import os
import time

import numpy as np

import minigrad as mg
from minigrad import F


def median_time(fn, repeat, warmup=3):
    for _ in range(warmup):
        fn()
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    import torch
    import torch.nn.functional as TF

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, fn, consts in cases(rng):
        x0 = rng.standard_normal(shape).astype(np.float32) * 50
        run_mg = _minigrad_step(fn, x0, consts)
        run_torch = _torch_step(torch, TF, fn, x0, consts)
        t_mg, t_torch = median_time(run_mg, args.repeat), median_time(run_torch, args.repeat)
        rows.append((name, t_mg * 1e3, t_torch * 1e3, t_mg / t_torch))
    print(f"threads: {args.threads}, numpy {np.__version__}, torch {torch.__version__}\n")
    print("| op (fwd + input grad) | minigrad ms | torch ms | ratio |")
    print("|---|---:|---:|---:|")
    for name, a, b, r in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {r:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
