"""The batch runner: many inversions (images × layers × option sets) into one run directory.

A **task** is one inversion: (image, representation and layer, preset and options, seed). The
runner expands the inputs into tasks, skips those already complete in the run directory, runs
the rest through an executor, and writes the index:

    OUT/tasks/<task>/   reconstruction.png, comparison.png, loss.png, history.csv, metrics.json
    OUT/results.csv, OUT/results.json, OUT/index.html, OUT/sheets/*.png (contact sheets)

Executors: ``InProcess`` (``--workers 1``, no Dask imported) and ``batch_dask.DaskExecutor``
(a local cluster of N processes, or an existing one with ``--scheduler``). A task runs in
``run_task``, which returns its files as bytes; only the client writes the run directory, so
workers need no shared filesystem for the outputs (they do need to read the images).

Loss-free: every file is written atomically and a task's metrics.json last, carrying the
task's key; a task is complete when that file is there with the same key. Ctrl-C or SIGTERM
loses only the tasks in flight; starting the same command again runs only what is missing.
"""
import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
from typing import Optional

from . import CLIError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pnm")
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SPECIAL = ("preset", "seed")  # --vary names that are task fields rather than invert options


@dataclasses.dataclass(frozen=True)
class Task:
    """One inversion. ``spec()`` is everything that determines its result; ``key`` hashes it."""

    image: str
    net: str
    layer: str
    preset: str = "cvpr15"
    options: tuple = ()  # sorted (name, value) overrides of the preset
    seed: int = 0
    label: str = ""  # the option set's name, e.g. "ijcv16-loss_weight=20"
    weights: Optional[str] = "default"  # "default", a converted .npz, or None (seeded random)
    net_options: tuple = ()  # keyword arguments of models.get
    input_size: Optional[tuple] = None  # overrides the representation's input size
    resize: Optional[int] = None
    device: str = "cpu"
    save_x: bool = False  # also return x.npy (the reconstruction in input space)
    frames: Optional[tuple] = None  # (every N iterations, PNG frames too): evolution.gif
    name: str = ""  # the folder under tasks/, unique in a run

    def spec(self):
        return {"image": self.image, "net": self.net, "layer": self.layer,
                "preset": self.preset, "options": dict(self.options), "seed": self.seed,
                "weights": self.weights, "net_options": dict(self.net_options),
                "input_size": list(self.input_size) if self.input_size else None,
                "resize": self.resize, "device": self.device}

    @property
    def key(self):
        text = json.dumps(self.spec(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


# --- inputs ------------------------------------------------------------------------------------
def expand_images(patterns):
    """Files, globs and directories (their image files, sorted) -> absolute paths, in order,
    each once."""
    paths = []
    for pat in patterns:
        pat = os.fspath(pat)
        if os.path.isdir(pat):
            found = sorted(os.path.join(pat, f) for f in os.listdir(pat)
                           if f.lower().endswith(IMAGE_EXTENSIONS))
        elif glob.has_magic(pat):
            found = sorted(glob.glob(pat))
        else:
            found = [pat]  # an explicit file: a missing or unreadable one is a failed task
        if not found:
            raise CLIError(f"no images match {pat!r}")
        found = [os.path.abspath(p) for p in found]  # workers may run in another folder
        paths += [p for p in found if p not in paths]
    return paths


def parse_value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def option_sets(varies, preset, base):
    """[(label, preset, options, seed)]: the product of ``--vary NAME=V1,V2`` over ``base``."""
    sets = [({}, [])]
    for spec in varies or ():
        name, sep, values = spec.partition("=")
        if not sep or not name or not values:
            raise CLIError(f"--vary {spec!r}: expected NAME=V1,V2,... (e.g. loss_weight=1,20)")
        sets = [(dict(o, **{name: parse_value(v)}), lab + [f"{name}={v}"])
                for o, lab in sets for v in values.split(",")]
    out = []
    for o, lab in sets:
        opts = dict(base, **o)
        p, seed = opts.pop("preset", preset), int(opts.pop("seed", 0))
        labels = [s for s in lab if not s.startswith(SPECIAL)]
        out.append(("-".join([p] + labels), p, opts, seed))
    return out


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(text)).strip("_") or "x"


def make_tasks(images, layers, sets, **common):
    """Tasks for every image × layer × option set, named ``stem.net.layer.label.sSEED``."""
    stems = [slug(os.path.splitext(os.path.basename(p))[0]) for p in images]
    tasks = []
    for path, stem in zip(images, stems):
        if stems.count(stem) > 1:  # two images called the same in different folders
            stem += "-" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:6]
        for label, preset, opts, seed in sets:
            for layer in layers:
                t = Task(image=path, layer=layer, preset=preset, seed=seed, label=label,
                         options=tuple(sorted(opts.items())), **common)
                name = ".".join(slug(s) for s in (stem, t.net, layer, label, f"s{seed}"))
                tasks.append(dataclasses.replace(t, name=name))
    return tasks


# --- one task, on whatever process runs it -----------------------------------------------------
_REPRESENTATIONS = {}  # process-local: each worker loads a network once and keeps it


def _rep_key(task):
    return (task.net, task.weights, task.net_options, task.input_size, task.device)


def representation(task):
    """The task's representation from this process's cache (loaded on first use)."""
    k = _rep_key(task)
    if k not in _REPRESENTATIONS:
        import models

        rep = models.get(task.net, weights=task.weights, **dict(task.net_options))
        if task.input_size:
            rep.input_size = tuple(task.input_size)
        if task.device != "cpu":
            rep.to(task.device)
        _REPRESENTATIONS[k] = rep
    return _REPRESENTATIONS[k]


def keep_representation(task, rep):
    """Put an already loaded representation in this process's cache (the in-process run)."""
    _REPRESENTATIONS[_rep_key(task)] = rep


def blas_threads_now():
    """BLAS threads of this process (threadpoolctl when installed, else the env var)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        v = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        return int(v) if v and v.isdigit() else None
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return counts[0] if counts else None


@contextlib.contextmanager
def blas_threads(n):
    """Run with ``n`` BLAS threads (None: as the process is). The thread count changes the
    float32 sums, so a task is bit-identical across processes only at equal counts."""
    if n is None or blas_threads_now() == n:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise RuntimeError(f"--blas-threads {n} needs threadpoolctl (pip install threadpoolctl) "
                           f"or OPENBLAS_NUM_THREADS={n} in the environment") from None
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def error_message(e):
    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (CLIError, ValueError, OSError, RuntimeError)):
        return msg
    return f"{type(e).__name__}: {msg}"


def run_task(task, blas=None, progress=False):
    """Run one task; {"ok", "files": {name: bytes}} or {"ok": False, "error"}, and "worker".

    Exceptions become a failure record, so every executor reports them the same way; Ctrl-C
    (KeyboardInterrupt) is not caught."""
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        with blas_threads(blas):
            files = _invert_task(task, worker, progress)
        return {"ok": True, "files": files, "worker": worker}
    except Exception as e:  # noqa: BLE001 - a task's failure is recorded, the others go on
        return {"ok": False, "error": error_message(e), "worker": worker}


def _invert_task(task, worker, progress):
    from ..backend import np
    from ..inversion import invert, resolve_options, schedule_for
    from .outputs import read_input, write_invert_outputs
    from .progress import Progress

    rep = representation(task)
    rep.check_layer(task.layer)
    image, notes = read_input(task.image, rep, task.resize)
    opts = dict(task.options, seed=task.seed)
    callback = None
    if progress:
        sched = schedule_for(resolve_options(rep, task.layer, task.preset, **opts),
                             image.shape[:2])
        callback = Progress(len(sched), f"{task.name}")
    movie, progress_line = None, callback
    if task.frames:  # the movie does not change the result, so it is not in spec()
        from .movie import FrameRecorder

        movie = callback = FrameRecorder(rep, task.frames[0], inner=callback)
    cpu0 = time.process_time()
    result = invert(rep, image, task.layer, preset=task.preset, callback=callback, **opts)
    if progress_line is not None:
        progress_line.close()
    extra = {"task": task.spec(), "task_key": task.key, "task_name": task.name,
             "worker": worker, "cpu_s": time.process_time() - cpu0,
             "blas_threads": blas_threads_now()}
    with tempfile.TemporaryDirectory(prefix="minigrad-task-") as tmp:
        write_invert_outputs(tmp, rep, task.layer, result, task.image, notes, extra=extra)
        if movie is not None:
            movie.finish(result)
            movie.write(tmp, png_frames=task.frames[1], name="evolution")
        if task.save_x:
            np.save(os.path.join(tmp, "x.npy"), np.ascontiguousarray(result.x))
        files = {}
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                files[name] = f.read()
    return files


class InProcess:
    """``--workers 1``: the tasks one after another in this process (no Dask)."""

    def __init__(self, blas=None, progress=False):
        self.blas, self.progress = blas, progress

    def describe(self):
        return "in process (1 worker)"

    def run(self, tasks):
        for t in tasks:
            yield t, run_task(t, self.blas, self.progress)

    def close(self):
        pass


# --- the run directory -------------------------------------------------------------------------
class RunDir:
    """The files of a run: ``tasks/<name>/``; metrics.json (written last) marks a task done."""

    def __init__(self, out):
        self.out = os.fspath(out)
        os.makedirs(os.path.join(self.out, "tasks"), exist_ok=True)

    def task_dir(self, task):
        return os.path.join(self.out, "tasks", task.name)

    def complete(self, task):
        """The task's metrics (dict) when it finished before with the same key, else None."""
        try:
            with open(os.path.join(self.task_dir(task), "metrics.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        if meta.get("task_key") != task.key or meta.get("status") == "interrupted":
            return None
        return meta

    def failure(self, task):
        try:
            with open(os.path.join(self.task_dir(task), "failed.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        return meta.get("error") if meta.get("task_key") == task.key else None

    def store(self, task, files):
        """The task's files, atomically each, metrics.json last; a failure record removed."""
        from ..images import atomic_open

        d = self.task_dir(task)
        os.makedirs(d, exist_ok=True)
        for name in sorted(files, key=lambda n: n == "metrics.json"):
            with atomic_open(os.path.join(d, name)) as f:
                f.write(files[name])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(d, "failed.json"))

    def fail(self, task, error, worker=None):
        from ..images import save_json

        d = self.task_dir(task)
        os.makedirs(d, exist_ok=True)
        save_json(os.path.join(d, "failed.json"), {"task_key": task.key, "task": task.spec(),
                                                   "error": error, "worker": worker})


# --- progress ----------------------------------------------------------------------------------
def _duration(s):
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class BatchProgress:
    """One line per finished task on stderr: done/total, failed, ETA from this run's rate."""

    def __init__(self, total, done, enabled=True, stream=None):
        self.total, self.done, self.failed_names, self.enabled = total, done, set(), enabled
        self.stream, self.ran, self.t0 = stream or sys.stderr, 0, time.perf_counter()

    @property
    def failed(self):
        return len(self.failed_names)

    def update(self, task, meta=None, error=None):
        self.ran += 1
        if error is None:
            self.done += 1
            self.failed_names.discard(task.name)  # a retry that worked
        else:
            self.failed_names.add(task.name)
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        left = max(self.total - self.done - self.failed, 0)
        eta = _duration(elapsed / self.ran * left) if left else "0m00s"
        what = (f"FAILED: {error}" if error is not None else
                f"rel.err {meta['metrics']['relative_error']:.4f} in {meta['wall_time_s']:.1f} s")
        self.stream.write(f"[{self.done}/{self.total} done, {self.failed} failed, ETA {eta}] "
                          f"{task.name}: {what}\n")
        self.stream.flush()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM stops the run like Ctrl-C (the index is written, nothing complete is lost)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave the signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the loop ----------------------------------------------------------------------------------
def run_batch(tasks, out, executor, retry=0, quiet=False):
    """Run the tasks not complete in ``out``; failed ones up to ``retry`` more times.

    Returns the run record: {"executed", "skipped", "failed", "interrupted", "seconds"}."""
    run = RunDir(out)
    todo = [t for t in tasks if run.complete(t) is None]
    skipped = [t.name for t in tasks if t not in todo]
    progress = BatchProgress(len(tasks), len(skipped), enabled=not quiet)
    executed, errors, interrupted, t0 = [], {}, False, time.perf_counter()
    with sigterm_as_interrupt():
        try:
            for _attempt in range(int(retry) + 1):
                errors = {}
                for task, output in executor.run(todo):
                    executed.append(task.name)
                    if output["ok"]:
                        run.store(task, output["files"])
                        progress.update(task, meta=json.loads(output["files"]["metrics.json"]))
                    else:
                        run.fail(task, output["error"], output.get("worker"))
                        errors[task.name] = output["error"]
                        progress.update(task, error=output["error"])
                todo = [t for t in todo if t.name in errors]
                if not todo:
                    break
        except KeyboardInterrupt:
            interrupted = True
    return {"executed": executed, "skipped": skipped, "failed": errors,
            "interrupted": interrupted, "seconds": time.perf_counter() - t0,
            "executor": executor.describe(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - (
                time.perf_counter() - t0)))}
