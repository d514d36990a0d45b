"""The paper evaluation's inversions on minigrad's batch runner (``minigrad/app/batch.py``).

The evaluation is written as plain calls ``run(rep, image, layer, preset, **options)``. It is
run in passes: in a planning pass every call that has no result yet records its task and
returns a stand-in (the original itself, error 0), so the pass goes through to the end and
collects every inversion the evaluation needs; then all those tasks run at once on the
executor (in process, a local Dask cluster or an existing one), and the next pass gets the real
results. A pass that needs no new task is the final one. A cvpr15 run that diverged is run
again at a tenth of the learning rate, which is a task of the next pass.

The tasks' folders go to a run directory, so an interrupted evaluation started again runs only
what is missing.
"""
import dataclasses
import hashlib
import json
import os
import types

import numpy as np

from minigrad.app.batch import Task, run_batch, slug
from minigrad.images import save_png
from minigrad.inversion import resolve_options


class BatchRunner:
    """``run(rep, image, layer, preset, **kw)`` -> a result (x, image, metrics, options, ...)."""

    def __init__(self, run_dir, executor, log=print):
        self.dir, self.executor, self.log = os.fspath(run_dir), executor, log
        os.makedirs(os.path.join(self.dir, "inputs"), exist_ok=True)
        self.specs = {}  # id(rep) -> (rep, models.get arguments)
        self.planned, self.results, self.reps = {}, {}, {}
        self.retries, self.records, self.shapes, self._memo = [], [], {}, {}

    def memo(self, key, make):
        """``make()`` once per runner: every pass uses the same networks."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def uses(self, rep, net, weights="default", **net_options):
        """Say how ``rep`` is built (a worker builds its own from this)."""
        self.specs[id(rep)] = (rep, net, weights, tuple(sorted(net_options.items())))
        return rep

    def begin_pass(self):
        self.planned, self.retries = {}, []

    @property
    def count(self):
        return len(self.results)

    @property
    def seconds(self):
        return sum(r.wall_time for r in self.results.values())

    def _input(self, image):
        a = np.ascontiguousarray(image)
        digest = hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()[:12]
        path = os.path.join(self.dir, "inputs", f"img-{digest}.png")
        if not os.path.exists(path):
            save_png(path, a)  # lossless: the worker reads back the same array
        return path

    def task(self, rep, image, layer, preset, kw):
        _, net, weights, net_options = self.specs[id(rep)]
        kw = dict(kw)
        seed = int(kw.pop("seed", 0))
        size = tuple(rep.input_size) if rep.input_size else None
        t = Task(image=self._input(image), net=net, layer=layer, preset=preset,
                 options=tuple(sorted(kw.items())), seed=seed, weights=weights,
                 net_options=net_options, input_size=size, save_x=True)
        label = "-".join(f"{k}={v}" for k, v in t.options) or "default"
        name = ".".join(slug(s) for s in (os.path.basename(t.image)[4:-4], net, layer, preset,
                                           label[:60], t.key[:8]))
        return dataclasses.replace(t, name=name)

    def __call__(self, rep, image, layer, preset, **kw):
        t = self.task(rep, image, layer, preset, kw)
        if t.key not in self.results:
            self.planned[t.key] = t
            self.reps[t.key] = rep
            stand_in = self._stand_in(rep, image, layer, preset, kw)
            self.shapes[t.key] = stand_in.x.shape
            return stand_in
        r = self.results[t.key]
        if r.status == "non-finite" and preset == "cvpr15" and "lr" not in kw:
            # the momentum iteration diverged (x^6 overflowed): run again at a tenth of the
            # learning rate and keep both in the record; the retry is what the tables use
            retry = self(rep, image, layer, preset, lr=r.options["lr"] / 10, **kw)
            retry.retry_of = r
            self.retries.append({
                "representation": rep.name, "layer": layer, "options": repr(kw),
                "message": r.message, "first_error": r.metrics["relative_error"],
                "retry_lr": r.options["lr"] / 10, "retry_status": retry.status,
                "retry_error": retry.metrics["relative_error"]})
            return retry
        return r

    @staticmethod
    def _stand_in(rep, image, layer, preset, kw):
        n = int(kw.get("restarts", 1))
        x0 = rep.preprocess(image).numpy()
        im0 = rep.deprocess(x0)
        opts = {k: v for k, v in resolve_options(rep, layer, preset, **kw).items()
                if k not in ("callback", "original", "mask", "init")}
        return types.SimpleNamespace(
            x=np.repeat(x0, n, axis=0), image=im0 if n == 1 else [im0] * n,
            metrics={"relative_error": 0.0, "relative_error_per_restart": [0.0] * n,
                     "iterations": 0}, options=opts, status="planned", message="",
            wall_time=0.0)

    def execute(self, retry=1):
        """Run the planned tasks; then their results are there for the next pass."""
        tasks = list(self.planned.values())
        self.log(f"running {len(tasks)} inversions on {self.executor.describe()} "
                 f"(run directory {self.dir})")
        record = run_batch(tasks, self.dir, self.executor, retry=retry)
        self.records.append(record)
        if record["interrupted"]:
            raise KeyboardInterrupt
        if record["failed"]:
            name, error = next(iter(record["failed"].items()))
            raise RuntimeError(f"{len(record['failed'])} inversions failed, e.g. {name}: {error}")
        for t in tasks:
            self.results[t.key] = self._load(t, self.reps[t.key])

    def _load(self, task, rep):
        d = os.path.join(self.dir, "tasks", task.name)
        with open(os.path.join(d, "metrics.json"), encoding="utf-8") as f:
            meta = json.load(f)
        x = np.load(os.path.join(d, "x.npy"), allow_pickle=False)
        images = [rep.deprocess(x[i:i + 1]) for i in range(x.shape[0])]
        return types.SimpleNamespace(
            x=x, image=images[0] if len(images) == 1 else images, metrics=meta["metrics"],
            options=meta["options"], status=meta["status"], message=meta["message"],
            wall_time=meta["wall_time_s"], worker=meta.get("worker"), task=task)
