"""Throughput of `minigrad sweep`: Dask workers at 1 BLAS thread each vs one process.

    python -m benchmarks.bench_sweep                # 16 tasks: 4 images x 4 AlexNet layers, 224
    python -m benchmarks.bench_sweep --iters 5      # a quick check of the script

Each configuration is the real command in a subprocess, on its own fresh run directory:
  A: --workers 1 with OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=W (BLAS threading, one process)
  B: --workers W --blas-threads 1 (a local Dask cluster of W processes)
First an untimed warm-up of each (2 tasks, 2 iterations: imports, weights, disk cache), then
A timed as a block, then B. Prints tasks per minute for both and the ratio B/A, with the
1-minute load average before and after (the machine may be shared).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")
LAYERS = ("conv1", "pool2", "relu4", "pool5")


def sweep(out, images, layers, iters, workers, threads):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "minigrad.cli", "sweep", *images, "--net", "alexnet",
           "--layers", *layers, "--iters", str(iters), "--out", str(out), "--quiet"]
    if workers == 1:
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
        cmd += ["--workers", "1"]
    else:
        cmd += ["--workers", str(workers), "--blas-threads", "1"]
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"sweep failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return seconds


def main(argv=None):
    from minigrad import samples

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    images = [samples.path(n) for n in SAMPLES]
    n_tasks = len(images) * len(LAYERS)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        tmp = Path(tmp)
        for name, w, th in (("warm-a", 1, args.workers), ("warm-b", args.workers, 1)):
            sweep(tmp / name, images[:1], LAYERS[:2], 2, w, th)
        load0 = os.getloadavg()[0]
        a = sweep(tmp / "a", images, LAYERS, args.iters, 1, args.workers)
        load_mid = os.getloadavg()[0]
        b = sweep(tmp / "b", images, LAYERS, args.iters, args.workers, 1)
        load1 = os.getloadavg()[0]
    print(f"{n_tasks} tasks (alexnet 224, {len(LAYERS)} layers x {len(images)} images, "
          f"{args.iters} iterations), {os.cpu_count()} cores")
    print(f"A  --workers 1, {args.workers} BLAS threads: {a:7.1f} s  "
          f"{60 * n_tasks / a:6.2f} tasks/min  (load {load0:.1f} -> {load_mid:.1f})")
    print(f"B  --workers {args.workers}, 1 BLAS thread each: {b:7.1f} s  "
          f"{60 * n_tasks / b:6.2f} tasks/min  (load {load_mid:.1f} -> {load1:.1f})")
    print(f"throughput ratio B/A: {a / b:.2f}")


if __name__ == "__main__":
    main()
