"""The ``minigrad`` command: invert, sweep, visualize, caricature, demo, layers, gradcheck, weights.

Examples::

    minigrad demo --out demo/                     # the main job: HOG, DSIFT, AlexNet conv1…pool5
    minigrad invert photo.jpg --net alexnet --layer conv3 --out out/
    minigrad invert photo.jpg --net hog --preset ijcv16 --out out-hog/
    minigrad sweep photo.jpg --net alexnet --layers conv1 pool2 relu4 pool5 --out sweep/
    minigrad visualize --net alexnet --layer conv5 --channels 0:16 --out viz/
    minigrad caricature photo.jpg --net alexnet --layers relu3 relu4 conv5 --out car/
    minigrad layers alexnet

Every error is one line on stderr and a non-zero exit status (set MINIGRAD_DEBUG=1 for the
traceback). Ctrl-C or SIGTERM during an inversion writes the current image and metrics, marked
``"interrupted": true``, and exits with status 130 (SIGINT) or 143 (SIGTERM); further signals
wait until those files are written. When an inversion diverges even after the loop's
safeguard has lowered the learning rate (minigrad/inversion/safeguard.py), ``invert`` still
writes its files (status ``non-finite``, the last finite iterate) and exits with status 3.
Output files are written atomically, with the modes the umask gives; the output directory is
created only when there is something to write.
"""
import argparse
import os
import sys

from . import __version__
from .app import CLIError, signals
from .app.argtypes import int_at_least, positive_float
from .app.outdir import check_out_dir
from .app.outputs import check_layer, load_rep, out_dir, read_input, say

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130
EXIT_DIVERGED = 3  # the safeguard gave up: the energy stayed non-finite after its back-offs


def _overrides(args):
    """The inversion options given on the command line (the base rate: cvpr15's lr, ijcv16's
    eta)."""
    o = {name: getattr(args, name)
         for name in ("iters", "restarts", "window", "channels", "seed", "threads")
         if getattr(args, name, None) is not None}
    if getattr(args, "lr", None) is not None:
        o["lr" if args.preset == "cvpr15" else "eta"] = args.lr
    return o


def _prepare(args):
    """(output directory, checked but not created yet; representation) of invert and sweep."""
    out = check_out_dir(args.out)
    rep = load_rep(args.net, args.weights, args.device)
    return out, rep


# --- subcommands ---------------------------------------------------------------------------------
def cmd_invert(args):
    from .app.outputs import shown_error, write_invert_outputs
    from .app.progress import Progress
    from .inversion import invert, resolve_options, schedule_for

    out, rep = _prepare(args)
    layer = check_layer(rep, args.layer or rep.layers[-1])
    image, notes = read_input(args.image, rep, args.resize)
    for n in notes:
        say(f"note: {n}", args.quiet)
    opts = _overrides(args)
    progress = Progress(len(schedule_for(resolve_options(rep, layer, args.preset, **opts),
                                         image.shape[:2])),
                        f"{rep.name}:{layer}", enabled=not args.quiet)
    movie = _movie(args, rep, progress)
    inspector = None
    if args.inspect:  # records the iterates through the callback; draws after the run
        from .app.inspection import Inspector
        inspector = Inspector(os.path.join(out, "inspect"), rep, image, layer, args.preset, opts,
                              then=movie or progress)
    result = invert(rep, image, layer, preset=args.preset,
                    callback=inspector or movie or progress,
                    on_interrupt="return", **opts)
    progress.close()
    interrupted = result.status == "interrupted"
    with signals.deferred():  # a further Ctrl-C/SIGTERM waits until every file is written
        write_invert_outputs(out, rep, layer, result, args.image, notes, interrupted,
                             extra={"signal": signals.first_name()} if interrupted else None)
        _write_movie(movie, result, out, args)
        if inspector is not None:
            say(f"gradients: {inspector.write()}", args.quiet)
    m = result.metrics
    say(f"{rep.name} {layer}: relative error {shown_error(m['relative_error'], result.status)}"
        + (f", PSNR {m['psnr']:.2f} dB" if "psnr" in m else "")
        + f", {m['iterations']} iterations in {result.wall_time:.1f} s -> {out}", args.quiet)
    if m.get("lr_backoffs"):
        say(f"note: {result.message}", args.quiet)
    if interrupted:
        say(f"interrupted: wrote the current image and metrics to {out}")
        return signals.exit_status(EXIT_INTERRUPTED)
    if result.status == "non-finite":
        say(f"error: diverged: {result.message}; try a lower --lr (e.g. a hundredth)")
        return EXIT_DIVERGED
    return 0


def cmd_sweep(args):
    """Images x layers x option sets on the batch runner (minigrad/app/sweep.py)."""
    from .app.sweep import sweep_command

    return sweep_command(args, _overrides(args))


def _movie(args, rep, progress):
    """A FrameRecorder around the progress line with --frames N, else None (no cost)."""
    if _frames(args) is None:
        return None
    from .app.movie import FrameRecorder

    return FrameRecorder(rep, args.frames, inner=progress)


def _frames(args):
    """(N, PNG frames too) of --frames N, or None without it."""
    if getattr(args, "frames", None) is None:
        return None
    if args.frames < 1:
        raise CLIError(f"--frames must be >= 1, got {args.frames}")
    return args.frames, args.frame_pngs


def _write_movie(movie, result, out, args, name="evolution"):
    if movie is not None:
        movie.finish(result)
        paths = movie.write(out, png_frames=args.frame_pngs, name=name)
        say(f"wrote {', '.join(p for p in paths if not p.endswith('.png'))} "
            f"({len(movie.frames)} frames)", args.quiet)


def _channel_list(text, n):
    """'a:b' or 'i,j,k' (or one index) -> a list of channel indices of a layer with n."""
    try:
        if ":" in text:
            a, b = (int(v) if v.strip() else None for v in text.split(":", 1))
            chans = list(range(n))[slice(a, b)]
        else:
            chans = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--channels {text!r}: expected 'a:b' or 'i,j,k' with integers") from None
    bad = [c for c in chans if not 0 <= c < n]
    if not chans or bad:
        raise CLIError(f"--channels {text!r}: the layer has channels 0..{n - 1}")
    return chans


def _visual_options(args):
    o = {n: getattr(args, n) for n in ("seed", "jitter") if getattr(args, n) is not None}
    if args.iters is not None:
        o["iterations"] = args.iters
    if args.lr is not None:
        o["eta"] = args.lr
    if args.leak:
        o["leak"] = args.leak
    return o


def cmd_visualize(args):
    from .app.progress import Progress
    from .app.visual_outputs import write_visualize_outputs
    from .app.visualization import visualize

    out, rep = _prepare(args)
    layer = check_layer(rep, args.layer)
    if rep.kind != "cnn":
        raise CLIError(f"visualize needs a CNN; {rep.name} is {rep.kind}")
    chans = _channel_list(args.channels, rep.output_shape(layer)[0])
    opts = _visual_options(args)
    progress = Progress(opts.get("iterations", 300), f"{rep.name}:{layer}",
                        enabled=not args.quiet)
    movie = _movie(args, rep, progress)
    result = visualize(rep, layer, chans, restarts=args.restarts or 1,
                       callback=movie or progress, on_interrupt="return",
                       log=lambda m: say(m, args.quiet), extras=not args.bundled_maxima,
                       **opts)
    progress.close()
    write_visualize_outputs(out, rep, layer, result, restarts=args.restarts or 1)
    _write_movie(movie, result, out, args)
    if result.metrics.get("maxima_note"):
        say(f"note: {result.metrics['maxima_note']}")
    say(f"{rep.name} {layer}: {len(chans)} channels, {result.metrics['iterations']} iterations "
        f"in {result.wall_time:.1f} s -> {os.path.join(out, 'grid.png')}", args.quiet)
    return EXIT_INTERRUPTED if result.status == "interrupted" else 0


def cmd_caricature(args):
    from .app.progress import Progress
    from .app.visual_outputs import write_caricature_layer, write_caricature_summary
    from .inversion.visualize import caricature

    out, rep = _prepare(args)
    layers = [check_layer(rep, n) for n in args.layers]
    image, notes = read_input(args.image, rep, args.resize)
    opts = _visual_options(args)
    rows, images, original, interrupted = [], [], None, False
    for layer in layers:
        progress = Progress(opts.get("iterations", 300), f"{rep.name}:{layer}",
                            enabled=not args.quiet)
        movie = _movie(args, rep, progress)
        result = caricature(rep, image, layer, callback=movie or progress,
                            on_interrupt="return", **opts)
        progress.close()
        original = result.original if original is None else original
        rows.append(write_caricature_layer(out, rep, layer, result))
        images.append(result.image)
        _write_movie(movie, result, out, args, name=f"evolution_{layer}")
        say(f"{rep.name} {layer}: <w, phi(x)> {result.metrics['enhancement']:.2f} "
            f"(1 for the image), {result.wall_time:.1f} s", args.quiet)
        if result.status == "interrupted":
            interrupted = True
            break
    write_caricature_summary(out, rep, original, layers, images, rows, args.image, notes,
                             interrupted)
    say(f"wrote {os.path.join(out, 'caricatures.png')}", args.quiet)
    return EXIT_INTERRUPTED if interrupted else 0


def cmd_demo(args):
    """HOG, DSIFT and AlexNet conv1…pool5 (real weights) on the bundled sample image."""
    from .app.demo import run_demo, write_index

    out = out_dir(args.out)
    sections, interrupted, settings, total = run_demo(out, args.sample, args.quick, args.iters,
                                                      args.device, args.quiet)
    write_index(out, sections, interrupted, total, settings)
    return signals.exit_status(EXIT_INTERRUPTED) if interrupted else 0


def _layer_shape(rep, layer, x):
    from .tensor import no_grad

    if not rep.has_weights(layer):
        shape = "(no weights)"
        if rep.kind == "cnn":
            shape = "x".join(str(n) for n in rep.output_shape(layer)) + " (no weights)"
        return shape
    with no_grad():
        return "x".join(str(n) for n in rep.forward(x, layer).shape[1:])


def cmd_layers(args):
    from .backend import np
    from .tensor import Tensor

    rep = load_rep(args.net, args.weights, "cpu")
    size = tuple(rep.input_size) if rep.input_size else (args.size, args.size)
    x = Tensor(np.zeros((1, rep.channels) + size, dtype=np.float32))
    print(f"{rep.name} ({rep.kind}), input {rep.channels}x{size[0]}x{size[1]}"
          + ("" if rep.input_size else " (any size; shapes shown for this one)"))
    print(f"{'layer':<10} {'output shape':<18} {'RF size':>8} {'RF stride':>9}")
    for layer in rep.layers:
        try:
            rf, stride = rep.receptive_field(layer)
        except Exception:  # noqa: BLE001 - a layer without a defined geometry
            rf, stride = "?", "?"
        print(f"{layer:<10} {_layer_shape(rep, layer, x):<18} {rf:>8} {stride:>9}")
    return 0


def cmd_gradcheck(args):
    from . import gradcheck_all

    if args.show:
        if not args.only:
            raise CLIError("--show needs an op name: minigrad gradcheck OP --show")
        return gradcheck_all.main_show(args.only, device=args.device)
    return int(gradcheck_all.main(only=args.only, device=args.device) or 0)


# --- parser --------------------------------------------------------------------------------------
def _add_common(p, layer=True):
    p.add_argument("image", help="input image (PNG, JPEG, ...)")
    p.add_argument("--net", required=True,
                   help="caffenet, caffe-alexnet, alexnet, vgg16, hog, hogb or dsift")
    p.add_argument("--preset", default="cvpr15", choices=["cvpr15", "ijcv16"])
    p.add_argument("--iters", type=int_at_least(1),
                   help="iterations (the preset's schedule is stretched)")
    p.add_argument("--seed", type=int_at_least(0), help="random seed (default 0)")
    p.add_argument("--lr", type=positive_float,
                   help="base learning rate (cvpr15: lr, default 0.004; "
                   "ijcv16: eta, default HW·0.05·B²/α); lower it if a run diverges")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int_at_least(1), metavar="N",
                   help="CPU: split each step's work over N threads, BLAS at one thread "
                   "(needs threadpoolctl: pip install 'minigrad[parallel]')")
    p.add_argument("--resize", type=int_at_least(8), metavar="N",
                   help="resize the image so its longer side is N pixels (also allows huge ones)")
    p.add_argument("--weights", help="a converted .npz of weights (default: the net's default)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_frames(p)


def _add_frames(p):
    p.add_argument("--frames", type=int, metavar="N", help="save the image every N iterations "
                   "as a movie: evolution.gif (and .mp4 with imageio-ffmpeg)")
    p.add_argument("--frame-pngs", action="store_true", help="with --frames: also the frames "
                   "as PNGs")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minigrad", description="Feature inversion (Mahendran & Vedaldi) on minigrad.",
        epilog="Main job: `minigrad demo --out demo/` (then open demo/index.html).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minigrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_inversion_commands(sub)
    _add_visualisation_commands(sub)
    _add_other_commands(sub)
    from weights import cli as weights_cli

    weights_cli.add_parser(sub)
    return parser


def _add_inversion_commands(sub):
    p = sub.add_parser("invert", help="reconstruct an image from one layer's code",
                       description="Reconstruct IMAGE from --net's code at --layer; writes "
                       "reconstruction.png, comparison.png, loss.png, history.csv, metrics.json.",
                       epilog="example: minigrad invert photo.jpg --net alexnet --layer conv3 "
                       "--out out/")
    _add_common(p)
    p.add_argument("--layer", help="layer name (see `minigrad layers NET`); default the last")
    p.add_argument("--restarts", type=int_at_least(1),
                   help="independent reconstructions, one batch")
    p.add_argument("--window", type=int_at_least(1), metavar="K",
                   help="use only the central KxK of the code")
    p.add_argument("--channels", help="first-half, second-half or a:b (channels of the code)")
    p.add_argument("--inspect", action="store_true", help="also write OUT/inspect/: each energy "
                   "term's gradient as pictures, per-layer gradient norms, the graph")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("sweep", help="images x layers x option sets; resumable, on Dask too",
                       description="Invert every image at every layer for every option set "
                       "into OUT/tasks/<task>/; writes results.csv, results.json, index.html. "
                       "Running it again skips the complete tasks.",
                       epilog="example: minigrad sweep photo.jpg --net alexnet --layers conv1 "
                       "pool2 relu4 pool5 --out sweep/\n"
                       "         minigrad sweep photos/ --net alexnet --layers conv3 pool5 "
                       "--preset ijcv16 --vary loss_weight=1,20,100,300 --workers 2 --out s/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    p.add_argument("more_images", nargs="*", metavar="IMAGE",
                   help="more images: files, globs or directories")
    p.add_argument("--layers", nargs="+", help="layers (default: every non-fc layer)")
    p.add_argument("--vary", action="append", metavar="NAME=V1,V2",
                   help="an option's values, one option set each (repeatable: their product), "
                   "e.g. loss_weight=1,20,100,300 or preset=cvpr15,ijcv16 or seed=0,1")
    p.add_argument("--workers", type=int, default=1,
                   help="N > 1: a local Dask cluster of N processes, 1 BLAS thread each "
                   "(needs minigrad[cluster]); 1 (default): in this process, no Dask")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="submit the tasks to this existing Dask cluster")
    p.add_argument("--blas-threads", type=int, metavar="N",
                   help="BLAS threads per task (default: 1 on Dask workers, all in process); "
                   "the same count gives bit-identical results anywhere")
    p.add_argument("--retry", type=int, default=0, metavar="N",
                   help="run failed tasks up to N more times")
    p.set_defaults(func=cmd_sweep)


def _add_visualisation_options(p):
    p.add_argument("--net", required=True, help="caffenet, caffe-alexnet, alexnet or vgg16")
    p.add_argument("--iters", type=int, help="iterations (default 300, IJCV16's fast phase)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--jitter", type=int, help="jitter J (default max(round(stride/4), 1))")
    p.add_argument("--leak", type=float, default=0.0,
                   help="leaky-ReLU slope during the optimisation (IJCV16 option: 0.05)")
    p.add_argument("--lr", type=float, help="base learning rate eta (default HW·0.05·B²/α)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--weights", help="a converted .npz of weights (default: the net's default)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_frames(p)


def _add_visualisation_commands(sub):
    p = sub.add_parser("visualize", help="activation maximisation: the image each channel likes",
                       description="IJCV16 activation maximisation of --channels of --layer; "
                       "writes grid.png, channels/*.png, loss.png, history.csv, metrics.json.",
                       epilog="example: minigrad visualize --net alexnet --layer conv5 "
                       "--channels 0:16 --out viz/")
    _add_visualisation_options(p)
    p.add_argument("--layer", required=True, help="layer name (see `minigrad layers NET`)")
    p.add_argument("--channels", default="0:16", help="a:b or i,j,k (default 0:16)")
    p.add_argument("--restarts", type=int_at_least(1), help="images per channel, one batch")
    p.add_argument("--bundled-maxima", action="store_true", help="natural-image maxima over "
                   "the 4 bundled photographs only (no download of the scikit-image ones)")
    p.set_defaults(func=cmd_visualize)

    p = sub.add_parser("caricature", help="caricatures: enhance what a layer sees in an image",
                       description="IJCV16 caricaturisation of IMAGE at each of --layers; "
                       "writes <layer>.png, caricatures.png, loss_<layer>.png, "
                       "history_<layer>.csv, metrics.json.",
                       epilog="example: minigrad caricature photo.jpg --net alexnet --layers "
                       "relu3 relu4 conv5 --out car/")
    p.add_argument("image", help="input image (PNG, JPEG, ...)")
    _add_visualisation_options(p)
    p.add_argument("--layers", nargs="+", required=True, help="layers to caricature")
    p.add_argument("--resize", type=int, metavar="N", help="resize the longer side to N first")
    p.set_defaults(func=cmd_caricature)


def _add_other_commands(sub):
    p = sub.add_parser("demo", help="the main job: HOG, DSIFT and AlexNet conv1…pool5 on the "
                       "bundled sample image; writes index.html",
                       epilog="example: minigrad demo --out demo/ --quick")
    p.add_argument("--out", default="minigrad-demo", help="output directory")
    p.add_argument("--quick", action="store_true", help="fewer layers and iterations (<1 min)")
    p.add_argument("--iters", type=int_at_least(1), help="override the iterations per inversion")
    p.add_argument("--sample", default="astronaut", help="bundled sample image name")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("layers", help="layer names, output shapes and receptive fields",
                       epilog="example: minigrad layers alexnet")
    p.add_argument("net")
    p.add_argument("--weights", help="a converted .npz of weights")
    p.add_argument("--size", type=int_at_least(8), default=227,
                   help="input size for HOG/DSIFT shapes")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("gradcheck", help="float64 gradient check of every op; prints a table")
    p.add_argument("only", nargs="?", help="check only this op (default: every op)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--show", action="store_true", help="for OP: analytic and numeric gradients "
                   "element by element, the worst marked, and the op's forward/backward source")
    p.set_defaults(func=cmd_gradcheck)


def main(argv=None):
    """Entry point of the ``minigrad`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_ERROR
    debug = bool(os.environ.get("MINIGRAD_DEBUG"))
    with signals.installed():  # SIGTERM ends a run as Ctrl-C does
        return _run(args, debug)


def _run(args, debug):
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("minigrad: interrupted", file=sys.stderr)
        return signals.exit_status(EXIT_INTERRUPTED)
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
