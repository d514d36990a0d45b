"""Reproduce the papers' evaluation: Table 1 (HOG/HOGb/DSIFT), per-layer CNN error curves and
the qualitative figures; write REPORT.md, results.json and PNG figures.

    python -m benchmarks.paper            # the full run (writes benchmarks/paper/REPORT.md)
    python -m benchmarks.paper --quick    # 2 bundled images, few iterations (< 10 min, 2 cores)
    python -m benchmarks.paper --tiny --out DIR   # the smallest configuration (the test's)

See benchmarks/paper/README section of REPORT.md for what each configuration runs.
"""
import argparse
import dataclasses
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import models
import weights as weights_pkg
from minigrad.images import save_json, save_text
from minigrad.inversion import lambda_tv_for
from minigrad.inversion import metrics as M
from minigrad.tensor import Tensor, no_grad

from . import imageset
from .plot import labelled_grid, layer_plot, save_png_capped
from .published import PUBLISHED  # noqa: F401 - part of this module's interface

HERE = Path(__file__).resolve().parent
ALEXNET_LAYERS = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3",
                  "conv4", "relu4", "conv5", "relu5", "pool5")
VGG_LAYERS = ("pool1", "pool2", "pool3", "pool4", "pool5")
ALL_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "grass", "hubble")


@dataclasses.dataclass
class Config:
    mode: str
    table_images: tuple
    table_size: int  # grey S×S input of HOG/HOGb/DSIFT
    table_iters: int  # cvpr15 HOG/DSIFT schedule is 800 iterations
    hog27: bool  # also invert HOG with the loss on its 27 (18+9) channels only
    cnn_image: str
    alexnet_layers: tuple
    cnn_iters_cvpr: int  # preset: 400
    cnn_iters_ijcv: int  # preset: 350 (300 + 50)
    vgg_layers: tuple
    vgg_size: int  # VGG-16 input size (224 in the papers)
    vgg_iters: int
    fig_iters: int
    window_layers: tuple
    half_layers: tuple
    Cs: tuple = (1, 20, 100, 300)
    dsift_bin: int = 5  # CVPR15: 5-pixel bins
    dsift_step: int = 15  # CVPR15's network: one descriptor every 3 bins
    deep_layer: str = "pool5"
    allow_random_weights: bool = False
    cnn_images: tuple = ()  # images of the CNN curves (averaged); empty: cnn_image only
    vgg_iters_ijcv: int = 0  # 0: vgg_iters for ijcv16 too
    vgg_images: tuple = ()  # images of the VGG-16 curves; empty: those of the AlexNet curves


CONFIGS = {
    "full": Config(  # the papers' protocol: every image, their iteration counts, VGG at 224
        mode="full", table_images=ALL_IMAGES, table_size=160, table_iters=800, hog27=True,
        cnn_image="chelsea", cnn_images=ALL_IMAGES, alexnet_layers=ALEXNET_LAYERS,
        cnn_iters_cvpr=400, cnn_iters_ijcv=350, vgg_layers=VGG_LAYERS, vgg_size=224,
        vgg_iters=400, vgg_iters_ijcv=350, fig_iters=400,
        window_layers=("conv1", "pool1", "pool2", "relu3", "relu5", "pool5"),
        half_layers=("conv1", "pool1", "pool2"),
    ),
    "hour": Config(  # the largest that fits about an hour with --workers 2 on 2 cores: the
        # papers' iteration counts everywhere, AlexNet on the 4 bundled photographs, VGG-16 at
        # 112 px on 2 of them (a VGG-16 task is 50-110 s at one BLAS thread)
        mode="hour", table_images=ALL_IMAGES, table_size=160, table_iters=800, hog27=True,
        cnn_image="chelsea", cnn_images=("chelsea", "astronaut", "coffee", "rocket"),
        alexnet_layers=ALEXNET_LAYERS, cnn_iters_cvpr=400, cnn_iters_ijcv=350,
        vgg_layers=VGG_LAYERS, vgg_size=112, vgg_iters=400, vgg_iters_ijcv=350,
        vgg_images=("chelsea", "astronaut"), fig_iters=400,
        window_layers=("conv1", "pool1", "pool2", "relu3", "relu5", "pool5"),
        half_layers=("conv1", "pool1", "pool2"),
    ),
    "budget": Config(  # what fits ~10 minutes in one process on 2 cores (today's REPORT.md)
        mode="budget", table_images=ALL_IMAGES, table_size=160, table_iters=800, hog27=True,
        cnn_image="chelsea", alexnet_layers=ALEXNET_LAYERS, cnn_iters_cvpr=80,
        cnn_iters_ijcv=80, vgg_layers=VGG_LAYERS, vgg_size=112, vgg_iters=32, fig_iters=80,
        window_layers=("conv1", "pool1", "pool2", "relu3", "relu5", "pool5"),
        half_layers=("conv1", "pool1", "pool2"),
    ),
    "quick": Config(
        mode="quick", table_images=("astronaut", "chelsea"), table_size=128, table_iters=200,
        hog27=True, cnn_image="chelsea", alexnet_layers=ALEXNET_LAYERS, cnn_iters_cvpr=16,
        cnn_iters_ijcv=16, vgg_layers=VGG_LAYERS, vgg_size=64, vgg_iters=8, fig_iters=16,
        window_layers=("conv1", "pool2", "pool5"), half_layers=("conv1", "pool1", "pool2"),
    ),
    "tiny": Config(
        mode="tiny", table_images=("astronaut", "chelsea"), table_size=64, table_iters=8,
        hog27=True, cnn_image="chelsea", alexnet_layers=("conv1", "pool5"), cnn_iters_cvpr=3,
        cnn_iters_ijcv=3, vgg_layers=("pool1", "pool5"), vgg_size=64, vgg_iters=2,
        fig_iters=2, window_layers=("conv1", "pool5"), half_layers=("conv1",),
        allow_random_weights=True,
    ),
}

_T0 = time.perf_counter()
_LOG = {"quiet": False}  # quiet during planning passes (their numbers are stand-ins)


def log(msg):
    if not _LOG["quiet"]:
        print(f"[{time.perf_counter() - _T0:8.1f}s] {msg}", flush=True)


# --- helpers ---------------------------------------------------------------------------------
def code(rep, x, layer):
    """Φ at ``layer`` of an input-space array/Tensor (N, C, H, W), as host float64."""
    with no_grad():
        t = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float32))
        return np.asarray(rep.forward(t, layer).data, dtype=np.float64)


def mean_std(v):
    v = np.asarray(v, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def ci95(v):
    v = np.asarray(v, dtype=np.float64)
    return 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else 0.0


def get_cnn(name, cfg, notes):
    """The network with its real weights; random weights only where the config allows it."""
    if cfg.allow_random_weights and weights_pkg.cached_path(name) is None:  # no network
        notes.append(f"{name}: real weights are not cached; used seeded RANDOM weights (not "
                     "pretrained) so the pipeline still runs")
        return models.get(name, weights=None), "RANDOM (not pretrained)"
    try:
        return models.get(name), "ImageNet (torchvision, conv layers)"
    except Exception as exc:  # noqa: BLE001
        if not cfg.allow_random_weights:
            raise
        notes.append(f"{name}: real weights not available ({exc}); used seeded RANDOM weights "
                     "(not pretrained) so the pipeline still runs")
        return models.get(name, weights=None), "RANDOM (not pretrained)"


# --- Table 1 ---------------------------------------------------------------------------------
def table1(cfg, images, run, figs):
    methods = [("HOG", "hog", {}, None), ("HOGb", "hogb", {}, None),
               ("DSIFT", "dsift", {"bin_size": cfg.dsift_bin, "step": cfg.dsift_step}, None)]
    if cfg.hog27:
        methods.append(("HOG (27-D loss)", "hog", {}, 27))
    S = cfg.table_size
    sq = {n: imageset.square(a, S) for n, a in images.items()}
    rows, recon = [], {}
    for label, name, kw, nch in methods:
        rep = run.uses(run.memo((name, repr(kw)), lambda n=name, k=kw: models.get(n, **k)),
                       name, **kw)
        layer = rep.layers[0]

        def restrict(c, nch=nch):
            return c if nch is None else c[:, :nch]

        codes = {n: restrict(code(rep, rep.preprocess(a), layer)) for n, a in sq.items()}
        stack = np.concatenate(list(codes.values()))
        n_unsq = M.pairwise_normaliser(stack)
        n_sq = M.pairwise_normaliser(stack, squared=True)
        per = []
        t0 = time.perf_counter()
        for n, a in sq.items():
            extra = {} if nch is None else {"channels": f"0:{nch}"}
            r = run(rep, a, layer, "cvpr15", iters=cfg.table_iters, **extra)
            phi = restrict(code(rep, r.x, layer))
            phi0 = codes[n]
            per.append({
                "image": n,
                "err": 100 * M.normalised_error(phi, phi0, n_unsq),
                "err_sq": 100 * M.normalised_error(phi, phi0, n_sq, squared=True),
                "rel": 100 * M.relative_error(phi, phi0),
                "status": r.status, "retried": hasattr(r, "retry_of"),
            })
            recon[(label, n)] = r.image
        res = {"method": label, "representation": name, "options": kw,
               "loss_channels": nch, "code_shape": list(stack.shape[1:]),
               "normaliser": n_unsq, "normaliser_squared": n_sq, "per_image": per,
               "seconds": time.perf_counter() - t0}
        for key in ("err", "err_sq", "rel"):
            m, s = mean_std([p[key] for p in per])
            res[key] = {"mean": m, "std": s, "ci95": ci95([p[key] for p in per])}
        rows.append(res)
        log(f"Table 1 {label}: {res['err']['mean']:.2f} ± {res['err']['std']:.2f} (unsquared), "
            f"{res['err_sq']['mean']:.2f} ± {res['err_sq']['std']:.2f} (squared), rel "
            f"{res['rel']['mean']:.2f}")
    # figure: originals, the HOG glyphs and the reconstructions for (up to) 3 images
    hog = models.get("hog")
    tiles, labels = [], []
    shown = list(sq)[:3]
    for n in shown:
        grey = hog.deprocess(hog.preprocess(sq[n]))
        tiles += [grey, hog.render(code(hog, hog.preprocess(sq[n]), "hog"), glyph_size=9)]
        labels += [n, "HOG glyphs"]
        for label, *_ in methods:
            tiles.append(recon[(label, n)])
            labels.append(label)
    ncols = 2 + len(methods)
    figs["table1"] = save_fig(cfg, "table1_reconstructions", labelled_grid(
        tiles, labels, ncols, cell=140, title=f"CVPR15 inversion of HOG/HOGb/DSIFT "
                                              f"({S}x{S} grey, {cfg.table_iters} iterations)"))
    return rows


# --- CNN curves ------------------------------------------------------------------------------
def cnn_configs(cfg, iters_cvpr, iters_ijcv):
    out = [("cvpr15", "cvpr15", {"iters": iters_cvpr})]
    out += [(f"ijcv16 C={C}", "ijcv16", {"iters": iters_ijcv, "loss_weight": float(C)})
            for C in cfg.Cs]
    return out


def classification_consistency(rep, x_rec, x0):
    """IJCV16: does the reconstruction get the original's top-1 class? None without fc8."""
    if "fc8" not in rep.layers or not rep.has_weights("fc8"):
        return None
    return bool(code(rep, x_rec, "fc8").argmax() == code(rep, x0, "fc8").argmax())


def cnn_curves(cfg, net, rep, images, layers, iters_cvpr, iters_ijcv, run):
    """Relative error per layer and configuration, averaged over ``images`` (name -> array);
    the reconstructions of the first image for the strip figure."""
    configs = cnn_configs(cfg, iters_cvpr, iters_ijcv)
    per_image = {label: [[] for _ in layers] for label, _, _ in configs}
    strip = {label: [] for label, _, _ in configs}
    details = []
    for k, (name, image) in enumerate(images.items()):
        x0 = rep.preprocess(image)
        for i, layer in enumerate(layers):
            for label, preset, kw in configs:
                r = run(rep, image, layer, preset, **kw)
                e = r.metrics["relative_error"]
                per_image[label][i].append(e)
                if k == 0:
                    strip[label].append(r.image)
                details.append({"image": name, "layer": layer, "config": label,
                                "relative_error": e,
                                "naturalness": r.metrics.get("naturalness"),
                                "status": r.status,
                                "seconds": r.wall_time, "retried": hasattr(r, "retry_of"),
                                "consistent": classification_consistency(rep, r.x, x0),
                                "lambda_tv": r.options.get("lambda_tv"),
                                "jitter": r.options.get("jitter"),
                                "iters": r.options.get("iters")})
    curves = {label: [float(np.mean(v)) for v in vs] for label, vs in per_image.items()}
    return {"layers": list(layers), "images": list(images), "curves": curves,
            "details": details}, strip


# --- figures ---------------------------------------------------------------------------------
def save_fig(cfg, name, image):
    if getattr(cfg, "planning", False):  # a planning pass: stand-in results, no figure
        return {"file": f"figures/{name}.png", "bytes": 0}
    path = cfg.out / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbytes = save_png_capped(path, image)
    log(f"  wrote {path} ({nbytes / 1e3:.0f} KB)")
    return {"file": f"figures/{name}.png", "bytes": nbytes}


def strip_figure(cfg, name, title, image, layers, images_by_config, cell):
    tiles, labels = [], []
    for label, ims in images_by_config.items():
        tiles += [image] + list(ims)
        labels += [label] + list(layers)
    return save_fig(cfg, name, labelled_grid(tiles, labels, ncols=len(layers) + 1, cell=cell,
                                             title=title))


def option_sweep(run, rep, image, layer, iters, option, values, default, symbol):
    """cvpr15 reconstructions at ``layer`` for each value of one option: tiles, labels, errors.

    The preset's own value is passed as no override at all, so that run is the plain preset.
    """
    tiles, labels, errors = [image], ["original"], {}
    for v in values:
        kw = {} if v == default else {option: v}
        r = run(rep, image, layer, "cvpr15", iters=iters, **kw)
        tiles.append(r.image)
        labels.append(f"{symbol}={v:g} ({r.metrics['relative_error']:.2f})")
        errors[f"{v:g}"] = r.metrics["relative_error"]
    return tiles, labels, errors


def figures(cfg, rep, image, run, figs, out):
    it = cfg.fig_iters
    deep = cfg.deep_layer
    # restarts
    r = run(rep, image, deep, "cvpr15", iters=it, restarts=4)
    rel = r.metrics["relative_error_per_restart"]
    figs["restarts"] = save_fig(cfg, "restarts_pool5", labelled_grid(
        [image] + list(r.image), ["original"] + [f"restart {i + 1} ({e:.2f})"
                                                 for i, e in enumerate(rel)],
        ncols=5, cell=150, title=f"4 restarts from alexnet {deep} (cvpr15, {it} iterations)"))
    out["restarts"] = rel
    # lambda TV
    tiles, labels, out["lambda_tv"] = option_sweep(
        run, rep, image, deep, it, "lambda_tv", (1.0, 10.0, 100.0), lambda_tv_for(rep, deep), "λTV")
    figs["lambda_tv"] = save_fig(cfg, "lambda_tv_pool5", labelled_grid(
        tiles, labels, ncols=4, cell=160,
        title=f"λTV at alexnet {deep} (cvpr15, β=2, {it} iterations)"))
    # beta
    tiles, labels, out["beta"] = option_sweep(
        run, rep, image, deep, it, "beta", (1.0, 2.0), 2.0, "β")
    figs["beta"] = save_fig(cfg, "beta_pool5", labelled_grid(
        tiles, labels, ncols=3, cell=160,
        title=f"β=1 vs β=2 at alexnet {deep} (cvpr15, λTV={lambda_tv_for(rep, deep):g}, "
              f"{it} iterations)"))
    # central 5x5 windows
    tiles, labels, out["window"] = [image], ["original"], {}
    for layer in cfg.window_layers:
        shape = rep.output_shape(layer)
        if min(shape[-2:]) < 5:
            out["window"][layer] = None
            continue
        r = run(rep, image, layer, "cvpr15", iters=it, window=5)
        size, stride = rep.receptive_field(layer)
        tiles.append(r.image)
        labels.append(f"{layer} ({size + 4 * stride}px)")
        out["window"][layer] = r.metrics["relative_error"]
    figs["window"] = save_fig(cfg, "window5x5", labelled_grid(
        tiles, labels, ncols=len(tiles), cell=130,
        title=f"from the central 5x5 window of the code (cvpr15 window schedule, {it} it.)"))
    # channel halves
    tiles, labels, out["halves"] = [], [], {}
    for half in ("first-half", "second-half"):
        tiles.append(image)
        labels.append("original")
        for layer in cfg.half_layers:
            r = run(rep, image, layer, "cvpr15", iters=it, channels=half)
            n = rep.output_shape(layer)[0]
            sl = f"0:{n // 2}" if half == "first-half" else f"{n // 2}:{n}"
            tiles.append(r.image)
            labels.append(f"{layer} ch {sl}")
            out["halves"][f"{layer} {half}"] = r.metrics["relative_error"]
    figs["halves"] = save_fig(cfg, "channel_halves", labelled_grid(
        tiles, labels, ncols=len(cfg.half_layers) + 1, cell=150,
        title=f"first (top) vs second (bottom) half of the channels, alexnet ({it} it.)"))


# --- environment -----------------------------------------------------------------------------
def environment():
    from minigrad.app.outputs import cpu_model, versions

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"

    return dict(versions(), commit=git("rev-parse", "--short", "HEAD"), cpu=cpu_model(),
                cores=os.cpu_count(),
                load_start=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)


# --- main ------------------------------------------------------------------------------------
def evaluate(cfg, run, images, src, notes):
    """Every section, on ``run``: (sections' seconds, figures, results)."""
    sections, figs = {}, {}
    t = time.perf_counter()
    log(f"Table 1: {len(images)} images, {cfg.table_size}x{cfg.table_size} grey, "
        f"{cfg.table_iters} iterations")
    table = table1(cfg, images, run, figs)
    sections["table1"] = time.perf_counter() - t

    t = time.perf_counter()
    alex, alex_w = run.memo("alexnet", lambda: get_cnn("alexnet", cfg, notes))
    run.uses(alex, "alexnet", weights=None if alex_w.startswith("RANDOM") else "default")
    cnn_images = {n: images[n] for n in cfg.cnn_images if n in images} or {cfg.cnn_image: src}
    cnn_images = {cfg.cnn_image: src, **cnn_images}  # the figure image first
    img224 = imageset.square(src, alex.input_size[0])
    log(f"AlexNet curves: {len(cnn_images)} images x {len(cfg.alexnet_layers)} layers x "
        f"{1 + len(cfg.Cs)} configurations")
    alex_res, alex_imgs = cnn_curves(
        cfg, "alexnet", alex, {n: imageset.square(a, alex.input_size[0])
                               for n, a in cnn_images.items()},
        cfg.alexnet_layers, cfg.cnn_iters_cvpr, cfg.cnn_iters_ijcv, run)
    sections["alexnet curves"] = time.perf_counter() - t

    t = time.perf_counter()
    vgg, vgg_w = run.memo("vgg16", lambda: get_cnn("vgg16", cfg, notes))
    vgg.input_size = (cfg.vgg_size, cfg.vgg_size)  # the instance only; layers accept any size
    run.uses(vgg, "vgg16", weights=None if vgg_w.startswith("RANDOM") else "default")
    imgv = imageset.square(src, cfg.vgg_size)
    vgg_images = {n: a for n, a in cnn_images.items() if n in cfg.vgg_images} or cnn_images
    log(f"VGG-16 curves at {cfg.vgg_size}x{cfg.vgg_size}: {len(vgg_images)} images x "
        f"{len(cfg.vgg_layers)} layers")
    vgg_res, vgg_imgs = cnn_curves(
        cfg, "vgg16", vgg, {n: imageset.square(a, cfg.vgg_size) for n, a in vgg_images.items()},
        cfg.vgg_layers, cfg.vgg_iters, cfg.vgg_iters_ijcv or cfg.vgg_iters, run)
    sections["vgg16 curves"] = time.perf_counter() - t

    t = time.perf_counter()
    n_img = f"{len(cnn_images)} images" if len(cnn_images) > 1 else cfg.cnn_image
    for name, res, title in (("curves_alexnet", alex_res, "AlexNet (torchvision weights)"),
                             ("curves_vgg16", vgg_res, f"VGG-16 at {cfg.vgg_size}px")):
        figs[name] = save_fig(cfg, name, layer_plot(
            res["curves"], res["layers"], title=f"{title}: relative error by layer ({n_img})"))
    figs["strip_alexnet"] = strip_figure(
        cfg, "strip_alexnet", "alexnet, every layer conv1…pool5 (rows: cvpr15, ijcv16 C=…)",
        img224, alex_res["layers"], alex_imgs, cell=84)
    figs["strip_vgg16"] = strip_figure(
        cfg, "strip_vgg16", f"vgg16 at {cfg.vgg_size}px, block outputs", imgv,
        vgg_res["layers"], vgg_imgs, cell=84)
    fig_out = {}
    log("figures")
    figures(cfg, alex, img224, run, figs, fig_out)
    sections["figures"] = time.perf_counter() - t
    return sections, figs, {"table1": table, "alexnet": alex_res, "vgg16": vgg_res,
                            "weights": {"alexnet": alex_w, "vgg16": vgg_w},
                            "figure_errors": fig_out}


def run_passes(cfg, run, images, src, notes, plan_only=False):
    """Plan, run the planned tasks, and again, until a pass needs nothing new."""
    for _ in range(4):
        run.begin_pass()
        cfg.planning = _LOG["quiet"] = True
        try:
            evaluate(cfg, run, images, src, notes)  # get_cnn's notes come once (memo)
        finally:
            _LOG["quiet"] = False
        if not run.planned or plan_only:
            break
        run.execute()
    if plan_only:
        return None
    cfg.planning = False
    run.begin_pass()
    out = evaluate(cfg, run, images, src, notes)
    assert not run.planned, "a final pass needed new inversions"
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.paper",
                                 description="Reproduce the papers' evaluation (issue 7) on "
                                 "minigrad's batch runner (issue 16).")
    ap.add_argument("--protocol", choices=list(CONFIGS), default="budget",
                    help="full: the papers' protocol (every image, 400/350 iterations, VGG-16 "
                    "at 224); hour: their iterations on fewer images, VGG-16 at 112 (about an "
                    "hour with --workers 2 on 2 cores); budget (default): ~10 min on 2 cores; "
                    "quick; tiny (the test's)")
    ap.add_argument("--quick", action="store_const", dest="protocol", const="quick",
                    help="= --protocol quick")
    ap.add_argument("--tiny", action="store_const", dest="protocol", const="tiny",
                    help="= --protocol tiny")
    ap.add_argument("--out", help="output folder (default: benchmarks/paper for the budget "
                    "protocol, benchmarks/paper/<protocol> for full, $MINIGRAD_HOME/paper/"
                    "<protocol> otherwise)")
    ap.add_argument("--run-dir", help="the task folders (default: OUT/runs, or "
                    "$MINIGRAD_HOME/paper/runs/<protocol> for a folder in the repository); "
                    "a run started again skips the complete tasks")
    ap.add_argument("--workers", type=int, default=1,
                    help="N > 1: a local Dask cluster of N processes (minigrad[cluster])")
    ap.add_argument("--scheduler", metavar="tcp://HOST:8786", help="an existing Dask cluster")
    ap.add_argument("--blas-threads", type=int, metavar="N", help="BLAS threads per task")
    ap.add_argument("--estimate", type=int, nargs="+", default=[1, 2, 8, 32], metavar="N",
                    help="print the full protocol's estimated time on these worker counts")
    return ap.parse_args(argv)


def _paths(args, mode):
    out = Path(args.out) if args.out else (
        HERE if mode == "budget" else HERE / mode if mode in ("full", "hour")
        else imageset.cache_dir() / mode)
    inside = out.resolve() == HERE or HERE in out.resolve().parents
    run_dir = Path(args.run_dir) if args.run_dir else (
        imageset.cache_dir() / "runs" / mode if inside else out / "runs")
    return out, run_dir


def _command(args, mode):
    parts = ["python -m benchmarks.paper"] + (
        [] if mode == "budget" else [f"--{mode}"] if mode in ("quick", "tiny")
        else [f"--protocol {mode}"])
    for flag, v in (("--out", args.out), ("--workers", args.workers if args.workers != 1 else
                                          None), ("--scheduler", args.scheduler),
                    ("--blas-threads", args.blas_threads)):
        if v is not None:
            parts.append(f"{flag} {v}")
    return " ".join(parts)


def main(argv=None):
    from minigrad.app.sweep import make_executor

    from .batch import BatchRunner
    from .estimate import estimate_full

    args = parse_args(argv)
    mode = args.protocol
    cfg = dataclasses.replace(CONFIGS[mode])
    cfg.out, run_dir = _paths(args, mode)
    cfg.out.mkdir(parents=True, exist_ok=True)
    command = _command(args, mode)
    log(f"protocol {mode}, output {cfg.out}, tasks in {run_dir}")
    t_start = time.perf_counter()
    env = environment()
    notes = []
    # images: the bundled ones never need the network
    images, infos, img_notes = imageset.load_set(cfg.table_images, log)
    notes += img_notes
    if len(images) < 2:
        raise SystemExit("need at least two images for the normalised error")
    src = images.get(cfg.cnn_image)
    if src is None:
        src = imageset.load(cfg.cnn_image, log)[0]
    executor = make_executor(args.workers, args.scheduler, args.blas_threads, quiet=True)
    try:
        run = BatchRunner(run_dir, executor, log)
        sections, figs, parts = run_passes(cfg, run, images, src, notes)
    finally:
        executor.close()
    total = time.perf_counter() - t_start
    env["load_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    env["executor"] = executor.describe() if args.workers == 1 else (
        f"dask, {args.scheduler or f'local cluster of {args.workers} workers'}")
    estimate = estimate_full(run, src, log, args.estimate, plan=run_passes,
                             cfg=CONFIGS["full"], names=ALL_IMAGES)
    results = {
        "mode": mode, "protocol": mode, "command": command, "seconds": total,
        "sections": sections, "inversions": run.count, "inversion_seconds": run.seconds,
        "executed": sum(len(r["executed"]) for r in run.records), "environment": env,
        "config": {k: v for k, v in dataclasses.asdict(cfg).items()}, "images": infos,
        "notes": notes, **parts, "figures": figs, "retries": run.retries,
        "full_protocol_estimate": estimate,
    }
    save_json(cfg.out / "results.json", results)
    from .report import render

    save_text(cfg.out / "REPORT.md", render(results))
    log(f"done in {total:.0f}s ({run.count} inversions); wrote {cfg.out / 'REPORT.md'}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
