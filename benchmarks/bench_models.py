"""Whole networks, minigrad (NumPy) against PyTorch CPU: forward + input gradient per target layer.

    python -m benchmarks.bench_models [--repeat 10] [--nets caffenet,alexnet,...] [--no-rss]

Each network gets random full weights (He-uniform, fc included; NOT pretrained: timings only),
and the PyTorch network is built from the same arrays, layer for layer. One step is what an
inversion iteration does to the network: forward to the target layer (conv5, or fc8) and
back-propagate a fixed random gradient to the input image; the weights are constants (no weight
gradients in either library). Median after warm-up, one image at the network's input size.
Both libraries use the same thread count: torch.set_num_threads(N), N being what NumPy's BLAS
uses (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, else the number of cores).

Peak RSS of one AlexNet fc8 inversion step (forward + input backward) is measured in a fresh
child process per library: the RSS once the weights are loaded, then the high-water mark over
a few steps after resetting it (Linux /proc/self/clear_refs).
"""
import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np

import minigrad as mg
import models
from models.cnn import FC, LRN, Conv, MaxPool, ReLU

NETS = ("caffenet", "caffe-alexnet", "alexnet", "vgg16")


def blas_threads():
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def median_times(fns, repeat, warmup=2):
    """Median seconds per call of each function, calls interleaved (fn0, fn1, fn0, ...) so that
    background load on a shared machine hits every library alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times]


def torch_network(model):
    """The same network in torch.nn, from the minigrad model's layer list and weights."""
    import torch
    from torch import nn

    mods = []
    for m in model.modules():
        if isinstance(m, Conv):
            t = nn.Conv2d(m.cin, m.cout, m.k, m.stride, m.pad, groups=m.groups)
        elif isinstance(m, MaxPool):
            t = nn.MaxPool2d(m.k, m.stride, ceil_mode=m.ceil_mode)
        elif isinstance(m, LRN):
            t = nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
        elif isinstance(m, ReLU):
            t = nn.ReLU()
        elif isinstance(m, FC):
            t = nn.Linear(m.cin, m.cout)
            if m.flatten:
                pool = nn.AdaptiveAvgPool2d(m.pool) if m.pool else nn.Identity()
                t = nn.Sequential(pool, nn.Flatten(), t)
        else:
            raise TypeError(f"no torch equivalent for {type(m).__name__}")
        params = [p for p in t.parameters()]
        if params:
            # torch gets its own (writable) copies of the same values
            params[0].data = torch.from_numpy(np.array(model.params[f"{m.name}.weight"].numpy()))
            params[1].data = torch.from_numpy(np.array(model.params[f"{m.name}.bias"].numpy()))
            for p in params:
                p.requires_grad_(False)
        mods.append(t)
    return mods


def inputs(model, layer, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((1, 3) + model.input_size) * 50).astype(np.float32)
    g = rng.standard_normal((1,) + model.output_shape(layer)).astype(np.float32)
    return x, g


def minigrad_step(model, layer):
    """Forward to ``layer`` and the input gradient of <out, g>, in minigrad."""
    x, g = inputs(model, layer)

    def step():
        xm = mg.tensor(x, requires_grad=True)
        model.forward(xm, layer).backward(g)
        return xm.grad

    return step


def torch_step(model, layer):
    """The same step in PyTorch, on a network built from the same arrays."""
    import torch

    tmods = torch_network(model)[:model.layer_index(layer) + 1]
    x, g = inputs(model, layer)
    gt = torch.from_numpy(g)

    def step():
        xt = torch.from_numpy(x).requires_grad_(True)
        h = xt
        for t in tmods:
            h = t(h)
        h.backward(gt)
        return xt.grad.numpy()

    return step


def rss_child(library):
    """Run in a fresh process: RSS with weights loaded, then peak over AlexNet fc8 steps.

    The minigrad child never imports torch, so its RSS is minigrad's and NumPy's alone; the
    torch child drops the minigrad model once torch has its copy of the weights.
    """
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # MiB
        return float("nan")

    model = models.get("alexnet", weights=None)
    if library == "torch":
        import torch

        torch.set_num_threads(blas_threads())
        step = torch_step(model, "fc8")  # torch holds its own copy of the weights
        del model  # so that only one copy of the weights is resident
    else:
        step = minigrad_step(model, "fc8")
    step()
    base = status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark VmHWM to the current RSS
    except OSError:
        pass
    for _ in range(5):
        step()
    print(f"{base:.1f} {status('VmHWM'):.1f}")


def measure_rss():
    rows = []
    for lib in ("minigrad", "torch"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_models", "--rss-child", lib],
                             capture_output=True, text=True, check=True).stdout.split()
        base, peak = float(out[-2]), float(out[-1])
        rows.append((lib, base, peak))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurement")
    parser.add_argument("--rss-child", choices=("minigrad", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child)
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"minigrad {mg.__version__} (NumPy {np.__version__}) vs PyTorch {torch.__version__}; "
          f"{threads} threads each; Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} cores; median of {args.repeat} interleaved steps after 2 warm-up\n")
    print("| network | input | to layer | minigrad fwd+grad (ms) | PyTorch (ms) | ratio | "
          "max rel. diff of dx |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.nets.split(","):
        model = models.get(name, weights=None)
        last_conv = [n for n in model.layers if n.startswith("conv")][-1]
        for layer in (last_conv, "fc8"):
            ours, theirs = minigrad_step(model, layer), torch_step(model, layer)
            a, b = ours(), theirs()
            diff = float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30))
            t_mg, t_torch = median_times([ours, theirs], args.repeat)
            size = "x".join(map(str, model.input_size))
            print(f"| {name} | {size} | {layer} | {t_mg * 1e3:.1f} | {t_torch * 1e3:.1f} | "
                  f"{t_mg / t_torch:.2f} | {diff:.1e} |", flush=True)
        del model
    print("\nfloat32. dx differences above ~1e-5 (VGG-16: 13 ReLU + 5 max-pool layers at 224) are "
          "max-pool winners that float32 rounding flips at near-ties; in float64 the same networks "
          "agree to ~1e-15 (tests/test_models.py checks gradients in float64).")
    if not args.no_rss:
        print("\nPeak RSS, AlexNet (torchvision, 61.1M float32 parameters = 233 MiB) fc8 "
              "inversion step (forward + input backward), fresh process each:\n")
        print("| library | RSS with weights (MiB) | peak during steps (MiB) | step adds (MiB) |")
        print("|---|---:|---:|---:|")
        for lib, base, peak in measure_rss():
            print(f"| {lib} | {base:.0f} | {peak:.0f} | {peak - base:.0f} |")


if __name__ == "__main__":
    main()
