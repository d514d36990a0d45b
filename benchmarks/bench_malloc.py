"""What glibc's returning of freed memory costs an inversion: ``backend.keep_freed_memory``.

    python -m benchmarks.bench_malloc [--cases hog:160,dsift:160,alexnet:conv3] [--iters 200]
                                      [--threads 1] [--rounds 2]

Each (case, setting) runs in a fresh child process, ``MINIGRAD_KEEP_FREED=0`` (glibc's
defaults) or ``1`` (minigrad's default), one untimed inversion of a few iterations first, then
``--iters`` timed iterations; the settings alternate per round, each a block of its own.
Prints ms per iteration, the CPU seconds in the kernel and in user space, and the minor page
faults of the timed inversion (getrusage).
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import numpy as np
import models
from minigrad import samples
from minigrad.inversion import invert
from PIL import Image
case, iters = sys.argv[1], int(sys.argv[2])
name, _, arg = case.partition(":")
image = samples.load("astronaut")
if name in ("hog", "hogb", "dsift"):
    size = int(arg or 160)
    image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    rep, layer = models.get(name), None
else:
    rep, layer = models.get(name, weights=None), arg
layer = layer or rep.layers[0]
invert(rep, image, layer, preset="cvpr15", iters=5)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
invert(rep, image, layer, preset="cvpr15", iters=iters)
t, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ms": 1e3 * t / iters, "sys": r1.ru_stime - r0.ru_stime,
                  "user": r1.ru_utime - r0.ru_utime, "faults": r1.ru_minflt - r0.ru_minflt}))
"""


def child(case, iters, keep, threads):
    env = {**os.environ, "MINIGRAD_KEEP_FREED": str(keep),
           **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-c", CHILD, case, str(iters)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="hog:160,dsift:160,hog:512,alexnet:conv3")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"Command: `python -m benchmarks.bench_malloc --cases {args.cases} --iters "
          f"{args.iters} --threads {args.threads} --rounds {args.rounds}`; load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| case | glibc defaults ms/it | kept ms/it | ratio | kernel s (defaults / kept) "
          "| page faults (defaults / kept) |")
    print("|---|---:|---:|---:|---|---|")
    for case in args.cases.split(","):
        runs = {0: [], 1: []}
        for _ in range(args.rounds):
            for keep in (0, 1):
                runs[keep].append(child(case, args.iters, keep, args.threads))
        best = {k: min(v, key=lambda r: r["ms"]) for k, v in runs.items()}
        d, k = best[0], best[1]
        print(f"| {case} | {d['ms']:.2f} | {k['ms']:.2f} | {k['ms'] / d['ms']:.2f} | "
              f"{d['sys']:.2f} / {k['sys']:.2f} | {d['faults']} / {k['faults']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
