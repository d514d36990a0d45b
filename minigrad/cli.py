"""The ``minigrad`` command: invert, sweep, demo, layers, gradcheck, weights.

Examples::

    minigrad demo --out demo/                     # the main job: HOG, DSIFT, AlexNet conv1…pool5
    minigrad invert photo.jpg --net alexnet --layer conv3 --out out/
    minigrad invert photo.jpg --net hog --preset ijcv16 --out out-hog/
    minigrad sweep photo.jpg --net alexnet --layers conv1 pool2 relu4 pool5 --out sweep/
    minigrad layers alexnet

Every error is one line on stderr and a non-zero exit status (set MINIGRAD_DEBUG=1 for the
traceback). Ctrl-C during an inversion writes the current image and metrics, marked
``"interrupted": true``, and exits with status 130. Output files are written atomically.
"""
import argparse
import html
import os
import pathlib
import platform
import sys
import tempfile
import time

from . import __version__
from .backend import np

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130
DEFAULT_NONCNN_SIZE = 256  # HOG/DSIFT inputs larger than this (longer side) are resized to it


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


# --- progress ------------------------------------------------------------------------------------
class Progress:
    """A tiny progress bar on stderr showing the energy terms (rewrites one line on a terminal,
    prints a line every 10% otherwise)."""

    def __init__(self, total, desc="", stream=None, enabled=True):
        self.total, self.desc, self.stream = max(int(total), 1), desc, stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0, self.last = time.perf_counter(), 0.0

    def __call__(self, step, x, terms):
        if not self.enabled:
            return
        n = step + 1
        now = time.perf_counter()
        if self.tty and now - self.last < 0.1 and n < self.total:
            return
        if not self.tty and n % max(self.total // 10, 1) and n != 1 and n < self.total:
            return
        self.last = now
        width = 24
        fill = int(width * n / self.total)
        rate = n / max(now - self.t0, 1e-9)
        text = (f"{self.desc} [{'#' * fill}{'.' * (width - fill)}] {n}/{self.total} "
                f"E={terms['energy']:.4g} loss={terms['loss']:.4g} tv={terms['tv']:.3g} "
                f"alpha={terms['alpha']:.3g} lr={terms['lr']:.3g} {rate:.1f} it/s")
        self.stream.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --- helpers -------------------------------------------------------------------------------------
def _say(msg, quiet=False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _out_dir(path):
    """Create ``path`` if needed and check that files can be written there."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise CLIError(f"output directory {path} is not writable: {e.strerror or e}") from None
    return path


def _load_rep(net, weights=None, device="cpu"):
    import models
    from models.base import UnknownNameError

    try:
        rep = models.get(net, weights=weights or "default")
    except UnknownNameError as e:
        raise CLIError(str(e)) from None
    if device != "cpu":
        from . import backend

        try:
            backend.check_device(device)
        except (RuntimeError, ValueError) as e:
            raise CLIError(str(e)) from None
        rep.to(device)
    return rep


def _check_layer(rep, layer):
    if layer not in rep.layers:
        raise CLIError(f"unknown layer {layer!r} for {rep.name}; valid layers: "
                       f"{', '.join(rep.layers)}")
    has = getattr(rep, "has_weights", None)
    if has is not None and not has(layer):
        try:
            rep._require_weights(layer)  # raises the model's own explanation
        except Exception as e:  # noqa: BLE001
            raise CLIError(" ".join(str(e).split())) from None
        raise CLIError(f"{rep.name} has no weights for layer {layer}")
    return layer


def _read(path, rep, resize):
    from .images import read_image

    image, notes = read_image(path, resize=resize)
    if rep.kind != "cnn" and resize is None and max(image.shape[:2]) > DEFAULT_NONCNN_SIZE:
        from .images import resize_longest

        h, w = image.shape[:2]
        image = resize_longest(image, DEFAULT_NONCNN_SIZE)
        notes.append(f"resized from {w}x{h} to {image.shape[1]}x{image.shape[0]} for "
                     f"{rep.name} (use --resize N to choose)")
    return image, notes


def versions():
    import PIL
    import scipy

    return {"minigrad": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "pillow": PIL.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def _overrides(args):
    o = {}
    for name in ("iters", "restarts", "window", "channels", "seed"):
        v = getattr(args, name, None)
        if v is not None:
            o[name] = v
    if getattr(args, "lr", None) is not None:  # the base rate: cvpr15's lr, ijcv16's eta
        o["lr" if args.preset == "cvpr15" else "eta"] = args.lr
    return o


def _hog_glyphs(rep, x_input):
    """HOG glyph picture of an input-space image (1, C, H, W), or None for non-HOG reps."""
    render = getattr(rep, "render", None)
    if rep.kind != "hog" or render is None:
        return None
    from .tensor import Tensor, no_grad

    with no_grad():
        feats = rep.forward(Tensor(np.ascontiguousarray(x_input, dtype=np.float32)),
                            rep.layers[-1])
    return np.asarray(render(feats))


def _what(rep, layer):
    return rep.name if layer == rep.name else f"{rep.name} {layer}"


def _code_image(rep, image):
    return rep.preprocess(image).numpy()


def write_invert_outputs(out, rep, layer, result, image_path, notes, interrupted=False,
                         extra=None):
    """reconstruction.png, comparison.png, loss.png, history.csv, metrics.json in ``out``."""
    from . import images as im

    R = result.options["restarts"]
    recs = result.image if R > 1 else [result.image]
    err = result.metrics.get("relative_error_per_restart", [])
    if R > 1:
        im.save_png(os.path.join(out, "reconstruction.png"),
                    im.grid(recs, [f"restart {i} err {e:.3f}" for i, e in enumerate(err)],
                            cell=max(recs[0].shape[:2])))
    else:
        im.save_png(os.path.join(out, "reconstruction.png"), recs[0])
    tiles, labels = [], []
    if result.original is not None:
        tiles.append(result.original)
        labels.append("original")
    for i, r in enumerate(recs):
        tiles.append(r)
        labels.append(_what(rep, layer) + (f" #{i}" if R > 1 else "")
                      + (f" err {err[i]:.3f}" if i < len(err) else ""))
    if rep.kind == "hog":
        try:
            if result.original is not None:
                g = _hog_glyphs(rep, _code_image(rep, result.original))
                if g is not None:
                    tiles.append(g)
                    labels.append("HOG of original")
            g = _hog_glyphs(rep, result.x[:1])
            if g is not None:
                tiles.append(g)
                labels.append("HOG of reconstruction")
        except Exception as e:  # noqa: BLE001 - the glyphs are a bonus; never lose the run
            notes = list(notes) + [f"HOG glyphs not drawn: {e}"]
    title = (f"{_what(rep, layer)}, preset {result.options['preset']}"
             + (" (INTERRUPTED)" if interrupted else ""))
    im.save_png(os.path.join(out, "comparison.png"), im.grid(tiles, labels, title=title))
    h = result.history
    curves = {"energy": h["energy"], "loss": h["loss"], "tv": h["tv"], "alpha": h["alpha"]}
    im.save_png(os.path.join(out, "loss.png"),
                im.plot_curves(curves, title=f"energy terms, {_what(rep, layer)} (log scale)"))
    cols = ["step", "lr", "loss", "alpha", "tv", "energy"]
    im.save_csv(os.path.join(out, "history.csv"), cols,
                [[h[c][i] for c in cols] for i in range(len(h["step"]))])
    meta = {
        "status": result.status, "interrupted": interrupted, "message": result.message,
        "image": os.fspath(image_path) if image_path else None, "input_notes": list(notes),
        "net": rep.name, "layer": layer, "metrics": result.metrics, "options": result.options,
        "wall_time_s": result.wall_time, "versions": versions(),
        "weights": {k: str(v) for k, v in (getattr(rep, "meta", None) or {}).items()
                    if k in ("source", "path", "pretrained", "variant", "sha256")},
    }
    meta.update(extra or {})
    im.save_json(os.path.join(out, "metrics.json"), meta)


# --- subcommands ---------------------------------------------------------------------------------
def cmd_invert(args):
    from .inversion import invert

    out = _out_dir(args.out)
    rep = _load_rep(args.net, args.weights, args.device)
    layer = _check_layer(rep, args.layer or rep.layers[-1])
    image, notes = _read(args.image, rep, args.resize)
    for n in notes:
        _say(f"note: {n}", args.quiet)
    progress = Progress(1, f"{rep.name}:{layer}", enabled=not args.quiet)
    opts = _overrides(args)

    def callback(step, x, terms):
        progress(step, x, terms)

    try:
        from .inversion import resolve_options, schedule_for

        resolved = resolve_options(rep, layer, args.preset, **opts)
        progress.total = len(schedule_for(resolved, image.shape[:2]))
    except Exception:  # noqa: BLE001 - only for the bar's length
        pass
    result = invert(rep, image, layer, preset=args.preset, callback=callback,
                    on_interrupt="return", **opts)
    progress.close()
    interrupted = result.status == "interrupted"
    write_invert_outputs(out, rep, layer, result, args.image, notes, interrupted)
    m = result.metrics
    _say(f"{rep.name} {layer}: relative error {m['relative_error']:.4f}"
         + (f", PSNR {m['psnr']:.2f} dB" if "psnr" in m else "")
         + f", {m['iterations']} iterations in {result.wall_time:.1f} s -> {out}", args.quiet)
    if result.status == "non-finite":
        _say(f"warning: {result.message}; a lower --lr (e.g. a tenth) usually avoids this",
             False)
    if interrupted:
        _say(f"interrupted: wrote the current image and metrics to {out}", False)
        return EXIT_INTERRUPTED
    return 0


def run_sweep(rep, image, layers, out, preset="cvpr15", overrides=None, quiet=False,
              image_path=None, notes=(), title=None):
    """Invert ``image`` at each layer; write per-layer PNGs, sweep.png, sweep.csv, metrics.json.

    Returns (rows, interrupted).
    """
    from . import images as im
    from .inversion import invert, resolve_options, schedule_for

    rows, tiles, labels = [], [], []
    original = None
    interrupted = False
    os.makedirs(os.path.join(out, "layers"), exist_ok=True)
    for layer in layers:
        resolved = resolve_options(rep, layer, preset, **(overrides or {}))
        progress = Progress(len(schedule_for(resolved, image.shape[:2])), f"{rep.name}:{layer}",
                            enabled=not quiet)
        cpu0 = time.process_time()
        result = invert(rep, image, layer, preset=preset, callback=progress,
                        on_interrupt="return", **(overrides or {}))
        progress.close()
        cpu = time.process_time() - cpu0
        original = result.original if original is None else original
        rec = result.image if not isinstance(result.image, list) else result.image[0]
        im.save_png(os.path.join(out, "layers", f"{layer}.png"), rec)
        m = result.metrics
        rows.append({"layer": layer, "relative_error": m["relative_error"],
                     "psnr": m.get("psnr"), "iterations": m["iterations"],
                     "time_s": result.wall_time, "cpu_s": cpu, "status": result.status,
                     "lambda_tv": result.options.get("lambda_tv"),
                     "jitter": result.options.get("jitter")})
        tiles.append(rec)
        labels.append(f"{layer} {m['relative_error']:.2f}")
        _say(f"{rep.name} {layer}: relative error {m['relative_error']:.4f}, "
             f"{result.wall_time:.1f} s", quiet)
        if result.status == "interrupted":
            interrupted = True
            break
    sheet = im.grid(([original] if original is not None else []) + tiles,
                    (["original"] if original is not None else []) + labels, ncols=8, cell=128,
                    title=title or f"{rep.name}, preset {preset}: reconstruction per layer "
                                   "(label: relative error)"
                    + (" INTERRUPTED" if interrupted else ""))
    im.save_png(os.path.join(out, "sweep.png"), sheet)
    cols = ["layer", "relative_error", "psnr", "iterations", "time_s", "cpu_s", "status",
            "lambda_tv", "jitter"]
    im.save_csv(os.path.join(out, "sweep.csv"), cols, [[r[c] for c in cols] for r in rows])
    im.save_json(os.path.join(out, "metrics.json"), {
        "net": rep.name, "preset": preset, "image": image_path, "input_notes": list(notes),
        "interrupted": interrupted, "layers": rows, "overrides": overrides or {},
        "versions": versions()})
    return rows, interrupted


def format_table(rows):
    lines = [f"{'layer':<10} {'rel.err':>8} {'PSNR':>7} {'iters':>6} {'time s':>7}"]
    for r in rows:
        psnr = "" if r.get("psnr") is None else f"{r['psnr']:.2f}"
        lines.append(f"{r['layer']:<10} {r['relative_error']:>8.4f} {psnr:>7} "
                     f"{r['iterations']:>6} {r['time_s']:>7.1f}")
    return "\n".join(lines)


def cmd_sweep(args):
    out = _out_dir(args.out)
    rep = _load_rep(args.net, args.weights, args.device)
    layers = args.layers or [n for n in rep.layers if not n.startswith(("fc", "relu6", "relu7"))]
    for layer in layers:
        _check_layer(rep, layer)
    image, notes = _read(args.image, rep, args.resize)
    for n in notes:
        _say(f"note: {n}", args.quiet)
    rows, interrupted = run_sweep(rep, image, layers, out, args.preset, _overrides(args),
                                  args.quiet, os.fspath(args.image), notes)
    print(format_table(rows))
    print(f"wrote {os.path.join(out, 'sweep.png')}")
    return EXIT_INTERRUPTED if interrupted else 0


DEMO_LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4",
               "relu4", "conv5", "relu5", "pool5"]
QUICK_LAYERS = ["conv1", "pool2", "relu4", "pool5"]


def cmd_demo(args):
    """HOG, DSIFT and AlexNet conv1…pool5 (real weights) on the bundled sample image."""
    from . import images as im

    out = _out_dir(args.out)
    try:
        from . import samples
    except ImportError:
        raise CLIError("the bundled sample images (minigrad.samples) are not installed") from None
    image = np.asarray(samples.load(args.sample))
    quick = args.quick
    # CNN: the cvpr15 schedule stretched to fewer iterations on the CPU (see README).
    cnn_iters = args.iters or (50 if quick else 200)
    cnn_layers = QUICK_LAYERS if quick else DEMO_LAYERS
    feat_size = 128 if quick else 192
    feat_iters = args.iters or (200 if quick else 400)
    sections, t0 = [], time.perf_counter()
    small = im.resize_longest(image, feat_size)
    for net in ("hog", "dsift"):
        try:
            rep = _load_rep(net, None, args.device)
        except Exception as e:  # noqa: BLE001 - a missing representation is reported, not fatal
            _say(f"skipping {net}: {' '.join(str(e).split())}")
            continue
        sub = _out_dir(os.path.join(out, net))
        rows, stop = run_sweep(rep, small, [rep.layers[-1]], sub, "cvpr15",
                               {"iters": feat_iters}, args.quiet, f"sample:{args.sample}")
        sections.append((net, sub, rows))
        if stop:
            return _demo_index(out, sections, args, interrupted=True)
    rep = _load_rep("alexnet", None, args.device)
    sub = _out_dir(os.path.join(out, "alexnet"))
    rows, stop = run_sweep(rep, image, cnn_layers, sub, "cvpr15", {"iters": cnn_iters},
                           args.quiet, f"sample:{args.sample}")
    sections.append(("alexnet", sub, rows))
    _demo_index(out, sections, args, interrupted=stop, total=time.perf_counter() - t0,
                settings={"cnn_iters": cnn_iters, "feature_iters": feat_iters,
                          "feature_size": feat_size, "quick": quick})
    return EXIT_INTERRUPTED if stop else 0


def _demo_index(out, sections, args, interrupted=False, total=None, settings=None):
    from . import images as im

    sheets = []
    for _net, sub, _ in sections:
        p = os.path.join(sub, "sweep.png")
        if os.path.exists(p):
            from PIL import Image

            sheets.append(np.asarray(Image.open(p).convert("RGB")))
    if sheets:
        width = max(s.shape[1] for s in sheets)
        padded = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=255)
                  for s in sheets]
        im.save_png(os.path.join(out, "contact_sheet.png"), np.concatenate(padded, axis=0))
    parts = ["<!doctype html><meta charset='utf-8'><title>minigrad demo</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "td,th{padding:2px 10px;text-align:right}img{max-width:100%}</style>",
             "<h1>minigrad feature inversion demo</h1>",
             "<p>Reconstructions of the bundled sample image from HOG, DSIFT and AlexNet "
             "(torchvision weights) conv1…pool5, preset <code>cvpr15</code> "
             f"(Mahendran &amp; Vedaldi, CVPR15). Settings: {html.escape(str(settings or {}))}."
             + (f" Total time {total:.0f} s." if total else "")
             + (" <b>Interrupted.</b>" if interrupted else "") + "</p>"]
    for net, sub, rows in sections:
        rel = os.path.relpath(sub, out)
        parts.append(f"<h2>{html.escape(net)}</h2><img src='{rel}/sweep.png'>")
        parts.append("<table><tr><th>layer</th><th>relative error</th><th>PSNR dB</th>"
                     "<th>iterations</th><th>time s</th></tr>")
        for r in rows:
            psnr = "" if r.get("psnr") is None else f"{r['psnr']:.2f}"
            parts.append(f"<tr><td>{html.escape(r['layer'])}</td>"
                         f"<td>{r['relative_error']:.4f}</td><td>{psnr}</td>"
                         f"<td>{r['iterations']}</td><td>{r['time_s']:.1f}</td></tr>")
        parts.append("</table>")
    im.save_text(os.path.join(out, "index.html"), "\n".join(parts) + "\n")
    im.save_json(os.path.join(out, "metrics.json"), {
        "interrupted": interrupted, "total_time_s": total, "settings": settings,
        "sections": {net: rows for net, _, rows in sections}, "versions": versions()})
    for net, _, rows in sections:
        print(f"== {net}")
        print(format_table(rows))
    print(f"wrote {os.path.join(out, 'index.html')}")
    return EXIT_INTERRUPTED if interrupted else 0


def cmd_layers(args):
    from .tensor import Tensor, no_grad

    rep = _load_rep(args.net, args.weights, "cpu")
    size = tuple(rep.input_size) if rep.input_size else (args.size, args.size)
    x = Tensor(np.zeros((1, rep.channels) + size, dtype=np.float32))
    print(f"{rep.name} ({rep.kind}), input {rep.channels}x{size[0]}x{size[1]}"
          + ("" if rep.input_size else " (any size; shapes shown for this one)"))
    print(f"{'layer':<10} {'output shape':<18} {'RF size':>8} {'RF stride':>9}")
    for layer in rep.layers:
        has = getattr(rep, "has_weights", None)
        if has is not None and not has(layer):
            shape = "(no weights)"
            if hasattr(rep, "output_shape") and rep.kind == "cnn":
                shape = "x".join(str(n) for n in rep.output_shape(layer)) + " (no weights)"
        else:
            with no_grad():
                shape = "x".join(str(n) for n in rep.forward(x, layer).shape[1:])
        try:
            rf, stride = rep.receptive_field(layer)
        except Exception:  # noqa: BLE001
            rf, stride = "?", "?"
        print(f"{layer:<10} {shape:<18} {rf:>8} {stride:>9}")
    return 0


def cmd_gradcheck(args):
    try:
        from . import gradcheck_all
    except ImportError:
        raise CLIError("the op gradcheck table (minigrad.gradcheck_all) is not installed") \
            from None
    return int(gradcheck_all.main(only=args.only, device=args.device) or 0)


def cmd_bench(args):
    """``minigrad bench``: benchmarks/run.py, which lives in the source checkout."""
    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "run.py").is_file():
        raise CLIError("the benchmarks are part of the source checkout, not the installed "
                       "package: clone the repository and run `minigrad bench` from there")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks import run as bench_run

    return int(bench_run.main(args.bench_args) or 0)


# --- parser --------------------------------------------------------------------------------------
def _add_common(p, layer=True):
    p.add_argument("image", help="input image (PNG, JPEG, ...)")
    p.add_argument("--net", required=True,
                   help="caffenet, caffe-alexnet, alexnet, vgg16, hog, hogb or dsift")
    p.add_argument("--preset", default="cvpr15", choices=["cvpr15", "ijcv16"])
    p.add_argument("--iters", type=int, help="iterations (the preset's schedule is stretched)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--lr", type=float, help="base learning rate (cvpr15: lr, default 0.004; "
                   "ijcv16: eta, default HW·0.05·B²/α); lower it if a run diverges")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--resize", type=int, metavar="N",
                   help="resize the image so its longer side is N pixels (also allows huge ones)")
    p.add_argument("--weights", help="a converted .npz of weights (default: the net's default)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minigrad", description="Feature inversion (Mahendran & Vedaldi) on minigrad.",
        epilog="Main job: `minigrad demo --out demo/` (then open demo/index.html).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minigrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("invert", help="reconstruct an image from one layer's code",
                       description="Reconstruct IMAGE from --net's code at --layer; writes "
                       "reconstruction.png, comparison.png, loss.png, history.csv, metrics.json.",
                       epilog="example: minigrad invert photo.jpg --net alexnet --layer conv3 "
                       "--out out/")
    _add_common(p)
    p.add_argument("--layer", help="layer name (see `minigrad layers NET`); default the last")
    p.add_argument("--restarts", type=int, help="independent reconstructions, one batch")
    p.add_argument("--window", type=int, metavar="K", help="use only the central KxK of the code")
    p.add_argument("--channels", help="first-half, second-half or a:b (channels of the code)")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("sweep", help="reconstruct from every layer; a labelled strip",
                       epilog="example: minigrad sweep photo.jpg --net alexnet --layers conv1 "
                       "pool2 relu4 pool5 --out sweep/")
    _add_common(p)
    p.add_argument("--layers", nargs="+", help="layers (default: every non-fc layer)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo", help="the main job: HOG, DSIFT and AlexNet conv1…pool5 on the "
                       "bundled sample image; writes index.html",
                       epilog="example: minigrad demo --out demo/ --quick")
    p.add_argument("--out", default="minigrad-demo", help="output directory")
    p.add_argument("--quick", action="store_true", help="fewer layers and iterations (<1 min)")
    p.add_argument("--iters", type=int, help="override the iterations per inversion")
    p.add_argument("--sample", default="astronaut", help="bundled sample image name")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("layers", help="layer names, output shapes and receptive fields",
                       epilog="example: minigrad layers alexnet")
    p.add_argument("net")
    p.add_argument("--weights", help="a converted .npz of weights")
    p.add_argument("--size", type=int, default=227, help="input size for HOG/DSIFT shapes")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("gradcheck", help="float64 gradient check of every op; prints a table")
    p.add_argument("only", nargs="?", help="check only this op (default: every op)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("bench", help="inversion iteration time against PyTorch (and JAX)",
                       description="Runs benchmarks/run.py; arguments are passed through "
                       "(e.g. --quick, --cases, --threads).", add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)

    try:
        from weights import cli as weights_cli

        weights_cli.add_parser(sub)
    except (ImportError, AttributeError):
        pass
    return parser


def main(argv=None):
    """Entry point of the ``minigrad`` console script; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after `bench` belongs to benchmarks/run.py
        args = argparse.Namespace(func=cmd_bench, bench_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_ERROR
    debug = bool(os.environ.get("MINIGRAD_DEBUG"))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("minigrad: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every error is one line, never a traceback
        if debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, (CLIError, ValueError, OSError, RuntimeError)):
            msg = f"{type(e).__name__}: {msg}"
        print(f"minigrad: error: {msg}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
