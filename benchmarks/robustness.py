"""Robustness of the default schedules: does any inversion diverge on ordinary photographs?

    python -m benchmarks.robustness                 # the whole grid (hours on 2 cores)
    python -m benchmarks.robustness --quick         # a CI-sized subset (< ~1 min)
    python -m benchmarks.robustness --nets alexnet --presets cvpr15 --images astronaut chelsea
    python -m benchmarks.robustness --table runs.jsonl    # the tables of recorded runs
    python -m benchmarks.robustness --shard 0/2 --blas-threads 1 &   # two processes on 2 cores
    python -m benchmarks.robustness --shard 1/2 --blas-threads 1     # (same --runs file)
    python -m benchmarks.robustness --from-runs ~/.cache/minigrad/paper/runs/hour

Cases: 12 freely licensed photographs (the four bundled samples and eight scikit-image ones,
fetched as ``benchmarks/paper/imageset.py`` does) × every layer conv1…pool5 of ``alexnet``
(224 px), the five VGG-16 block outputs (112 px), HOG, HOGb and DSIFT (grey, 128 px by default),
and ``caffenet``/``caffe-alexnet`` when their weights are cached (227 px) × both presets, each
at the preset's default schedule with the loop's safeguard on (``minigrad/inversion/safeguard.py``).

Each run is appended to a JSON-lines file (``--runs``; runs already there are skipped, so a
long grid can be run in pieces). For every run that backed off, the same inversion is run once
more with ``safeguard=False`` ("today's" loop): if that one completed, its relative error is
the comparison. A run that did not back off is by construction the same computation as
today's (``tests/test_safeguard.py`` checks the bit identity), so its ratio is 1.

Tables: per network, layer and preset — runs, divergences (status ``non-finite``: the
safeguard gave up; target 0), runs with back-offs (and how many of those diverged without the
safeguard), the relative error (median and worst over the images), the worst new/old error ratio
where both completed (target ≤ 1.02), and the largest energy growth over 5 steps seen in runs
that did not back off (the margin below the safeguard's factor of 100).
"""
import argparse
import csv
import glob
import hashlib
import json
import math
import os
import statistics
import sys
import time

import numpy as np

import models
from benchmarks.paper import imageset
from minigrad.inversion import invert, resolve_options, schedule_for
from minigrad.inversion.safeguard import GROWTH_FACTOR, WINDOW
from weights import cache as weights_cache

IMAGES = list(imageset.BUNDLED) + list(imageset.EXTRA) + list(imageset.MORE)
ALEXNET = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4",
           "relu4", "conv5", "relu5", "pool5"]
VGG = ["pool1", "pool2", "pool3", "pool4", "pool5"]  # the five block outputs
FEATURES = ["hog", "hogb", "dsift"]
PRESETS = ["cvpr15", "ijcv16"]
SIZES = {"alexnet": 224, "vgg16": 112, "caffenet": 227, "caffe-alexnet": 227}


def grid(nets, presets, images, layers=None):
    """The (net, layer, preset, image) cases, in the order they are run."""
    cases = []
    for net in nets:
        names = {"alexnet": ALEXNET, "vgg16": VGG, "caffenet": ALEXNET,
                 "caffe-alexnet": ALEXNET}.get(net, ["hog" if net == "hogb" else net])
        for layer in layers or names:
            for preset in presets:
                for image in images:
                    cases.append((net, layer, preset, image))
    return cases


def max_growth(energy):
    """The largest e_i / min(e_{i-WINDOW}..e_{i-1}): what the safeguard's test compares."""
    worst = 1.0
    for i in range(1, len(energy)):
        ref = min(energy[max(0, i - WINDOW):i])
        if ref > 0 and math.isfinite(energy[i]):
            worst = max(worst, energy[i] / ref)
    return worst


def one_run(rep, image, layer, preset, iters):
    """The record of one case (and of today's loop on it when the safeguard backed off)."""
    extra = {} if iters is None else {"iters": iters}
    r = invert(rep, image, layer, preset=preset, **extra)
    m = r.metrics
    rec = {"status": r.status, "relative_error": m["relative_error"],
           "backoffs": m["lr_backoffs"], "backoff_steps": m["lr_backoff_steps"],
           "iterations": m["iterations"], "seconds": round(r.wall_time, 2),
           "max_growth": max_growth(r.history["energy"]) if not m["lr_backoffs"] else None}
    if m["lr_backoffs"]:
        rec.update(old_run(rep, image, layer, preset, iters))
    return rec


def old_run(rep, image, layer, preset, iters):
    """Today's loop (no safeguard) on a case that backed off: its status and error."""
    extra = {} if iters is None else {"iters": iters}
    old = invert(rep, image, layer, preset=preset, safeguard=False, **extra)
    return {"old_status": old.status, "old_relative_error": old.metrics["relative_error"]}


def load_image(name, size):
    """The photograph as every method sees it: shorter side to ``size``, central square crop
    (RGB; HOG and DSIFT convert to grey themselves)."""
    a, _ = imageset.load(name, log=lambda *a: None)
    return imageset.square(a, size)


def _reps(nets, device="cpu"):
    out = {}
    for net in nets:
        if net in ("caffenet", "caffe-alexnet") and weights_cache.cached_path(net) is None:
            print(f"skipping {net}: its weights are not cached", file=sys.stderr)
            continue
        out[net] = models.get(net)
        if out[net].input_size is not None and net in SIZES:  # the network at the grid's size
            out[net].input_size = (SIZES[net], SIZES[net])
    return out


def image_digest(a):
    """The name the batch runner of benchmarks/paper gives an input array (``img-<digest>``)."""
    a = np.ascontiguousarray(a)
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()[:12]


def harvest(run_dir, reps, cases, feature_size):
    """{case: record} for the cases a batch run directory (``python -m benchmarks.paper``'s)
    already ran with exactly the grid's settings: same network, layer, preset and input array,
    seed 0, default weights, and resolved options equal to the preset's defaults (the paper
    passes iters=400/350 and C=1 explicitly: the same inversion). Only the cases that backed
    off still need today's loop, which ``fill_old`` runs."""
    wanted = {}
    for case in cases:
        net, layer, preset, name = case
        a = load_image(name, SIZES.get(net, feature_size))
        wanted[(net, layer, preset, f"img-{image_digest(a)}.png")] = case, a
    found = {}
    for path in glob.glob(os.path.join(run_dir, "tasks", "*", "metrics.json")):
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        t = meta.get("task") or {}
        key = (t.get("net"), t.get("layer"), t.get("preset"), os.path.basename(t.get("image", "")))
        case, image = wanted.get(key, (None, None))
        if case is None or t.get("seed") != 0 or t.get("weights") != "default":
            continue
        if not _default_inversion(reps[case[0]], case[1], case[2], t.get("options") or {},
                                  image):
            continue
        m = meta["metrics"]
        energy = _history_energy(os.path.join(os.path.dirname(path), "history.csv"))
        found[case] = {"status": meta["status"], "relative_error": m["relative_error"],
                       "backoffs": m["lr_backoffs"], "backoff_steps": m["lr_backoff_steps"],
                       "iterations": m["iterations"], "seconds": round(meta["wall_time_s"], 2),
                       "max_growth": max_growth(energy) if not m["lr_backoffs"] else None,
                       "from": os.path.relpath(os.path.dirname(path), run_dir)}
    return found


def _default_inversion(rep, layer, preset, overrides, image):
    """Whether ``overrides`` (a task's options) leave the preset's inversion unchanged: the
    same resolved options and the same step sizes at every iteration."""
    default = dict(resolve_options(rep, layer, preset))
    given = dict(resolve_options(rep, layer, preset, **overrides))
    hw = tuple(rep.input_size or image.shape[:2])
    a, b = schedule_for(default, hw), schedule_for(given, hw)
    if len(a) != len(b) or any(a(i) != b(i) for i in range(len(a))):
        return False
    default.pop("iters"), given.pop("iters")
    return _canonical(default) == _canonical(given)


def _canonical(options):
    return json.dumps(json.loads(json.dumps(dict(options), default=str)), sort_keys=True)


def _history_energy(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [float(row["energy"]) for row in csv.DictReader(f)]


def run_grid(args):
    done = set()
    if os.path.exists(args.runs):
        with open(args.runs) as f:
            done = {tuple(json.loads(line)["case"]) for line in f if line.strip()}
    reps = _reps(args.nets)
    shard, shards = args.shard
    cases = [c for i, c in enumerate(grid(list(reps), args.presets, args.images, args.layers))
             if i % shards == shard and tuple(c) not in done]
    found = {}
    if args.from_runs and args.iters is None:
        found = harvest(args.from_runs, reps, cases, args.feature_size)
    print(f"{len(cases)} runs to do ({len(done)} already in {args.runs}, {len(found)} of the "
          f"rest from {args.from_runs})", file=sys.stderr)
    t0 = time.perf_counter()
    for i, (net, layer, preset, name) in enumerate(cases):
        rep = reps[net]
        size = SIZES.get(net, args.feature_size)
        image = load_image(name, size)
        rec = found.get((net, layer, preset, name))
        if rec is None:
            rec = one_run(rep, image, layer, preset, args.iters)
        elif rec["backoffs"]:
            rec.update(old_run(rep, image, layer, preset, args.iters))
        rec = {"case": [net, layer, preset, name], "size": size, "iters_override": args.iters,
               **rec}
        _append(args.runs, rec)
        print(f"[{i + 1}/{len(cases)} {time.perf_counter() - t0:.0f} s] {net} {layer} {preset} "
              f"{name}: {rec['status']}, error {rec['relative_error']:.4f}, back-offs "
              f"{rec['backoffs']}" + (f" (without: {rec['old_status']})" if rec["backoffs"]
                                      else ""), file=sys.stderr, flush=True)


def _append(path, rec):
    """One line in one write() on an O_APPEND file: shards may share the file."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)


def _shard(text):
    k, _, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (for example 0/2), got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"K/N needs 0 <= K < N, got {text!r}")
    return k, n


def summarise(records):
    """Rows per (net, layer, preset) and the totals."""
    groups = {}
    for r in records:
        groups.setdefault(tuple(r["case"][:3]), []).append(r)
    rows = []
    for (net, layer, preset), rs in groups.items():
        ok = [r["relative_error"] for r in rs if r["status"] != "non-finite"]
        backed = [r for r in rs if r["backoffs"]]
        compared = [r["relative_error"] / r["old_relative_error"] for r in backed
                    if r.get("old_status") == "completed"]
        growth = [r["max_growth"] for r in rs if r["max_growth"] is not None]
        rows.append({
            "net": net, "layer": layer, "preset": preset, "runs": len(rs),
            "diverged": sum(r["status"] == "non-finite" for r in rs),
            "backed_off": len(backed), "backoffs": sum(r["backoffs"] for r in rs),
            "old_diverged": sum(r.get("old_status") == "non-finite" for r in backed),
            "median": statistics.median(ok) if ok else None, "worst": max(ok) if ok else None,
            "compared": len(compared), "worst_ratio": max(compared) if compared else None,
            "max_growth": max(growth) if growth else None,
            "seconds": sum(r["seconds"] for r in rs)})
    return rows


def markdown(rows):
    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    out = ["| net | layer | preset | runs | diverged | runs with back-offs (diverged without) "
           "| median error | worst error | worst ratio to today (n) | max 5-step growth |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['net']} | {r['layer']} | {r['preset']} | {r['runs']} | "
                   f"{r['diverged']} | {r['backed_off']} ({r['old_diverged']}) | "
                   f"{f(r['median'], '.3f')} | {f(r['worst'], '.3f')} | "
                   f"{f(r['worst_ratio'], '.3f')} ({r['compared']}) | "
                   f"{f(r['max_growth'], '.2f')} |")
    n = sum(r["runs"] for r in rows)
    growth = [r["max_growth"] for r in rows if r["max_growth"] is not None]
    out.append("")
    out.append(f"Totals: {n} runs, {sum(r['diverged'] for r in rows)} divergences, "
               f"{sum(r['backed_off'] for r in rows)} runs with back-offs "
               f"({sum(r['backoffs'] for r in rows)} back-offs; "
               f"{sum(r['old_diverged'] for r in rows)} of those runs diverge without the "
               f"safeguard); largest 5-step energy growth in a run without back-off "
               f"{f(max(growth) if growth else None, '.2f')} (the safeguard's factor: "
               f"{GROWTH_FACTOR:g}); {sum(r['seconds'] for r in rows):.0f} s inside invert.")
    return "\n".join(out)


def read_runs(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="2 images, 4 small cases, 60 iterations each (CI-sized)")
    p.add_argument("--nets", nargs="+",
                   default=["alexnet", "vgg16", *FEATURES, "caffenet", "caffe-alexnet"])
    p.add_argument("--layers", nargs="+", help="only these layers (of every net given)")
    p.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    p.add_argument("--images", nargs="+", default=IMAGES, choices=IMAGES)
    p.add_argument("--feature-size", type=int, default=128, help="HOG/HOGb/DSIFT input size")
    p.add_argument("--iters", type=int, help="override the schedules' length (not the grid)")
    p.add_argument("--runs", default="robustness-runs.jsonl", help="JSON lines of the runs")
    p.add_argument("--table", metavar="JSONL", help="only print the tables of recorded runs")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N",
                   help="run only the cases K, K+N, K+2N, ... of the grid (N processes)")
    p.add_argument("--blas-threads", type=int, metavar="N", help="BLAS threads (threadpoolctl)")
    p.add_argument("--from-runs", metavar="DIR", help="take the cases a batch run directory "
                   "already ran with the grid's settings (e.g. the paper evaluation's "
                   "$MINIGRAD_HOME/paper/runs/hour) instead of running them again")
    args = p.parse_args(argv)
    if args.quick:
        args.nets, args.images, args.iters = ["hog", "dsift", "alexnet"], ["astronaut",
                                                                           "chelsea"], 60
        args.feature_size = 64
    if args.table:
        print(markdown(summarise(read_runs(args.table))))
        return 0
    if args.quick:
        if os.path.exists(args.runs):
            os.unlink(args.runs)  # the quick mode always starts afresh
        _quick(args)
    else:
        from minigrad.app.batch import blas_threads

        with blas_threads(args.blas_threads):
            run_grid(args)
    records = read_runs(args.runs)
    print(markdown(summarise(records)))
    return 1 if any(r["status"] == "non-finite" for r in records) else 0


def _quick(args):
    """HOG and DSIFT at 64 px under both presets and AlexNet conv1 (cvpr15) at 112 px."""
    reps = _reps(args.nets)
    for net, layer, preset, name in (grid(["hog", "dsift"], PRESETS, args.images)
                                     + grid(["alexnet"], ["cvpr15"], args.images, ["conv1"])):
        rep = reps[net]
        size = 112 if net == "alexnet" else args.feature_size
        rec = one_run(rep, load_image(name, size), layer, preset, args.iters)
        with open(args.runs, "a") as f:
            f.write(json.dumps({"case": [net, layer, preset, name], "size": size,
                                "iters_override": args.iters, **rec}) + "\n")


if __name__ == "__main__":
    np.seterr(over="ignore")
    sys.exit(main())
