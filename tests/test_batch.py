"""The batch runner behind `minigrad sweep`: many images, Dask workers, resuming, failures.

Each run is the real command in a subprocess (small images, AlexNet with random conv-only
weights, a few iterations). The Dask tests skip when dask.distributed is not installed
(`pip install -e ".[cluster]"`).
"""
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minigrad.app import CLIError
from minigrad.app.batch import expand_images, option_sets

ROOT = Path(__file__).resolve().parents[1]
needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="dask.distributed is not installed (pip install -e "
                                "'.[cluster]')")


def command(*args):
    return [sys.executable, "-m", "minigrad.cli", *map(str, args)]


def env():
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("MINIGRAD_DEBUG", None)
    return e


def run(*args, timeout=600):
    return subprocess.run(command(*args), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(3):
        a = np.stack([128 + 90 * np.sin(xx / (4 + i)), 128 + 90 * np.cos(yy / (6 + i)),
                      128 + 50 * np.sin((xx + yy) / 9)], -1).astype(np.uint8)
        Image.fromarray(a).save(d / f"img{i}.png")
    return d


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """Random (not pretrained) conv-only alexnet weights: no download needed."""
    import models
    import weights

    rep = models.get("alexnet", weights=None)
    params = {k: v.numpy() for k, v in rep.params.items() if not k.startswith("fc")}
    p = tmp_path_factory.mktemp("w") / "alexnet-random.npz"
    weights.save_npz(p, params, {"variant": "alexnet", "source": "random test weights"})
    return p


def sweep_args(inputs, weights_file, out, iters=3, *extra):
    return ["sweep", *inputs, "--net", "alexnet", "--weights", weights_file, "--layers",
            "conv1", "pool2", "--iters", iters, "--out", out, *extra]


def rows_of(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def task_dirs(out):
    return sorted(p for p in (out / "tasks").iterdir() if p.is_dir())


# --- units ---------------------------------------------------------------------------------------
def test_option_sets_are_the_product_of_the_varies():
    sets = option_sets(["loss_weight=1,20", "seed=0,1"], "ijcv16", {"iters": 5})
    assert [(label, seed) for label, _, _, seed in sets] == [
        ("ijcv16-loss_weight=1", 0), ("ijcv16-loss_weight=1", 1),
        ("ijcv16-loss_weight=20", 0), ("ijcv16-loss_weight=20", 1)]
    assert sets[2][2] == {"iters": 5, "loss_weight": 20}
    assert [s[1] for s in option_sets(["preset=cvpr15,ijcv16"], "cvpr15", {})] == [
        "cvpr15", "ijcv16"]
    with pytest.raises(CLIError, match="--vary 'loss_weight'"):
        option_sets(["loss_weight"], "cvpr15", {})


def test_expand_images_dirs_globs_and_no_match(images, tmp_path):
    found = expand_images([images, str(images / "img1.png"), str(images / "img*.png")])
    assert [os.path.basename(p) for p in found] == ["img0.png", "img1.png", "img2.png"]
    with pytest.raises(CLIError, match="no images match"):
        expand_images([str(tmp_path / "*.jpg")])


# --- the command ---------------------------------------------------------------------------------
def test_workers_1_runs_without_importing_dask(images, weights_file, tmp_path):
    out = tmp_path / "nodask"
    code = ("import sys; from minigrad.cli import main; "
            f"rc = main({[str(a) for a in sweep_args([images], weights_file, out)]!r}"
            " + ['--quiet']); "
            "print('DASK' if any(m.split('.')[0] in ('dask', 'distributed') "
            "for m in sys.modules) else 'NO-DASK', rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True,
                       text=True, timeout=600)
    assert r.stdout.split()[-2:] == ["NO-DASK", "0"], r.stdout + r.stderr
    assert len(rows_of(out)) == 6 and {r["status"] for r in rows_of(out)} == {"completed"}


def test_missing_dask_is_one_line_naming_the_option(images, weights_file, tmp_path):
    code = ("import sys; sys.modules['distributed'] = None; from minigrad.cli import main; "
            f"sys.exit(main({[str(a) for a in sweep_args([images], weights_file, tmp_path)]!r}"
            " + ['--workers', '2']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True,
                       text=True, timeout=600)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "--workers 2 needs Dask" in lines[0] and "minigrad[cluster]" in lines[0]


def test_failed_task_recorded_with_its_message_others_complete(images, weights_file, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("this is not a PNG")
    out = tmp_path / "fail"
    r = run(*sweep_args([images / "img0.png", bad], weights_file, out), "--retry", 1)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    rows = {row["task"]: row for row in rows_of(out)}
    assert len(rows) == 4
    failed = [row for row in rows.values() if row["image"] == str(bad)]
    assert len(failed) == 2
    for row in failed:
        assert row["status"] == "failed" and "cannot read image" in row["error"]
        meta = json.loads((out / "tasks" / row["task"] / "failed.json").read_text())
        assert "cannot read image" in meta["error"]
    for row in rows.values():
        if row["image"] != str(bad):
            assert row["status"] == "completed" and float(row["relative_error"]) > 0
    record = json.loads((out / "results.json").read_text())["runs"][-1]
    assert len(record["executed"]) == 4 + 2  # --retry 1: the two failed tasks ran again
    assert "failed: bad.alexnet.conv1" in r.stderr
    html = (out / "index.html").read_text()
    assert "sheets/image-img0.png" in html and "sheets/layer-alexnet-conv1.png" in html
    for sheet in ("image-img0.png", "image-bad.png", "layer-alexnet-pool2.png"):
        with Image.open(out / "sheets" / sheet) as im:
            im.verify()


def _wait_for(predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_interrupted_run_restarted_recomputes_nothing_complete(images, weights_file, tmp_path):
    out = tmp_path / "resume"
    args = sweep_args([images], weights_file, out, 40, "--quiet")
    p = subprocess.Popen(command(*args), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: len(list(out.glob("tasks/*/metrics.json"))) >= 2, p)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    before = {m.parent.name: m.stat().st_mtime_ns for m in out.glob("tasks/*/metrics.json")}
    assert 2 <= len(before) < 6
    r = run(*args)
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "results.json").read_text())["runs"]
    assert record[0]["interrupted"] is True and record[-1]["interrupted"] is False
    assert sorted(record[-1]["skipped"]) == sorted(before)
    assert len(record[-1]["executed"]) == 6 - len(before)
    assert not set(record[-1]["executed"]) & set(before)
    for name, mtime in before.items():
        assert (out / "tasks" / name / "metrics.json").stat().st_mtime_ns == mtime
    assert [row["status"] for row in rows_of(out)] == ["completed"] * 6


def _same_task_outputs(a, b):
    names = [d.name for d in task_dirs(a)]
    assert names == [d.name for d in task_dirs(b)] and len(names) == 6
    for n in names:
        for f in ("reconstruction.png", "history.csv"):
            assert (a / "tasks" / n / f).read_bytes() == (b / "tasks" / n / f).read_bytes(), n
        ma, mb = (json.loads((d / "tasks" / n / "metrics.json").read_text()) for d in (a, b))
        assert ma["metrics"] == mb["metrics"] and ma["task_key"] == mb["task_key"]
    return names


@needs_dask
def test_two_dask_workers_bit_identical_to_one_process(images, weights_file, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = run(*sweep_args([images], weights_file, one), "--workers", 1, "--blas-threads", 1)
    r2 = run(*sweep_args([images], weights_file, two), "--workers", 2)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert "dask (local cluster, 2 workers" in r2.stderr
    _same_task_outputs(one, two)
    pids = {json.loads(m.read_text())["worker"]["pid"] for m in two.glob("tasks/*/metrics.json")}
    assert len(pids) == 2  # both workers took tasks
    assert all(json.loads(m.read_text())["blas_threads"] == 1
               for m in two.glob("tasks/*/metrics.json"))


@needs_dask
def test_worker_killed_mid_run_every_task_once(images, weights_file, tmp_path):
    out = tmp_path / "killed"
    args = sweep_args([images], weights_file, out, 30, "--workers", 2, "--vary", "seed=0,1")
    p = subprocess.Popen(command(*args), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: any(out.glob("tasks/*/metrics.json")), p)
        first = json.loads(next(out.glob("tasks/*/metrics.json")).read_text())
        os.kill(first["worker"]["pid"], signal.SIGKILL)
        _, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    rows = rows_of(out)
    assert len(rows) == 12 and len({r["task"] for r in rows}) == 12
    assert {r["status"] for r in rows} == {"completed"}
    assert len(task_dirs(out)) == 12
    record = json.loads((out / "results.json").read_text())["runs"][-1]
    assert sorted(record["executed"]) == sorted(r["task"] for r in rows)  # once each
    pids = {r["worker"] for r in rows}
    assert len(pids) >= 2 and f"{first['worker']['host']}:{first['worker']['pid']}" in pids


@needs_dask
def test_local_dask_workers_keep_glibc_malloc_defaults():
    """Dask's nanny would start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes every
    NumPy temporary an mmap/munmap round trip (an inversion about 2x slower); ours start
    without it, and with one BLAS thread each."""
    from minigrad.app.batch_dask import DaskExecutor

    executor = DaskExecutor(workers=2)
    try:
        trim = executor.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        blas = executor.client.run(os.environ.get, "OPENBLAS_NUM_THREADS")
    finally:
        executor.close()
    assert len(trim) == 2 and set(trim.values()) == {None}
    assert set(blas.values()) == {"1"}
