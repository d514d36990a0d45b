"""Where an inversion step's time goes: milliseconds per iteration, per op and direction.

    python -m benchmarks.profile_step [--cases alexnet:conv5,vgg16:conv3_3] [--iters 20]
                                      [--threads 2] [--parallel]

Runs ``minigrad.invert`` (the ``benchmarks.run`` case: CVPR15 preset, random weights, the
astronaut sample) with every op's ``forward`` and ``backward`` wrapped in a timer, after an
untimed warm-up of the same length. Prints, per case, a Markdown table: the op (conv ops also
by algorithm and input size), ms per iteration forward and backward, and the share of the
step; "rest" is the step time no op accounts for (the loss, the regularisers' element-wise
work outside ops, the momentum update, Python). The timers add a few microseconds per op call,
so the total is a little above ``benchmarks.run``'s step time. A profile, not a benchmark:
the ratios against PyTorch come from ``benchmarks.run``.
"""
import argparse
import collections
import contextlib
import os
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _label(op, arrays):
    """The op's row: its class, plus input size and algorithm for convolutions."""
    name = type(op).__name__
    if name in ("Conv2d", "WinogradConv2d") and arrays:
        x = arrays[0]
        return f"{name} {x.shape[1]}ch @{x.shape[2]}px"
    return name


@contextlib.contextmanager
def timed_ops(totals):
    """Within the block, every Function subclass's forward/backward adds its seconds to
    ``totals[(label, direction)]``."""
    from minigrad.tensor import Function

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    saved = []
    for cls in set(subclasses(Function)):
        for direction in ("forward", "backward"):
            if direction not in cls.__dict__:
                continue
            original = cls.__dict__[direction]
            saved.append((cls, direction, original))
            setattr(cls, direction, _wrap(original, direction, totals))
    try:
        yield totals
    finally:
        for cls, direction, original in saved:
            setattr(cls, direction, original)


def _wrap(original, direction, totals):
    def timed(self, *args, **kwargs):
        if direction == "forward":
            self._profile_label = _label(self, args)
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            label = getattr(self, "_profile_label", type(self).__name__)
            totals[(label, direction)] += time.perf_counter() - t0
    return timed


def profile(case, iters, threads=None):
    """(step seconds, {(label, direction): seconds}) per iteration of ``case``; ``threads``:
    ``invert``'s option (the parallel mode)."""
    import minigrad as mg
    from benchmarks.run import problem

    rep, image, layer = problem(case)
    mg.invert(rep, image, layer, preset="cvpr15", iters=iters,
              threads=threads)  # untimed: caches, warm BLAS
    totals = collections.defaultdict(float)
    with timed_ops(totals):
        t0 = time.perf_counter()
        mg.invert(rep, image, layer, preset="cvpr15", iters=iters, threads=threads)
        step = (time.perf_counter() - t0) / iters
    return step, {k: v / iters for k, v in totals.items()}


def table(case, step, per_op):
    rows = collections.defaultdict(lambda: [0.0, 0.0])
    for (label, direction), s in per_op.items():
        rows[label][direction == "backward"] += s
    ordered = sorted(rows.items(), key=lambda kv: -sum(kv[1]))
    out = [f"**{case}**: {1e3 * step:.1f} ms per step (timed ops included)", "",
           "| op | forward ms | backward ms | share |", "|---|---:|---:|---:|"]
    for label, (f, b) in ordered:
        out.append(f"| {label} | {1e3 * f:.2f} | {1e3 * b:.2f} | {100 * (f + b) / step:.0f} % |")
    rest = step - sum(per_op.values())
    out.append(f"| rest (loop, loss, update, Python) | | | {100 * rest / step:.0f} % |")
    return "\n".join(out)


def rerun_with_blas_threads(module, threads, argv):
    """Re-run ``python -m module argv`` in place with the BLAS thread variables at ``threads``,
    unless they are set so already: BLAS reads its thread count when NumPy loads."""
    if any(os.environ.get(v) != str(threads) for v in THREAD_VARS):
        env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
        os.execve(sys.executable, [sys.executable, "-m", module,
                                   *(argv if argv is not None else sys.argv[1:])], env)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="caffenet:conv5,alexnet:conv5,vgg16:conv3_3")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", action="store_true",
                    help="run invert(threads=--threads): the parallel mode, BLAS at one thread")
    args = ap.parse_args(argv)
    rerun_with_blas_threads("benchmarks.profile_step", args.threads, argv)
    print(f"Command: `python -m benchmarks.profile_step --cases {args.cases} --iters "
          f"{args.iters} --threads {args.threads}{' --parallel' * args.parallel}`; load average "
          f"{os.getloadavg()[0]:.1f}\n")
    for case in args.cases.split(","):
        step, per_op = profile(case, args.iters, args.threads if args.parallel else None)
        print(table(case, step, per_op) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
