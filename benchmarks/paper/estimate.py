"""The estimated time of the papers' full protocol, from the time per task measured in a run.

The full protocol's tasks are planned (not run) with the same evaluation code; each task is
costed at the measured seconds per iteration per input pixel of its (network, layer), or of
its network where that layer was not run. Time on N workers = the sum / N (tasks are
independent; the measured times already include the contention of the run's own workers).
"""
import dataclasses
import tempfile

from . import imageset


class _NoExecutor:
    def describe(self):
        return "planning only"

    def close(self):
        pass


def _work(task, shape):
    """Iterations × restarts × input pixels of a task (shape: (R, C, H, W))."""
    iters = dict(task.options).get("iters")
    return (iters or 0) * shape[0] * shape[-1] * shape[-2]


def measured_rates(run):
    """{(net, layer): s per unit of work} and {net: s per unit} from the run's tasks."""
    by_layer, by_net = {}, {}
    for r in run.results.values():
        units = r.metrics["iterations"] * r.x.shape[0] * r.x.shape[-1] * r.x.shape[-2]
        if units <= 0:
            continue
        for table, k in ((by_layer, (r.task.net, r.task.layer)), (by_net, r.task.net)):
            t, u = table.get(k, (0.0, 0))
            table[k] = (t + r.wall_time, u + units)
    return ({k: t / u for k, (t, u) in by_layer.items()},
            {k: t / u for k, (t, u) in by_net.items()})


def estimate_full(run, src, log, workers, plan, cfg, names):
    """{"tasks", "seconds_one_worker", "by_net", "workers": {N: seconds}} (and logs it).

    ``plan(cfg, runner, images, src, notes, plan_only=True)`` plans protocol ``cfg`` on the
    images ``names`` (run.run_passes, passed in so that this module does not import run)."""
    from .batch import BatchRunner

    rate_layer, rate_net = measured_rates(run)
    cfg = dataclasses.replace(cfg)
    full_images, _, notes = imageset.load_set(names, lambda m: None)
    with tempfile.TemporaryDirectory(prefix="minigrad-plan-") as tmp:
        cfg.out = tmp
        planner = BatchRunner(tmp, _NoExecutor(), log=lambda m: None)
        planner._memo.update(run._memo)  # the networks already loaded
        plan(cfg, planner, full_images, src, notes, plan_only=True)
    total, by_net, unknown = 0.0, {}, set()
    for key, task in planner.planned.items():
        rate = rate_layer.get((task.net, task.layer), rate_net.get(task.net))
        if rate is None:
            unknown.add(task.net)
            continue
        s = _work(task, planner.shapes[key]) * rate
        total += s
        n, t = by_net.get(task.net, (0, 0.0))
        by_net[task.net] = (n + 1, t + s)
    out = {"tasks": len(planner.planned), "seconds_one_worker": total,
           "by_net": {k: {"tasks": n, "seconds": t} for k, (n, t) in by_net.items()},
           "workers": {int(n): total / n for n in workers}, "images": len(full_images),
           "not_costed": sorted(unknown), "notes": notes}
    log(f"full protocol: {out['tasks']} inversions on {len(full_images)} images; estimated "
        + ", ".join(f"{s / 3600:.1f} h on {n} workers" for n, s in out["workers"].items())
        + (f" (not costed, never measured: {', '.join(sorted(unknown))})" if unknown else ""))
    return out
