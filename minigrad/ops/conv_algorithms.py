"""Which algorithm runs a 2-D convolution, and the dispatch to it.

    im2col     the reference (``conv.Conv2d``): any geometry, and the weight gradient.
    winograd   ``winograd.WinogradConv2d``: stride 1, no dilation, square kernel (r + 1 ≤ 8).

``choose`` is what ``algorithm="auto"`` runs: Winograd for constant (cached) 3×3 and 5×5
stride-1 weights with enough channels per group for its per-frequency GEMMs to pay off, im2col
for everything else (trainable weights keep im2col, whose columns their gradient needs).
"""
from . import conv, winograd

ALGORITHMS = ("auto", "im2col", "winograd")
MIN_WINOGRAD_CHANNELS = 16  # fewer input or output channels per group: GEMMs too thin to win
MIN_WINOGRAD_SIZE = 8  # smaller outputs waste most of each tile


def choose(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, constant=True):
    """The algorithm "auto" picks, as a label: "im2col", "winograd F(4,3)", ..."""
    if len(x_shape) != 4 or len(w_shape) != 4 or groups < 1 or w_shape[0] % groups:
        return "im2col"  # let im2col raise its error
    O, Cg, kh, kw = w_shape
    stride, padding, dilation = (conv.pair(v) for v in (stride, padding, dilation))
    oh = conv.conv_output_size(x_shape[2], kh, stride[0], padding[0], dilation[0])
    ow = conv.conv_output_size(x_shape[3], kw, stride[1], padding[1], dilation[1])
    if (constant and kh in (3, 5) and winograd.supports((kh, kw), stride, dilation)
            and min(Cg, O // groups) >= MIN_WINOGRAD_CHANNELS
            and min(oh, ow) >= MIN_WINOGRAD_SIZE):
        return f"winograd F({winograd.tile_size(kh, min(oh, ow))},{kh})"
    return "im2col"


def conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm, cache):
    """Run the conv with ``algorithm``; ``cache`` is a dict for derived constant-weight arrays
    (None when the weight is not a cached constant)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"conv2d: algorithm must be one of {', '.join(ALGORITHMS)}, "
                         f"got {algorithm!r}")
    if algorithm == "auto":
        algorithm = choose(x.shape, weight.shape, stride, padding, dilation, groups,
                           constant=cache is not None).split()[0]
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
