"""``minigrad sweep``: images × layers × option sets on the batch runner (``batch.py``).

One image and one option set also give the single-image files of before: sweep.png (the
labelled strip), layers/<layer>.png, sweep.csv and a metrics.json listing the layers.
"""
import os
import shutil
import sys

from . import CLIError
from .batch import InProcess, expand_images, keep_representation, make_tasks, option_sets, run_batch
from .outputs import SWEEP_COLUMNS, check_layer, load_rep, out_dir, say, versions


def frames(args):
    """(N, PNG frames too) of --frames N, or None."""
    if getattr(args, "frames", None) is None:
        return None
    if args.frames < 1:
        raise CLIError(f"--frames must be >= 1, got {args.frames}")
    return args.frames, bool(args.frame_pngs)


def default_layers(rep):
    return [n for n in rep.layers if not n.startswith(("fc", "relu6", "relu7"))]


def make_executor(workers, scheduler, blas, quiet):
    """InProcess for one worker (Dask is not imported), else a DaskExecutor."""
    if workers < 1:
        raise CLIError(f"--workers must be >= 1, got {workers}")
    if blas is not None and blas < 1:
        raise CLIError(f"--blas-threads must be >= 1, got {blas}")
    if workers == 1 and not scheduler:
        return InProcess(blas, progress=not quiet and sys.stderr.isatty())
    try:
        from .batch_dask import DaskExecutor
    except ImportError as e:
        flag = "--scheduler" if scheduler else f"--workers {workers}"
        raise CLIError(f"{flag} needs Dask ({e}): pip install 'minigrad[cluster]', or use "
                       "--workers 1") from None
    try:
        return DaskExecutor(workers, scheduler, blas)
    except OSError as e:
        raise CLIError(f"--scheduler {scheduler}: cannot connect: {e}") from None


def check_option_sets(rep, layers, sets):
    from ..inversion import resolve_options

    for label, preset, opts, _ in sets:
        try:
            resolve_options(rep, layers[0], preset, **opts)
        except Exception as e:  # noqa: BLE001 - a bad --vary name or value: one line
            raise CLIError(f"--vary / options {label}: {' '.join(str(e).split())}") from None


def sweep_command(args, overrides):
    """The sweep command; returns the exit status (0, 1 when a task failed, 130 interrupted)."""
    out = out_dir(args.out)
    images = expand_images([args.image] + list(getattr(args, "more_images", None) or []))
    rep = load_rep(args.net, args.weights, args.device)
    layers = args.layers or default_layers(rep)
    for layer in layers:
        check_layer(rep, layer)
    if overrides.get("seed") is not None:
        overrides = dict(overrides)
        args.vary = [f"seed={overrides.pop('seed')}"] + list(args.vary or [])
    sets = option_sets(args.vary, args.preset, overrides)
    check_option_sets(rep, layers, sets)
    weights = os.path.abspath(args.weights) if args.weights else "default"
    tasks = make_tasks(images, layers, sets, net=args.net, weights=weights,
                       resize=args.resize, device=args.device, frames=frames(args))
    keep_representation(tasks[0], rep)  # the in-process run uses the network loaded here
    executor = make_executor(args.workers, args.scheduler, args.blas_threads, args.quiet)
    try:
        say(f"{len(tasks)} tasks ({len(images)} images x {len(layers)} layers x "
            f"{len(sets)} option sets) on {executor.describe()} -> {out}", args.quiet)
        record = run_batch(tasks, out, executor, retry=args.retry, quiet=args.quiet)
    finally:
        executor.close()
    return report(out, tasks, record, rep, sets, images, args)


def report(out, tasks, record, rep, sets, images, args):
    from .batch_index import write_index
    from .outputs import format_table

    rows = write_index(out, tasks, record, title=f"minigrad sweep: {rep.name}")
    if len(images) == 1 and len(sets) == 1:
        done = write_single_image(out, tasks, rows, rep, sets[0], record["interrupted"])
        if done:
            print(format_table(done))
        print(f"wrote {os.path.join(out, 'sweep.png')}")
    n_failed = sum(r["status"] == "failed" for r in rows)
    say(f"{len(record['executed'])} tasks run, {len(record['skipped'])} already complete, "
        f"{n_failed} failed in {record['seconds']:.1f} s; wrote {os.path.join(out, 'index.html')}"
        , args.quiet and not n_failed)
    for r in rows:
        if r["status"] == "failed":
            say(f"failed: {r['task']}: {r['error']}")
    if record["interrupted"]:
        say(f"interrupted: the complete tasks are in {out}; run the same command to go on")
        return 130
    return 1 if n_failed else 0


def write_single_image(out, tasks, rows, rep, option_set, interrupted):
    """sweep.png, layers/<layer>.png, sweep.csv, metrics.json of a one-image sweep."""
    from .. import images as im

    label, preset, opts, _ = option_set
    done = [(t, r) for t, r in zip(tasks, rows) if r["relative_error"] is not None]
    os.makedirs(os.path.join(out, "layers"), exist_ok=True)
    tiles, labels = [], []
    original = _network_view(rep, tasks[0])
    if original is not None:
        tiles, labels = [original], ["original"]
    for t, r in done:
        task_dir = os.path.join(out, "tasks", t.name)
        rec, _ = im.read_image(os.path.join(task_dir, "reconstruction.png"))
        im.save_png(os.path.join(out, "layers", f"{t.layer}.png"), rec)
        if os.path.exists(os.path.join(task_dir, "evolution.gif")):  # --frames N
            shutil.copyfile(os.path.join(task_dir, "evolution.gif"),
                            os.path.join(out, "layers", f"{t.layer}-evolution.gif"))
        tiles.append(rec)
        labels.append(f"{t.layer} {r['relative_error']:.2f}")
    title = (f"{rep.name}, preset {preset}: reconstruction per layer (label: relative error)"
             + (" INTERRUPTED" if interrupted else ""))
    if tiles:
        im.save_png(os.path.join(out, "sweep.png"), im.grid(tiles, labels, ncols=8, cell=128,
                                                            title=title))
    layer_rows = [{c: r[c] for c in SWEEP_COLUMNS} for _, r in done]
    im.save_csv(os.path.join(out, "sweep.csv"), SWEEP_COLUMNS,
                [[r[c] for c in SWEEP_COLUMNS] for r in layer_rows])
    im.save_json(os.path.join(out, "metrics.json"), {
        "net": rep.name, "preset": preset, "image": tasks[0].image, "interrupted": interrupted,
        "layers": layer_rows, "overrides": opts, "versions": versions()})
    return layer_rows


def _network_view(rep, task):
    """The input as the network sees it (its crop and resize), or None if it cannot be read."""
    from .outputs import read_input

    try:
        image, _ = read_input(task.image, rep, task.resize)
        return rep.deprocess(rep.preprocess(image).numpy())
    except Exception:  # noqa: BLE001 - the strip is drawn without the original
        return None

