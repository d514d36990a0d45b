"""IJCV16's two other natural pre-images on the inversion loop: activation maximisation and
caricatures (the objectives ``inner`` and ``enhance`` of ``objectives.py``).

    result = maximise(rep, "conv5", channels=[0, 1], max_activation=maxima)   # one per channel
    result = caricature(rep, image, "relu4")

Both run the ``ijcv16`` preset (N_α/B^α + TV_β/V^β, B₊ projection, jitter, AdaGrad-momentum,
uniform init) with the data term replaced and only the fast phase (300 iterations, no slow
phase), as the authors' ``nnpreimage`` does, and return an ``InversionResult``.

**Activation maximisation** (``exp_maximization.m``): E(x) = −⟨w, Φ(crop_J(x))⟩ + priors, w one
unit per image: channel c at the central position of a conv code (``positions="all"``: every
position), or fc unit c. Its value is (10000/rf²)/#filters/max_activation_c, rf the layer's
receptive-field size, #filters the number of units sharing one image (1 here: every channel
gets its own image of the batch), max_activation_c the channel's largest response over natural
images. The image is as small as the authors': the largest square whose code at the layer is
at most reps×reps, reps = round(1.1·rf/stride) made odd (fc layers: the network's input size).

**Caricature** (``exp_enhance.m``): start from the image itself (pixel units), target
w = Φ0₊/‖Φ0₊‖² (so ⟨w, Φ(x0)⟩ = 1), the same prior and schedule.
"""
import contextlib
import types

from .. import backend
from ..backend import np
from ..tensor import Tensor, no_grad
from .loop import invert
from .objectives import get_objective
from .presets import InversionError

FAST_ITERATIONS = 300


def maximisation_size(rep, layer):
    """(H, W) of the authors' image for maximising one unit of ``layer``."""
    shape = rep.output_shape(layer)
    if len(shape) != 3:  # an fc layer sees the whole input
        return tuple(rep.input_size)
    rf, stride = rep.receptive_field(layer)
    reps = max(round(rf / stride * 1.1), 1)
    reps += 1 - reps % 2  # odd: the unit sits at the exact centre
    best = None
    for n in range(1, 4097):
        try:
            h = rep.output_shape(layer, (n, n))[1]
        except (ValueError, ZeroDivisionError):
            continue
        if h > reps:
            break
        if h >= 1:
            best = n
    if best is None:
        raise InversionError(f"no input size gives a {reps}x{reps} code at {layer}")
    return best, best


def inner_weight(rep, layer, max_activation, n_filters=1):
    """IJCV16's weight of the inner-product term: (10000/rf²)/#filters/max_activation."""
    rf = rep.receptive_field(layer)[0]
    return (10000.0 / rf ** 2) / n_filters / max_activation


def _channels(channels, n):
    chans = [channels] if np.isscalar(channels) else list(channels)
    if not chans:
        raise InversionError("channel: give at least one channel")
    for c in chans:
        if not (isinstance(c, (int, np.integer)) and 0 <= int(c) < n):
            raise InversionError(f"channel {c!r} is not one of the {n} channels (0..{n - 1})")
    return [int(c) for c in chans]


def _maxima(max_activation, chans, n):
    m = np.broadcast_to(np.asarray(max_activation, dtype=np.float64).reshape(-1), (n,)) \
        if np.size(max_activation) in (1, n) else None
    if m is None:
        raise InversionError(f"max_activation: a number or one value per channel ({n}), got "
                             f"{np.size(max_activation)} values")
    picked = m[chans]
    if not np.all(np.isfinite(picked) & (picked > 0)):
        raise InversionError(f"max_activation of channels {chans} must be positive and finite, "
                             f"got {picked.tolist()}")
    return picked


def unit_target(rep, layer, chans, weights, hw, positions="centre"):
    """Host float32 w (R, *code shape): weights[i] at channel chans[i] (the central position,
    or every position with ``positions="all"``), zero elsewhere."""
    shape = rep.output_shape(layer, hw)
    w = np.zeros((len(chans),) + tuple(shape), dtype=np.float32)
    for i, (c, v) in enumerate(zip(chans, weights)):
        if len(shape) == 1 or positions == "all":
            w[i, c] = v
        elif positions == "centre":
            w[i, c, shape[1] // 2, shape[2] // 2] = v
        else:
            raise InversionError(f"positions must be 'centre' or 'all', got {positions!r}")
    return w


def maximise(rep, layer, channels, max_activation, preset="ijcv16", positions="centre",
             iterations=FAST_ITERATIONS, restarts=1, size=None, leak=0.0, **overrides):
    """The image that maximises each of ``channels`` of ``layer`` (one image per channel and
    restart, optimised as one batch); see the module docstring.

    max_activation: a number or an array (channels of the layer,) of natural-image maxima.
    size: (H, W) of the image (default ``maximisation_size``). leak: the slope of every ReLU
    below zero during the optimisation (IJCV16's option, 0.05; 0 = the network as it is; the
    reported activations are always those of the network itself). Other overrides go to ``invert``
    (seed, jitter, sync_every, callback, ...). Returns an InversionResult whose ``image`` is a
    list when more than one image is made, ``metrics["activation_per_restart"]`` in the order
    channel-major, restart-minor.
    """
    if rep.kind != "cnn":
        raise InversionError(f"activation maximisation needs a CNN; {rep.name} is {rep.kind}")
    rep.check_layer(layer)
    rep.require_weights(layer)  # fc8 with conv-only weights: the model's own explanation
    n = rep.output_shape(layer)[0]
    chans = _channels(channels, n)
    hw = tuple(size) if size is not None else maximisation_size(rep, layer)
    weights = inner_weight(rep, layer, _maxima(max_activation, chans, n))
    chans_r = [c for c in chans for _ in range(int(restarts))]
    w = unit_target(rep, layer, chans_r, np.repeat(weights, int(restarts)), hw, positions)
    with _leaky(rep, leak):
        result = invert(rep, code=w, layer=layer, preset=preset, objective="inner", size=hw,
                        restarts=len(chans_r), phase_iters=(int(iterations),), **overrides)
    return _without_leak(rep, layer, result, w, "inner", leak)


def _leaky(rep, leak):
    """The representation's leaky-ReLU context for ``leak`` > 0 (CNNs), else nothing."""
    if not leak:
        return contextlib.nullcontext()
    if not hasattr(rep, "leaky"):
        raise InversionError(f"leak: {rep.name} has no ReLUs to make leaky")
    return rep.leaky(leak)


def _without_leak(rep, layer, result, target, objective, leak):
    """With a leak, the final metrics again with the network's own ReLUs (what it computes)."""
    if leak:
        xp = backend.xp_for(rep.device)
        with no_grad():
            phi = rep.forward(Tensor(xp.asarray(result.x)), layer).data
        pb = types.SimpleNamespace(phi0=xp.asarray(target), mask=None, mask_host=None)
        result.metrics.update(get_objective(objective).metrics(phi, pb))
    result.metrics["leak"] = float(leak)
    return result


def caricature(rep, image, layer, preset="ijcv16", iterations=FAST_ITERATIONS, leak=0.0,
               **overrides):
    """The caricature of the uint8 ``image`` at ``layer``: maximise ⟨Φ0₊/‖Φ0₊‖², Φ(x)⟩ from
    x = the image, under the prior (see the module docstring); Φ0 is the network's own code
    of the image, also with a ``leak``. Returns an InversionResult (``original``: the image
    as the network sees it)."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8):
        raise InversionError("caricature needs a uint8 image (H, W, 3) or (H, W)")
    rep.check_layer(layer)
    rep.require_weights(layer)
    x0 = rep.preprocess(image)  # (1, C, H, W) input space
    with no_grad():
        phi0 = rep.forward(x0, layer).data
    x0_host = backend.asnumpy(x0.data)
    with _leaky(rep, leak):
        result = invert(rep, code=phi0, layer=layer, preset=preset, objective="enhance",
                        init=x0_host, size=tuple(x0.shape[-2:]), original=rep.deprocess(x0_host),
                        phase_iters=(int(iterations),), **overrides)
    target = get_objective("enhance").target(phi0, layer)
    return _without_leak(rep, layer, result, target, "enhance", leak)
