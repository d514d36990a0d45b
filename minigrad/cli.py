"""The ``minigrad`` command: invert, sweep, demo, layers, gradcheck, weights.

Examples::

    minigrad demo --out demo/                     # the main job: HOG, DSIFT, AlexNet conv1…pool5
    minigrad invert photo.jpg --net alexnet --layer conv3 --out out/
    minigrad invert photo.jpg --net hog --preset ijcv16 --out out-hog/
    minigrad sweep photo.jpg --net alexnet --layers conv1 pool2 relu4 pool5 --out sweep/
    minigrad layers alexnet

Every error is one line on stderr and a non-zero exit status (set MINIGRAD_DEBUG=1 for the
traceback). Ctrl-C during an inversion writes the current image and metrics, marked
``"interrupted": true``, and exits with status 130. When an inversion diverges even after the
loop's safeguard has lowered the learning rate (minigrad/inversion/safeguard.py), ``invert``
still writes its files (status ``non-finite``, the last finite iterate) and exits with status 3.
Output files are written atomically.
"""
import argparse
import os
import sys

from . import __version__
from .app import CLIError
from .app.outputs import check_layer, format_table, load_rep, out_dir, read_input, say

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130
EXIT_DIVERGED = 3  # the safeguard gave up: the energy stayed non-finite after its back-offs


def _overrides(args):
    """The inversion options given on the command line (the base rate: cvpr15's lr, ijcv16's
    eta)."""
    o = {name: getattr(args, name) for name in ("iters", "restarts", "window", "channels", "seed")
         if getattr(args, name, None) is not None}
    if getattr(args, "lr", None) is not None:
        o["lr" if args.preset == "cvpr15" else "eta"] = args.lr
    return o


def _prepare(args):
    """(output directory, representation) of invert and sweep."""
    out = out_dir(args.out)
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
    result = invert(rep, image, layer, preset=args.preset, callback=progress,
                    on_interrupt="return", **opts)
    progress.close()
    interrupted = result.status == "interrupted"
    write_invert_outputs(out, rep, layer, result, args.image, notes, interrupted)
    m = result.metrics
    say(f"{rep.name} {layer}: relative error {shown_error(m['relative_error'], result.status)}"
        + (f", PSNR {m['psnr']:.2f} dB" if "psnr" in m else "")
        + f", {m['iterations']} iterations in {result.wall_time:.1f} s -> {out}", args.quiet)
    if m.get("lr_backoffs"):
        say(f"note: {result.message}", args.quiet)
    if interrupted:
        say(f"interrupted: wrote the current image and metrics to {out}")
        return EXIT_INTERRUPTED
    if result.status == "non-finite":
        say(f"error: diverged: {result.message}; try a lower --lr (e.g. a hundredth)")
        return EXIT_DIVERGED
    return 0


def cmd_sweep(args):
    from .app.outputs import run_sweep

    out, rep = _prepare(args)
    layers = args.layers or [n for n in rep.layers if not n.startswith(("fc", "relu6", "relu7"))]
    for layer in layers:
        check_layer(rep, layer)
    image, notes = read_input(args.image, rep, args.resize)
    for n in notes:
        say(f"note: {n}", args.quiet)
    rows, interrupted = run_sweep(rep, image, layers, out, args.preset, _overrides(args),
                                  args.quiet, os.fspath(args.image), notes)
    print(format_table(rows))
    print(f"wrote {os.path.join(out, 'sweep.png')}")
    return EXIT_INTERRUPTED if interrupted else 0


def cmd_demo(args):
    """HOG, DSIFT and AlexNet conv1…pool5 (real weights) on the bundled sample image."""
    from .app.demo import run_demo, write_index

    out = out_dir(args.out)
    sections, interrupted, settings, total = run_demo(out, args.sample, args.quick, args.iters,
                                                      args.device, args.quiet)
    write_index(out, sections, interrupted, total, settings)
    return EXIT_INTERRUPTED if interrupted else 0


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

    return int(gradcheck_all.main(only=args.only, device=args.device) or 0)


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
    _add_inversion_commands(sub)
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


def _add_other_commands(sub):
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


def main(argv=None):
    """Entry point of the ``minigrad`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
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
