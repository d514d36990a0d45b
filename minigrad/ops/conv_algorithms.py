"""Which algorithm runs a 2-D convolution, and the dispatch to it.

    im2col     the reference (``conv.Conv2d``): any geometry, and the weight gradient.
    winograd   ``winograd.WinogradConv2d``: stride 1, no dilation, square kernel (r + 1 ≤ 8).
    space-to-depth  a stride-s conv as a stride-1 conv on s² times the channels
               (``space_to_depth``), which then runs by Winograd when it qualifies.

``choose`` is what ``algorithm="auto"`` runs: Winograd for constant (cached) 3×3 and 5×5
stride-1 weights with enough channels per group for its per-frequency GEMMs to pay off,
space-to-depth for constant strided kernels that fold into such a 3×3 or 5×5 conv (AlexNet's
conv1), im2col for everything else (trainable weights keep im2col, whose columns their
gradient needs).
"""
import contextlib

from ..tensor import Tensor
from . import conv, space_to_depth, winograd

ALGORITHMS = ("auto", "im2col", "winograd", "space-to-depth")
MIN_WINOGRAD_CHANNELS = 16  # fewer input or output channels per group: GEMMs too thin to win
# Smallest output (px) for which "auto" picks Winograd, per kernel size. At AlexNet's 13 px the
# 3×3 layers' per-frequency GEMMs (N = 49 tiles for F(2,3)) run at about 60 % of the rate of
# im2col's single GEMM, which eats the 1.9× fewer multiplies: forward + input gradient measured
# 9.6 ms against im2col's 9.0 (conv3, 256 -> 384). 5×5 at 27 px wins (F(3,5): 30 vs 37–45 ms).
MIN_WINOGRAD_SIZE = {3: 16, 5: 8}
_policy = {"forced": None, "log": None}  # set only by forced() and recorded() below


@contextlib.contextmanager
def forced(algorithm):
    """Within the block, algorithm="auto" means ``algorithm`` (for benchmarks: the im2col
    baseline in the same process). Process-wide: not for use from several threads."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"forced: algorithm must be one of {', '.join(ALGORITHMS)}, "
                         f"got {algorithm!r}")
    previous, _policy["forced"] = _policy["forced"], None if algorithm == "auto" else algorithm
    try:
        yield
    finally:
        _policy["forced"] = previous


@contextlib.contextmanager
def recorded():
    """Within the block, every conv2d appends (input shape, weight shape, stride, algorithm
    label) to the list this yields: which algorithm each layer of a network ran."""
    previous, _policy["log"] = _policy["log"], []
    try:
        yield _policy["log"]
    finally:
        _policy["log"] = previous


def choose(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, constant=True):
    """The algorithm "auto" picks, as a label: "im2col", "winograd F(4,3)", ..."""
    if len(x_shape) != 4 or len(w_shape) != 4 or groups < 1 or w_shape[0] % groups:
        return "im2col"  # let im2col raise its error
    O, Cg, kh, kw = w_shape
    stride, padding, dilation = (conv.pair(v) for v in (stride, padding, dilation))
    oh = conv.conv_output_size(x_shape[2], kh, stride[0], padding[0], dilation[0])
    ow = conv.conv_output_size(x_shape[3], kw, stride[1], padding[1], dilation[1])
    if not constant or min(O // groups, Cg) < 1:
        return "im2col"
    large = min(oh, ow) >= MIN_WINOGRAD_SIZE.get(kh, 1 << 30)
    if (large and winograd.supports((kh, kw), stride, dilation)
            and min(Cg, O // groups) >= MIN_WINOGRAD_CHANNELS):
        return f"winograd F({winograd.tile_size(kh, min(oh, ow))},{kh})"
    s, folded = stride[0], -(-kh // stride[0])
    large = min(oh, ow) >= MIN_WINOGRAD_SIZE.get(folded, 1 << 30)
    if (large and s > 1 and stride == (s, s) and dilation == (1, 1) and kh == kw
            and min(Cg * s * s, O // groups) >= MIN_WINOGRAD_CHANNELS):
        return f"space-to-depth {s}, winograd F({winograd.tile_size(folded, min(oh, ow))},{folded})"
    return "im2col"


def conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm, cache):
    """Run the conv with ``algorithm``; ``cache`` is a dict for derived constant-weight arrays
    (None when the weight is not a cached constant)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"conv2d: algorithm must be one of {', '.join(ALGORITHMS)}, "
                         f"got {algorithm!r}")
    label = algorithm
    if algorithm == "auto":
        label = _policy["forced"] or choose(x.shape, weight.shape, stride, padding, dilation,
                                            groups, constant=cache is not None)
        algorithm = label.split()[0].rstrip(",")
    if _policy["log"] is not None:
        _policy["log"].append((tuple(x.shape), tuple(weight.shape), stride, label))
    return _run(x, weight, bias, stride, padding, dilation, groups, algorithm, cache)


def _run(x, weight, bias, stride, padding, dilation, groups, algorithm, cache):
    """The conv by one named algorithm (not "auto")."""
    if algorithm == "space-to-depth":
        return _space_to_depth_conv(x, weight, bias, stride, padding, dilation, groups, cache)
    if algorithm == "winograd":
        if not winograd.supports(conv.pair(weight.shape[2:], "kernel"), conv.pair(stride),
                                 conv.pair(dilation)):
            raise ValueError(
                f"conv2d: algorithm='winograd' needs stride 1, dilation 1 and a square kernel "
                f"of at most {winograd.MAX_ALPHA - 1} px, got kernel {tuple(weight.shape[2:])}, "
                f"stride {stride}, dilation {dilation}")
        return winograd.WinogradConv2d.apply(
            x, weight, bias, padding=padding, groups=groups,
            transformed=None if cache is None else _cached_transformer(weight, groups, cache))
    W_mat = None
    if cache is not None and weight.shape[0] % groups == 0:
        W_mat = _cached(cache, ("im2col", groups), lambda: conv.weight_matrix(weight.data, groups))
    return conv.Conv2d.apply(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, W_mat=W_mat)


def _space_to_depth_conv(x, weight, bias, stride, padding, dilation, groups, cache):
    """Fold input and kernel by the stride, then a stride-1 conv (see ``space_to_depth``)."""
    (sy, sx), (ph, pw) = conv.pair(stride, "stride"), conv.pair(padding, "padding")
    kh, kw = weight.shape[2:]
    if sy != sx or conv.pair(dilation) != (1, 1) or x.ndim != 4:
        raise ValueError(f"conv2d: algorithm='space-to-depth' needs equal strides, dilation 1 "
                         f"and a 4-D input, got stride {stride}, dilation {dilation}")
    oh = conv.conv_output_size(x.shape[2], kh, sy, ph)
    ow = conv.conv_output_size(x.shape[3], kw, sx, pw)
    if oh < 1 or ow < 1:
        return conv.Conv2d.apply(x, weight, bias, stride=stride, padding=padding)  # its error
    Hs, Ws = space_to_depth.folded_size(oh, kh, sy), space_to_depth.folded_size(ow, kw, sx)
    folded_x = space_to_depth.SpaceToDepth.apply(x, s=sy, top=ph, left=pw, Hs=Hs, Ws=Ws)
    if cache is None:  # a trainable weight: fold it as an op, so that its gradient flows
        folded_w, inner_cache = space_to_depth.FoldWeight.apply(weight, s=sy), None
    else:
        folded_w, inner_cache = _cached(cache, ("space-to-depth", sy), lambda: (
            Tensor(space_to_depth.fold_weight(weight.data, sy)), {}))
    fh, fw = folded_w.shape[2:]
    square = fh == fw and winograd.supports((fh, fw), (1, 1), (1, 1))
    return _run(folded_x, folded_w, bias, 1, 0, 1, groups, "winograd" if square else "im2col",
                inner_cache)


def _cached(cache, key, make):
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _cached_transformer(weight, groups, cache):
    """transformed(direction, m) for WinogradConv2d, memoised in the weight's cache."""
    def transformed(direction, m):
        def make():
            W = weight.data
            kernel = W if direction == "forward" else winograd.flip_transpose(W, groups)
            return winograd.transform_weights(kernel, groups, m)
        return _cached(cache, ("winograd", groups, direction, m), make)
    return transformed
