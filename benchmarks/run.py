"""Time one feature-inversion iteration: minigrad (NumPy) vs PyTorch CPU vs JAX CPU.

    python -m benchmarks.run [--quick] [--threads 2] [--repeat 8] [--rounds 3]
                             [--cases caffenet:conv5,hog] [--no-memory] [--no-jax] [--serial]
                             [--results benchmarks/RESULTS.md] [--png benchmarks/run.png]

What is timed: one iteration of the CVPR15 inversion (forward to the layer, the normalised
feature loss, α-norm and TV, backward to x, the momentum update), i.e. the body of
``minigrad.invert``'s loop, timed inside ``invert`` itself (between successive callbacks), and
the same iteration of the PyTorch (``ref_torch``) and jitted JAX (``ref_jax``) references.
Per case: ``--rounds`` rounds, each running every library for ``warm-up + --repeat``
iterations in turn (interleaved, so background load hits all alike); the table gives the
median over all timed iterations. Networks have seeded random weights (timings do not depend
on the values; fc layers random, as the issue asks); CNN inputs are the bundled astronaut
photograph at the network's size, HOG/HOGb/DSIFT a 512×512 grey version of it.

Peak memory: each (library, case) runs in a fresh child process; once the library is
imported and the network (weights) is loaded, the RSS is recorded and the kernel's high-water
mark reset (``/proc/self/clear_refs``); then the inversion is set up and runs 1 + 3 iterations
and VmHWM is read: "peak" is that high-water RSS, "iter" is peak minus the recorded RSS (what
the inversion itself needs: target, graph, saved arrays, optimiser state, JIT compilation).

Threads: NumPy's BLAS (OPENBLAS/OMP/MKL_NUM_THREADS, set before NumPy loads: the command
re-runs itself in a child with them when needed), torch.set_num_threads and XLA's CPU pool
get the same count. minigrad's row runs ``invert(threads=N)``, the parallel mode (BLAS held at
one thread, each op's large work split over N worker threads; ``backend.parallel``) when
threadpoolctl is installed and N > 1; the "serial" column is plain ``invert()``: one Python
thread, BLAS at N threads (``--serial``: only that, as the main row). A GPU section
(minigrad-cupy vs torch-cuda) runs when CuPy sees a GPU.
Outputs: a Markdown report on stdout, the section between ``<!-- BEGIN benchmarks/run.py -->``
and ``<!-- END benchmarks/run.py -->`` of ``--results`` (the rest of the file is kept), and a
PNG bar chart of the time ratios (Pillow).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- BEGIN benchmarks/run.py -->", "<!-- END benchmarks/run.py -->"
CASES = ("caffenet:conv3", "caffenet:conv5", "caffenet:fc8", "alexnet:conv3", "alexnet:conv5",
         "alexnet:fc8", "vgg16:conv3_3", "vgg16:conv5_3", "hog", "hogb", "dsift",
         "onnx-resnet18:layer3", "onnx-alexnet:fc8")  # onnx-*: exported by benchmarks/torch_onnx
QUICK = ("caffenet:conv5", "alexnet:fc8", "hog")
# (case -> target ratio) from issue 14: minigrad time ≤ target × PyTorch's (fc8: issue 6's)
TARGETS = {"caffenet:conv5": 0.75, "caffenet:fc8": 1.0, "alexnet:conv5": 0.85, "alexnet:fc8": 1.0,
           "vgg16:conv3_3": 0.7, "vgg16:conv5_3": 0.8, "hog": 1.0, "hogb": 1.0, "dsift": 1.0}
MEMORY_TARGET = 1.5
FEATURE_SIZE = 512
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --- setup -----------------------------------------------------------------------------------
def _env_threads(threads):
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=true "
                        f"intra_op_parallelism_threads={threads}").strip()
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _threads_set(threads):
    return all(os.environ.get(v) == str(threads) for v in THREAD_VARS)


def problem(case):
    """(representation, target image, layer) of a case name like "alexnet:conv5" or "hog"."""
    import numpy as np
    from PIL import Image

    import models
    from minigrad import samples

    name, _, layer = case.partition(":")
    image = samples.load("astronaut")
    if name in ("hog", "hogb", "dsift"):
        rep = models.get(name)
        image = np.asarray(Image.fromarray(image).resize((FEATURE_SIZE, FEATURE_SIZE),
                                                         Image.BILINEAR))
        return rep, image, rep.layers[0]
    if name.startswith("onnx-"):  # an exported torch network with random weights
        from benchmarks.torch_onnx import exported

        return models.from_onnx(exported(name[len("onnx-"):])), image, layer
    return models.get(name, weights=None), image, layer


class MinigradRunner:
    """Runs ``minigrad.invert`` for n iterations, timing each between callbacks; with
    ``algorithm`` every conv is forced to it (the im2col baseline, in the same process);
    ``threads``: invert's option (the parallel mode)."""

    def __init__(self, rep, image, layer, device="cpu", algorithm="auto", threads=None):
        self.rep, self.image, self.layer, self.device = rep, image, layer, device
        self.algorithm, self.threads = algorithm, threads

    def times(self, warmup, n, on_step=None):
        from minigrad.ops import conv_algorithms

        with conv_algorithms.forced(self.algorithm):
            return self._times(warmup, n, on_step)

    def _times(self, warmup, n, on_step):
        import minigrad as mg

        stamps = []

        def callback(step, x, terms):
            if self.device != "cpu":
                mg.backend.xp_for(self.device).cuda.Device().synchronize()
            stamps.append(time.perf_counter())
            if on_step is not None:
                on_step(step)

        mg.invert(self.rep, self.image, self.layer, preset="cvpr15", iters=warmup + n + 1,
                  callback=callback, sync_every=1, device=self.device, threads=self.threads)
        return [b - a for a, b in zip(stamps[warmup:-1], stamps[warmup + 1:])]


class RefRunner:
    """Runs a reference (TorchInversion or JaxInversion) for n iterations."""

    def __init__(self, build):
        self.build = build

    def times(self, warmup, n, on_step=None):
        ref = self.build()
        ref.run(warmup)
        out = []
        for i in range(n):
            ref.run(1, out)
            if on_step is not None:
                on_step(i)
        return out


def invert_threads(threads):
    """invert's ``threads`` for minigrad's main row: N when N > 1 and threadpoolctl is
    installed (the parallel mode), else None (serial)."""
    try:
        import threadpoolctl  # noqa: F401 - the parallel mode needs it
    except ImportError:
        return None
    return threads if threads > 1 else None


def runners(case, libs, device="cpu", threads=None):
    """{lib: runner}; ``threads``: invert's option for "minigrad" and "minigrad-im2col"
    ("minigrad-serial" never has it)."""
    rep, image, layer = problem(case)
    out = {}
    for lib in libs:
        if lib in ("minigrad", "minigrad-serial"):
            out[lib] = MinigradRunner(rep, image, layer, device,
                                      threads=threads if lib == "minigrad" else None)
        elif lib == "minigrad-im2col":
            if rep.kind != "cnn":
                continue  # HOG/DSIFT's small filter banks always run by im2col
            out[lib] = MinigradRunner(rep, image, layer, device, algorithm="im2col",
                                      threads=threads)
        elif lib == "torch":
            from benchmarks.ref_torch import TorchInversion

            dev = "cuda" if device != "cpu" else "cpu"
            out[lib] = RefRunner(lambda d=dev: TorchInversion.build(rep, image, layer, "cvpr15",
                                                                    device=d, iters=10 ** 4))
        elif lib == "jax":
            from benchmarks.ref_jax import JaxInversion

            if rep.kind != "cnn" or case.startswith("onnx-"):
                continue  # no JAX HOG/DSIFT or ONNX network
            out[lib] = RefRunner(lambda: JaxInversion.build(rep, image, layer, "cvpr15",
                                                            iters=10 ** 4))
    return out


def conv_algorithm_summary(rep, image, layer):
    """"conv 96×3×11×11/4 @227: space-to-depth 4, winograd F(4,3); …" for one forward."""
    from minigrad.ops import conv_algorithms
    from minigrad.tensor import no_grad

    with no_grad(), conv_algorithms.recorded() as log:
        rep(rep.preprocess(image), layer)
    return "; ".join(f"{'×'.join(map(str, w))}/{stride} @{x[2]}: {label}"
                     for x, w, stride, label in log)


# --- memory (child processes) ----------------------------------------------------------------
def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # MiB
    return float("nan")


def memory_child(lib, case, threads, iters=3):
    """In a fresh process: print JSON {"base": RSS MiB once the imports and the network are
    loaded, "peak": VmHWM after building the inversion and running 1 + ``iters`` iterations};
    ``threads``: invert's option, "none" or a count."""
    if lib == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    elif lib == "jax":
        import jax.numpy  # noqa: F401 - imported before the baseline, like torch
    runner = runners(case, [lib], threads=None if threads == "none" else int(threads)).get(lib)
    if runner is None:
        print(json.dumps(None))
        return 0
    state = {"base": _proc_status("VmRSS")}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        state["no_reset"] = True

    def on_step(i):
        state["peak"] = _proc_status("VmHWM")

    runner.times(1, iters, on_step)
    print(json.dumps(state))
    return 0


def measure_memory(lib, case, threads, invert_threads):
    cmd = [sys.executable, "-m", "benchmarks.run", "--memory-child", lib, case,
           str(invert_threads).lower()]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env_threads(threads),
                         cwd=ROOT)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- the report ------------------------------------------------------------------------------
def environment(threads):
    import numpy as np

    from minigrad.app.outputs import cpu_model, versions

    info = dict(versions(), threads=threads, cores=os.cpu_count(), cpu=cpu_model())
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    from benchmarks import ref_jax

    info["jax"] = ref_jax.version()
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - older NumPy
        info["blas"] = "?"
    try:
        info["load"] = "%.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        info["load"] = "?"
    return info


def _ms(v):
    return "–" if v is None else f"{v * 1e3:.1f}"


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def _fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}"


def _mode(args):
    if args.invert_threads is None:
        return (f"`invert()`, one Python thread, BLAS at {args.threads} threads (no serial "
                f"column: {'--serial' if args.serial else 'threadpoolctl is not installed'})")
    return (f"`invert(threads={args.invert_threads})`, the parallel mode: BLAS at one thread, "
            f"each op's large work split over {args.invert_threads} worker threads (so is the "
            f"im2col-only column); \"mg serial\": `invert()`, one Python thread, BLAS at "
            f"{args.threads} threads")


def render(rows, env, args, sgemm, gpu_rows, command):
    lines = [
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; CPU: {env['cpu']}, "
        f"{env['cores']} cores (load average at start {env['load']}); Python {env['python']}; "
        f"minigrad {env['minigrad']}, NumPy {env['numpy']} ({env['blas']}), "
        f"PyTorch {env['torch']}, JAX {env['jax'] or 'not installed (skipped)'}.  ",
        f"Threads: {args.threads} for NumPy's BLAS, torch.set_num_threads "
        f"({env.get('torch_threads')}) and XLA. Median of {args.rounds} interleaved rounds × "
        f"{args.repeat} iterations after {args.warmup} warm-up iterations per round; "
        f"CVPR15 preset, random weights; CNN inputs at the network's size, HOG/HOGb/DSIFT "
        f"{FEATURE_SIZE}×{FEATURE_SIZE} grey. Peak memory: fresh child process per cell, "
        f"Linux VmHWM (peak RSS) over setup + 4 iterations; \"iter\" = peak − RSS with "
        f"imports and weights loaded.",
        "",
        f"minigrad-numpy: {_mode(args)}.",
        "",
        "| case | minigrad-numpy ms | torch-cpu ms | jax-cpu ms | mg/torch | mg/jax | target "
        "| mg serial ms | serial/torch | mg im2col-only ms | mg/im2col | conv GFLOP/s mg / torch "
        "| peak RSS MiB mg / torch / jax | iter MiB mg / torch / jax | iter mem mg/torch |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["times"]
        rt = _ratio(t.get("minigrad"), t.get("torch"))
        rj = _ratio(t.get("minigrad"), t.get("jax"))
        target = TARGETS.get(r["case"])
        verdict = "–" if target is None or rt is None else (
            f"≤{target:g}: {'met' if rt <= target else 'MISSED'}")
        flops = r.get("conv_flops")
        gf = "–" if not flops else " / ".join(
            f"{flops / t[lib] / 1e9:.0f}" if t.get(lib) else "–" for lib in ("minigrad", "torch"))
        mem = {lib: m for lib, m in r.get("memory", {}).items()
               if isinstance(m, dict) and "peak" in m and "base" in m}
        for m in mem.values():
            m["iter"] = max(m["peak"] - m["base"], 0.0)
        libs = ("minigrad", "torch", "jax")
        mcol = {key: " / ".join(f"{mem[lib][key]:.0f}" if lib in mem else "–" for lib in libs)
                for key in ("peak", "iter")}
        mr = _ratio(mem.get("minigrad", {}).get("iter"), mem.get("torch", {}).get("iter"))
        mverdict = "–" if mr is None else (f"{mr:.2f} "
                                          f"({'met' if mr <= MEMORY_TARGET else 'MISSED'})")
        ri = _ratio(t.get("minigrad"), t.get("minigrad-im2col"))
        rs = _ratio(t.get("minigrad-serial"), t.get("torch"))
        lines.append(f"| {r['case']} | {_ms(t.get('minigrad'))} | {_ms(t.get('torch'))} | "
                     f"{_ms(t.get('jax'))} | {_fmt_ratio(rt)} | {_fmt_ratio(rj)} | {verdict} | "
                     f"{_ms(t.get('minigrad-serial'))} | {_fmt_ratio(rs)} | "
                     f"{_ms(t.get('minigrad-im2col'))} | {_fmt_ratio(ri)} | "
                     f"{gf} | {mcol['peak']} | {mcol['iter']} | {mverdict} |")
    lines += ["", "\"mg im2col-only\": the same minigrad iteration with every conv forced to "
              "im2col (`conv_algorithms.forced`), timed in the same rounds. Conv algorithm per "
              "layer (`algorithm=\"auto\"`):", ""]
    lines += [f"- {r['case']}: {r['algorithms']}" for r in rows if r.get("algorithms")]
    lines += ["", f"Roofline: measured SGEMM (NumPy float32 2048×2048, {args.threads} threads) "
              f"{sgemm:.0f} GFLOP/s. \"conv GFLOP/s\" = FLOPs of every conv and fc layer up to "
              f"the target (forward + input gradient; no weight gradient) / the whole "
              f"iteration's time, so it includes the time of pooling, LRN, the regularisers "
              f"and the update as overhead."]
    if gpu_rows is None:
        lines += ["", "GPU: skipped (CuPy with a GPU is not available on this machine)."]
    else:
        lines += ["", "GPU (minigrad-cupy vs torch-cuda, median per iteration):", "",
                  "| case | minigrad-cupy ms | torch-cuda ms | ratio |", "|---|---:|---:|---:|"]
        for r in gpu_rows:
            t = r["times"]
            lines.append(f"| {r['case']} | {_ms(t.get('minigrad'))} | {_ms(t.get('torch'))} | "
                         f"{_fmt_ratio(_ratio(t.get('minigrad'), t.get('torch')))} |")
    return "\n".join(lines)


def write_results(path, body):
    section = f"{BEGIN}\n## Inversion iteration: minigrad vs PyTorch vs JAX (benchmarks/run.py)\n\n"
    section += body + f"\n{END}"
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def draw_chart(rows, path):
    """Horizontal bars of minigrad's time / PyTorch's (and / JAX's), a line at 1.0."""
    from PIL import Image, ImageDraw

    items = [(r["case"], _ratio(r["times"].get("minigrad"), r["times"].get("torch")),
              _ratio(r["times"].get("minigrad"), r["times"].get("jax"))) for r in rows]
    top = max([v for _, a, b in items for v in (a, b) if v] + [1.5])
    W, left, bar, gap = 760, 150, 14, 12
    H = 50 + len(items) * (2 * bar + gap) + 30
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    scale = (W - left - 60) / top
    d.text((10, 10), "minigrad time / framework time per inversion iteration (lower is better)",
           fill="black")
    d.rectangle((left, 28, left + 10, 36), fill=(200, 80, 40))
    d.text((left + 14, 26), "vs torch-cpu", fill="black")
    d.rectangle((left + 120, 28, left + 130, 36), fill=(60, 110, 200))
    d.text((left + 134, 26), "vs jax-cpu", fill="black")
    y = 50
    for case, rt, rj in items:
        d.text((10, y + bar // 2), case.replace(":", " "), fill="black")  # no ":" glyph
        for k, (v, colour) in enumerate(((rt, (200, 80, 40)), (rj, (60, 110, 200)))):
            yy = y + k * bar
            if v is not None:
                d.rectangle((left, yy, left + int(v * scale), yy + bar - 3), fill=colour)
                d.text((left + int(v * scale) + 4, yy), f"{v:.2f}", fill="black")
        y += 2 * bar + gap
    x1 = left + int(scale)
    d.line((x1, 45, x1, y), fill="black", width=1)
    d.text((x1 - 8, y + 4), "1.0", fill="black")
    img.save(path)


# --- main ------------------------------------------------------------------------------------
def time_case(case, libs, args, device="cpu"):
    import numpy as np

    run = runners(case, libs, device, args.invert_threads)
    samples = {lib: [] for lib in run}
    for _ in range(args.rounds):
        for lib, r in run.items():
            samples[lib].extend(r.times(args.warmup, args.repeat))
    return {lib: float(np.median(v)) for lib, v in samples.items() if v}


def measure(args, command):
    from benchmarks import ref_jax
    from benchmarks.roofline import network_flops, sgemm_gflops

    libs = ["minigrad"] + ([] if args.no_im2col else ["minigrad-im2col"])
    args.invert_threads = None if args.serial else invert_threads(args.threads)
    if args.invert_threads is not None:
        libs.append("minigrad-serial")
    try:
        import torch

        torch.set_num_threads(args.threads)
        libs.append("torch")
    except ImportError:
        print("PyTorch is not installed: torch-cpu column skipped", file=sys.stderr)
    if not args.no_jax:
        if ref_jax.available():
            libs.append("jax")
        else:
            print("note: jax is not installed; the jax-cpu column is skipped", file=sys.stderr)
    env = environment(args.threads)
    sgemm = sgemm_gflops()
    cases = args.cases.split(",") if args.cases else list(QUICK if args.quick else CASES)
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        times = time_case(case, libs, args)
        row = {"case": case, "times": times}
        rep, image, layer = problem(case)
        if rep.kind == "cnn":
            conv, fc = network_flops(rep, layer)
            row["conv_flops"] = conv + fc
            row["algorithms"] = conv_algorithm_summary(rep, image, layer)
        if not args.no_memory:
            row["memory"] = {lib: measure_memory(lib, case, args.threads, args.invert_threads)
                             for lib in libs if lib not in ("minigrad-im2col", "minigrad-serial")}
        rows.append(row)
        print(f"# {case}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items())
              + f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    gpu_rows = None
    from minigrad import backend

    if backend.gpu_available() and "torch" in libs:
        import torch

        if torch.cuda.is_available():
            gpu_rows = [{"case": c, "times": time_case(c, ["minigrad", "torch"], args, "cuda")}
                        for c in cases if not c.startswith(("hog", "dsift"))]
    body = render(rows, env, args, sgemm, gpu_rows, command)
    return body, rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"only {', '.join(QUICK)}, 1 round of 3 iterations")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=None, help="timed iterations per round")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cases", default=None, help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS children")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--no-im2col", action="store_true",
                    help="skip the im2col-only minigrad baseline column")
    ap.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"),
                    help="Markdown file whose run.py section is replaced ('' to skip)")
    ap.add_argument("--png", default=os.path.join(ROOT, "benchmarks", "run.png"),
                    help="bar chart ('' to skip)")
    ap.add_argument("--serial", action="store_true",
                    help="minigrad's row without the parallel mode: plain invert()")
    ap.add_argument("--memory-child", nargs=3, metavar=("LIB", "CASE", "THREADS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from minigrad import backend

    # glibc keeps freed memory, as minigrad.invert asks on its first call: set before either
    # library runs, so that PyTorch's allocations get the same allocator in every measurement
    backend.keep_freed_memory()
    if args.memory_child:
        return memory_child(*args.memory_child)
    unknown = [c for c in (args.cases or "").split(",") if c and c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; valid cases: {', '.join(CASES)}")
    args.repeat = args.repeat or (3 if args.quick else 8)
    args.rounds = args.rounds or (1 if args.quick else 3)
    raw = list(sys.argv[1:] if argv is None else argv)
    command = "python -m benchmarks.run" + "".join(f" {a}" for a in raw)
    if not _threads_set(args.threads):  # BLAS threads are fixed when NumPy loads: re-run
        cmd = [sys.executable, "-m", "benchmarks.run"] + raw
        return subprocess.run(cmd, env=_env_threads(args.threads), cwd=ROOT).returncode
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    body, rows = measure(args, command)
    print(body)
    if args.results:
        write_results(args.results, body)
    if args.png:
        draw_chart(rows, args.png)
        print(f"\nchart: {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
