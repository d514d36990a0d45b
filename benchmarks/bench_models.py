"""Whole networks, minigrad (NumPy) against PyTorch CPU: forward + input gradient per target
layer, its time and its float32 accuracy.

    python -m benchmarks.bench_models [--repeat 10] [--rounds 2] [--nets caffenet,alexnet,...]
                                      [--no-rss]

Each network gets random full weights (He-uniform, fc included; NOT pretrained: timings only),
and the PyTorch network is built from the same arrays, layer for layer. One step is what an
inversion iteration does to the network: forward to the target layer (conv5, or fc8) and
back-propagate a fixed random gradient to the input image; the weights are constants (no weight
gradients in either library). Both libraries use the same thread count: torch.set_num_threads(N),
N being what NumPy's BLAS uses (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, else
the number of cores).

Time: each library in blocks (``bench_ops.median_time``: an untimed warm-up of at least 0.2 s,
then ``--repeat`` steps), the blocks in turn for ``--rounds`` rounds, the median of the rounds.
Never call by call: a torch step right after a NumPy GEMM runs up to 2× slower while OpenBLAS's
idle threads spin.

Accuracy: minigrad's float32 step (the default conv algorithms) against torch's in float64, on
the same float32 input, weights and output gradient. It prints the norm-wise relative error of
the output and of the input gradient. It also counts the switches that differ between the
two: max-pool windows with another winner, and ReLUs with another sign. Each is a near-tie that
float32 rounding flipped. Once one flips, the input gradient's error is set by the flip. The
target, ≤ 1e-5, is owed where none flipped.

Peak RSS of one AlexNet fc8 inversion step (forward + input backward) is measured in a fresh
child process per library: the RSS once the weights are loaded, then the high-water mark over
a few steps after resetting it (Linux /proc/self/clear_refs).
"""
import argparse
import os
import platform
import subprocess
import sys

import numpy as np

import minigrad as mg
import models
from benchmarks.bench_ops import median_time
from models.cnn import FC, LRN, Conv, MaxPool, ReLU

NETS = ("caffenet", "caffe-alexnet", "alexnet", "vgg16")
LAYERS = {"vgg16": ("conv3_3", "conv5_3", "fc8")}  # the others: conv5 and fc8


def blas_threads():
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def block_times(fns, repeat, rounds):
    """Median seconds per call of each function: each timed as a block
    (``bench_ops.median_time``), the blocks in turn for ``rounds`` rounds; the median of the
    rounds."""
    times = [[median_time(fn, repeat) for fn in fns] for _ in range(rounds)]
    return [float(t) for t in np.median(times, axis=0)]


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


def accuracy(model, layer, seed=0):
    """minigrad's float32 step against torch's float64 one (module doc), on ``inputs(model,
    layer, seed)``: {"output", "input grad"}: norm-wise relative errors; {"max-pool",
    "ReLU"}: (switches that differ, switches), the switches being the max-pool windows'
    winners and the ReLUs' signs."""
    import torch

    x, g = inputs(model, layer, seed)
    modules = model.modules(layer)
    switches = {k: ("max-pool" if isinstance(m, MaxPool) else "ReLU")
                for k, m in enumerate(modules) if isinstance(m, MaxPool) or type(m) is ReLU}
    xm = mg.tensor(x, requires_grad=True)
    outs = model.forward_layers(xm, [model.layers[k - 1] for k in switches] + [layer])
    outs[layer].backward(g)
    h = xt = torch.from_numpy(x).double().requires_grad_(True)
    counts = {"max-pool": [0, 0], "ReLU": [0, 0]}
    for k, t in enumerate(torch_network(model)[:len(modules)]):
        if k in switches:
            ours = torch.from_numpy(outs[model.layers[k - 1]].numpy()).double()
            theirs = _switches(h.detach(), t)
            counts[switches[k]][0] += int((_switches(ours, t) != theirs).sum())
            counts[switches[k]][1] += theirs.numel()
        h = t.double()(h)
    h.backward(torch.from_numpy(g).double())
    return {"output": _relative(outs[layer].numpy(), h.detach().numpy()),
            "input grad": _relative(xm.grad, xt.grad.numpy()),
            **{kind: tuple(n) for kind, n in counts.items()}}


def _switches(x, module):
    """What the torch ``module`` decides on its input x: each window's winner (its index) for
    a max-pool, each unit's sign for a ReLU."""
    import torch.nn.functional as TF
    from torch import nn

    if isinstance(module, nn.MaxPool2d):
        return TF.max_pool2d(x, module.kernel_size, module.stride, ceil_mode=module.ceil_mode,
                             return_indices=True)[1]
    return x > 0


def _of(counts):
    return f"{counts[0]} of {counts[1]}"


def _verdict(acc):
    """The 1e-5 target, which is owed where no switch flipped (module doc)."""
    if max(acc["output"], acc["input grad"]) <= 1e-5:
        return "met"
    return "– (a near-tie flipped)" if acc["max-pool"][0] or acc["ReLU"][0] else "MISSED"


def _relative(a, b):
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - b) / np.linalg.norm(b))


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
    parser.add_argument("--repeat", type=int, default=10, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per library, in turn")
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--seed", type=int, default=0, help="of the input and output gradient")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurement")
    parser.add_argument("--rss-child", choices=("minigrad", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child)
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"Command: `python -m benchmarks.bench_models --repeat {args.repeat} --rounds "
          f"{args.rounds} --nets {args.nets} --seed {args.seed}`; load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print(f"minigrad {mg.__version__} (NumPy {np.__version__}) vs PyTorch {torch.__version__}; "
          f"{threads} threads each; Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} cores; each library in blocks of {args.repeat} steps after a "
          f"warm-up, {args.rounds} rounds\n")
    print("| network | input | to layer | minigrad fwd+grad (ms) | PyTorch (ms) | ratio | "
          "output error vs torch float64 | dx error | max-pool winners flipped | ReLU signs "
          "flipped | ≤ 1e-5 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.nets.split(","):
        model = models.get(name, weights=None)
        for layer in LAYERS.get(name, ("conv5", "fc8")):
            acc = accuracy(model, layer, args.seed)
            t_mg, t_torch = block_times([minigrad_step(model, layer), torch_step(model, layer)],
                                        args.repeat, args.rounds)
            size = "x".join(map(str, model.input_size))
            print(f"| {name} | {size} | {layer} | {t_mg * 1e3:.1f} | {t_torch * 1e3:.1f} | "
                  f"{t_mg / t_torch:.2f} | {acc['output']:.1e} | {acc['input grad']:.1e} | "
                  f"{_of(acc['max-pool'])} | {_of(acc['ReLU'])} | {_verdict(acc)} |", flush=True)
        del model
    print("\nErrors are norm-wise, ‖ours − torch64‖ / ‖torch64‖, with minigrad in float32 and "
          "its default conv algorithms. A switch whose float32 input is within rounding of a "
          "tie (a max-pool window's two largest values, a ReLU's input and 0) can flip; the "
          "gradient then routes differently there, and the input gradient's error is set by "
          "the flip, not by rounding. In float64 the networks agree to ~1e-15 "
          "(tests/test_models.py).")
    if not args.no_rss:
        print("\nPeak RSS, AlexNet (torchvision, 61.1M float32 parameters = 233 MiB) fc8 "
              "inversion step (forward + input backward), fresh process each:\n")
        print("| library | RSS with weights (MiB) | peak during steps (MiB) | step adds (MiB) |")
        print("|---|---:|---:|---:|")
        for lib, base, peak in measure_rss():
            print(f"| {lib} | {base:.0f} | {peak:.0f} | {peak - base:.0f} |")


if __name__ == "__main__":
    main()
