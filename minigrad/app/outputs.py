"""What the commands read and write: representations, input images, result files, sweeps.

Every file is written atomically (``minigrad.images``). ``versions()`` is the environment
record of metrics.json, also used by the benchmarks.
"""
import os
import platform
import sys
import tempfile
import time

from .. import __version__
from ..backend import np
from . import CLIError
from .outdir import make_out_dir
from .progress import Progress

DEFAULT_NONCNN_SIZE = 256  # HOG/DSIFT inputs larger than this (longer side) are resized to it


def say(msg, quiet=False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# --- inputs ------------------------------------------------------------------------------------
def out_dir(path):
    """Create ``path`` if needed (``outdir.make_out_dir``: nothing is left behind when that
    fails) and check that files can be written there."""
    make_out_dir(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise CLIError(f"output directory {path} is not writable: {e.strerror or e}") from None
    return path


def load_rep(net, weights=None, device="cpu"):
    """``models.get(net)`` on ``device``, with the command-line's one-line errors."""
    import models
    from models.base import UnknownNameError

    from .. import backend

    try:
        rep = models.get(net, weights=weights or "default")
    except UnknownNameError as e:
        raise CLIError(str(e)) from None
    if device != "cpu":
        try:
            backend.check_device(device)
        except (RuntimeError, ValueError) as e:
            raise CLIError(str(e)) from None
        rep.to(device)
    return rep


def check_layer(rep, layer):
    """The layer, or a CLIError: unknown name, or weights missing (the model's explanation)."""
    try:
        rep.check_layer(layer)
        if not rep.has_weights(layer):
            rep.require_weights(layer)  # raises the model's own explanation
            raise CLIError(f"{rep.name} has no weights for layer {layer}")
    except CLIError:
        raise
    except Exception as e:  # noqa: BLE001 - unknown layer or missing weights: one line
        raise CLIError(" ".join(str(e).split())) from None
    return layer


def read_input(path, rep, resize):
    """(uint8 image, notes): HOG/DSIFT inputs above DEFAULT_NONCNN_SIZE are resized to it."""
    from ..images import read_image, resize_longest

    image, notes = read_image(path, resize=resize)
    if rep.kind != "cnn" and resize is None and max(image.shape[:2]) > DEFAULT_NONCNN_SIZE:
        h, w = image.shape[:2]
        image = resize_longest(image, DEFAULT_NONCNN_SIZE)
        notes.append(f"resized from {w}x{h} to {image.shape[1]}x{image.shape[0]} for "
                     f"{rep.name} (use --resize N to choose)")
    return image, notes


def cpu_model():
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions():
    """The versions of minigrad and its run-time dependencies, Python and the platform."""
    import PIL
    import scipy

    return {"minigrad": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "pillow": PIL.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def shown_error(value, status, digits=4):
    """The relative error as shown to a user: "diverged" when the run's energy went non-finite
    (the safeguard gave up: the number would be that of an arbitrary iterate)."""
    return "diverged" if status == "non-finite" else f"{value:.{digits}f}"


# --- one inversion's files ---------------------------------------------------------------------
def describe(rep, layer):
    return rep.name if layer == rep.name else f"{rep.name} {layer}"


def hog_glyphs(rep, x_input):
    """HOG glyph picture of an input-space image (1, C, H, W), or None for non-HOG reps."""
    render = getattr(rep, "render", None)
    if rep.kind != "hog" or render is None:
        return None
    from ..tensor import Tensor, no_grad

    with no_grad():
        feats = rep.forward(Tensor(np.ascontiguousarray(x_input, dtype=np.float32)),
                            rep.layers[-1])
    return np.asarray(render(feats))


def _reconstructions(result):
    recs = result.image if result.options["restarts"] > 1 else [result.image]
    return recs, result.metrics.get("relative_error_per_restart", [])


def _comparison(rep, layer, result, notes):
    """(tiles, labels, notes) of comparison.png: original, reconstructions, HOG glyphs."""
    recs, err = _reconstructions(result)
    R = len(recs)
    tiles, labels = [], []
    if result.original is not None:
        tiles.append(result.original)
        labels.append("original")
    for i, r in enumerate(recs):
        tiles.append(r)
        labels.append(describe(rep, layer) + (f" #{i}" if R > 1 else "")
                      + (f" err {err[i]:.3f}" if i < len(err) else ""))
    if rep.kind == "hog":
        try:
            sources = [(rep.preprocess(result.original).numpy(), "HOG of original")] \
                if result.original is not None else []
            for x, label in sources + [(result.x[:1], "HOG of reconstruction")]:
                g = hog_glyphs(rep, x)
                if g is not None:
                    tiles.append(g)
                    labels.append(label)
        except Exception as e:  # noqa: BLE001 - the glyphs are a bonus; never lose the run
            notes = list(notes) + [f"HOG glyphs not drawn: {e}"]
    return tiles, labels, notes


def _save_images(out, rep, layer, result, notes, interrupted):
    from .. import images as im

    recs, err = _reconstructions(result)
    if len(recs) > 1:
        im.save_png(os.path.join(out, "reconstruction.png"),
                    im.grid(recs, [f"restart {i} err {e:.3f}" for i, e in enumerate(err)],
                            cell=max(recs[0].shape[:2])))
    else:
        im.save_png(os.path.join(out, "reconstruction.png"), recs[0])
    tiles, labels, notes = _comparison(rep, layer, result, notes)
    title = (f"{describe(rep, layer)}, preset {result.options['preset']}"
             + (" (INTERRUPTED)" if interrupted else ""))
    im.save_png(os.path.join(out, "comparison.png"), im.grid(tiles, labels, title=title))
    h = result.history
    curves = {"energy": h["energy"], "loss": h["loss"], "tv": h["tv"], "alpha": h["alpha"]}
    im.save_png(os.path.join(out, "loss.png"),
                im.plot_curves(curves, title=f"energy terms, {describe(rep, layer)} (log scale)"))
    return notes


def write_invert_outputs(out, rep, layer, result, image_path, notes, interrupted=False,
                         extra=None):
    """reconstruction.png, comparison.png, loss.png, history.csv, metrics.json in ``out``."""
    from .. import images as im

    out_dir(out)  # created now that there is something to write
    notes = _save_images(out, rep, layer, result, notes, interrupted)
    h = result.history
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


# --- sweeps ------------------------------------------------------------------------------------
SWEEP_COLUMNS = ["layer", "relative_error", "psnr", "iterations", "time_s", "cpu_s", "status",
                 "lambda_tv", "jitter", "lr_backoffs"]


def _invert_layer(rep, image, layer, preset, overrides, quiet, frames=None, out=None):
    """One layer of a sweep, with its progress line (and its movie with ``frames`` = (N,
    pngs)): (result, row)."""
    from ..inversion import invert, resolve_options, schedule_for
    from .movie import FrameRecorder

    resolved = resolve_options(rep, layer, preset, **overrides)
    progress = Progress(len(schedule_for(resolved, image.shape[:2])), f"{rep.name}:{layer}",
                        enabled=not quiet)
    movie = FrameRecorder(rep, frames[0], inner=progress) if frames else None
    cpu0 = time.process_time()
    result = invert(rep, image, layer, preset=preset, callback=movie or progress,
                    on_interrupt="return", **overrides)
    progress.close()
    if movie is not None:
        movie.finish(result)
        movie.write(os.path.join(out, "layers"), png_frames=frames[1], name=f"{layer}-evolution")
    m = result.metrics
    row = {"layer": layer, "relative_error": m["relative_error"], "psnr": m.get("psnr"),
           "lr_backoffs": m.get("lr_backoffs", 0),
           "iterations": m["iterations"], "time_s": result.wall_time,
           "cpu_s": time.process_time() - cpu0, "status": result.status,
           "lambda_tv": result.options.get("lambda_tv"), "jitter": result.options.get("jitter")}
    return result, row


def run_sweep(rep, image, layers, out, preset="cvpr15", overrides=None, quiet=False,
              image_path=None, notes=(), title=None, frames=None):
    """Invert ``image`` at each layer; write per-layer PNGs, sweep.png, sweep.csv, metrics.json
    (and layers/<layer>-evolution.gif with ``frames`` = (every N iterations, PNG frames too)).

    Returns (rows, interrupted).
    """
    from .. import images as im

    rows, tiles, labels, original, interrupted = [], [], [], None, False
    for layer in layers:
        out_dir(os.path.join(out, "layers"))  # created once there is something to write
        result, row = _invert_layer(rep, image, layer, preset, overrides or {}, quiet, frames,
                                    out)
        original = result.original if original is None else original
        rec = result.image if not isinstance(result.image, list) else result.image[0]
        im.save_png(os.path.join(out, "layers", f"{layer}.png"), rec)
        rows.append(row)
        tiles.append(rec)
        labels.append(f"{layer} {shown_error(row['relative_error'], row['status'], 2)}")
        say(f"{describe(rep, layer)}: relative error "
            f"{shown_error(row['relative_error'], row['status'])}, {result.wall_time:.1f} s"
            + (f" ({result.message})" if result.message else ""), quiet)
        if result.status == "interrupted":
            interrupted = True
            break
    title = title or (f"{rep.name}, preset {preset}: reconstruction per layer (label: "
                      "relative error)" + (" INTERRUPTED" if interrupted else ""))
    head = [original] if original is not None else []
    im.save_png(os.path.join(out, "sweep.png"),
                im.grid(head + tiles, ["original"] * len(head) + labels, ncols=8, cell=128,
                        title=title))
    im.save_csv(os.path.join(out, "sweep.csv"), SWEEP_COLUMNS,
                [[r[c] for c in SWEEP_COLUMNS] for r in rows])
    im.save_json(os.path.join(out, "metrics.json"), {
        "net": rep.name, "preset": preset, "image": image_path, "input_notes": list(notes),
        "interrupted": interrupted, "layers": rows, "overrides": overrides or {},
        "versions": versions()})
    return rows, interrupted


def format_table(rows):
    lines = [f"{'layer':<10} {'rel.err':>8} {'PSNR':>7} {'iters':>6} {'time s':>7}"]
    for r in rows:
        psnr = "" if r.get("psnr") is None else f"{r['psnr']:.2f}"
        lines.append(f"{r['layer']:<10} {shown_error(r['relative_error'], r.get('status')):>8} "
                     f"{psnr:>7} "
                     f"{r['iterations']:>6} {r['time_s']:>7.1f}")
    return "\n".join(lines)
