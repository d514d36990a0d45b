"""Time HOG, HOGb and DSIFT forward + input gradient: minigrad vs the same network in PyTorch.

    python benchmarks/bench_features.py [--size 512] [--repeats 20] [--threads 2]

One process, one 512×512 grey image (a smooth random image with edges, seeded), the loss
<Φ(x), v> with a fixed random v, backward to x. Each entry is the median over ``repeats``
runs after 3 warm-up runs; PyTorch runs with ``--threads`` intra-op threads and NumPy's BLAS
with the same count (set before NumPy loads). The max |difference| of the two forwards is
printed as a sanity check.
"""
import argparse
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import numpy as np
    import torch

    import minigrad as mg
    import models
    from benchmarks.torch_features import TorchDSIFT, TorchHOG

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.size
    yy, xx = np.mgrid[0:n, 0:n] / n
    image = (127 * np.sin(9 * xx + 4 * yy ** 2) * (xx > 0.3) + 60 * np.cos(14 * yy)
             + 20 * rng.standard_normal((n, n)))
    image = image.astype(np.float32)[None, None]

    cases = [
        ("hog", models.get("hog"), TorchHOG(bilinear=False)),
        ("hogb", models.get("hogb"), TorchHOG(bilinear=True)),
        ("dsift b=8", models.get("dsift", bin_size=8), TorchDSIFT(bin_size=8)),
        ("dsift b=5", models.get("dsift", bin_size=5), TorchDSIFT(bin_size=5)),
    ]

    def time_it(fn):
        for _ in range(3):
            fn()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000 * float(np.median(times))

    print(f"# features forward + input gradient, {n}x{n} grey, median of {args.repeats}")
    print(f"# numpy {np.__version__}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, BLAS threads {args.threads}")
    print(f"| {'network':<10} | {'output':<16} | {'minigrad ms':>11} | {'torch ms':>9} | "
          f"{'ratio':>6} | {'max |diff|':>10} |")
    print(f"|{'-' * 12}|{'-' * 18}|{'-' * 13}|{'-' * 11}|{'-' * 8}|{'-' * 12}|")
    for name, net, tnet in cases:
        layer = net.layers[0]
        with mg.no_grad():
            shape = net(mg.tensor(image), layer).shape
        v = rng.standard_normal(shape).astype(np.float32)
        vt = torch.from_numpy(v)

        def run_minigrad(net=net, layer=layer, v=v):
            x = mg.tensor(image, requires_grad=True)
            (net(x, layer) * v).sum().backward()
            return x.grad

        def run_torch(tnet=tnet, vt=vt):
            x = torch.from_numpy(image).requires_grad_(True)
            (tnet(x) * vt).sum().backward()
            return x.grad

        with mg.no_grad():
            ours = net(mg.tensor(image), layer).numpy()
        with torch.no_grad():
            theirs = tnet(torch.from_numpy(image)).numpy()
        diff = float(np.abs(ours - theirs).max())
        t_mg, t_torch = time_it(run_minigrad), time_it(run_torch)
        print(f"| {name:<10} | {str(shape[1:]):<16} | {t_mg:>11.1f} | {t_torch:>9.1f} | "
              f"{t_mg / t_torch:>5.2f}x | {diff:>10.2e} |")


if __name__ == "__main__":
    main()
