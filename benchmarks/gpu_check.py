"""The GPU check: the ``[cuda]`` tests on real CuPy, then one inversion iteration per
representation on minigrad-CuPy vs torch-cuda; the table goes into benchmarks/RESULTS.md.

    MINIGRAD_HOME=.gpu-home python -m benchmarks.gpu_check [--budget 300] [--repeat 5]
        [--no-tests] [--cases alexnet:conv3,hog] [--results benchmarks/RESULTS.md]

For a GPU machine without network that has CuPy (cupy-cuda13x) and torch with CUDA. Runs in
at most ``--budget`` seconds (default 300): the tests get at most half of it, then cases are
timed until the budget is spent (those left out are listed). Timing is ``benchmarks.run``'s:
``minigrad.invert`` timed between callbacks with a device synchronize (``sync_every=1``)
and the torch reference (``benchmarks.ref_torch``) on "cuda", each in a block after untimed
warm-up iterations; the median per iteration is reported. Networks have seeded random
weights; when the AlexNet npz of the weights cache is present (``$MINIGRAD_HOME/weights``,
carry ``.gpu-home/weights/alexnet-lpips.npz`` along), AlexNet with those real conv weights is
timed too (``alexnet-real:conv3``, ``alexnet-real:conv5``).
"""
import argparse
import os
import re
import subprocess
import sys
import time

from benchmarks import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- BEGIN benchmarks/gpu_check.py -->", "<!-- END benchmarks/gpu_check.py -->"
REAL = ("alexnet-real:conv3", "alexnet-real:conv5")


def gpu_environment():
    """GPU model, driver/runtime and library versions."""
    import cupy
    import numpy
    import torch

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return {"gpu": name, "memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion(), "cupy": cupy.__version__,
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "numpy": numpy.__version__, "python": sys.version.split()[0]}


def run_cuda_tests(timeout):
    """``pytest -k cuda`` on real CuPy: (summary line, return code, seconds)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider",
           "tests"]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        summary = next((ln.strip("= ") for ln in reversed(lines)
                        if re.search(r"\d+ (passed|failed|error)", ln)), "no summary")
        if r.returncode:
            fails = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:10]
            summary += "; " + "; ".join(fails)
        return summary, r.returncode, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s", -1, time.perf_counter() - t0


def real_alexnet_path():
    from weights.cache import cached_path

    return cached_path("alexnet")


def problem(case):
    """benchmarks.run's case, or AlexNet with the cached real conv weights."""
    if case.startswith("alexnet-real:"):
        import models
        from minigrad import samples

        return (models.get("alexnet", weights=str(real_alexnet_path())),
                samples.load("astronaut"), case.split(":", 1)[1])
    return run.problem(case)


def time_case(case, args):
    """Median seconds per iteration, {"minigrad": s, "torch": s}, on the GPU."""
    import numpy as np

    from benchmarks.ref_torch import TorchInversion

    rep, image, layer = problem(case)
    runners = {"minigrad": run.MinigradRunner(rep, image, layer, "cuda"),
               "torch": run.RefRunner(lambda: TorchInversion.build(
                   rep, image, layer, "cvpr15", device="cuda", iters=10 ** 4))}
    out = {}
    for lib, r in runners.items():
        out[lib] = float(np.median(r.times(args.warmup, args.repeat)))
    return out


def render(env, tests, rows, skipped, command):
    lines = [f"Command: `{command}`", "",
             f"GPU: {env['gpu']} ({env['memory_gib']} GiB), CUDA runtime "
             f"{env['cuda_runtime']}, driver {env['cuda_driver']}; CuPy {env['cupy']}, torch "
             f"{env['torch']} (CUDA {env['torch_cuda']}), NumPy {env['numpy']}, Python "
             f"{env['python']}.", "",
             f"`[cuda]` tests on real CuPy: {tests}", "",
             "| case | minigrad-cupy (ms) | torch-cuda (ms) | minigrad / torch |",
             "|---|---:|---:|---:|"]
    for case, t in rows:
        m, th = t.get("minigrad"), t.get("torch")
        ratio = f"{m / th:.2f}" if m and th else "-"
        lines.append(f"| {case} | {run._ms(m)} | {run._ms(th)} | {ratio} |")
    if skipped:
        lines += ["", "Not timed (budget spent or failed): " + ", ".join(skipped)]
    return "\n".join(lines) + "\n"


def write_results(path, body):
    section = (f"{BEGIN}\n## Inversion iteration on a GPU: minigrad-CuPy vs torch-cuda "
               f"(benchmarks/gpu_check.py)\n\n{body}{END}")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=300.0, help="seconds in all (default 300)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cases", default=None, help="comma-separated; default: every case")
    ap.add_argument("--no-tests", action="store_true", help="skip the [cuda] tests")
    ap.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    import torch

    from minigrad import backend

    if not backend.gpu_available() or not torch.cuda.is_available():
        sys.exit("gpu_check: needs CuPy with a GPU and torch with CUDA "
                 f"(CuPy GPU: {backend.gpu_available()}, torch CUDA: {torch.cuda.is_available()})")
    env = gpu_environment()
    tests, code = "not run (--no-tests)", 0
    if not args.no_tests:
        tests, code, secs = run_cuda_tests(0.5 * args.budget)
        tests += f" ({secs:.0f} s)"
        print(f"# tests: {tests}", file=sys.stderr, flush=True)
    cases = args.cases.split(",") if args.cases else list(run.CASES)
    if not args.cases and real_alexnet_path() is not None:
        cases += list(REAL)
    rows, skipped = [], []
    for case in cases:
        if time.perf_counter() - t_start > 0.9 * args.budget:
            skipped.append(case)
            continue
        try:
            rows.append((case, time_case(case, args)))
            print(f"# {case}: {rows[-1][1]}", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001 - report the case and go on
            skipped.append(f"{case} ({type(e).__name__}: {e})")
    command = "MINIGRAD_HOME=.gpu-home python -m benchmarks.gpu_check" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    body = render(env, tests, rows, skipped, command.strip())
    print(body)
    write_results(args.results, body)
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main())
