"""The two formulations of the papers, one small object each: ``CVPR15`` and ``IJCV16``.

A preset owns everything that differs between the papers: its default values, the
layer-dependent rules (λTV by layer group, jitter by receptive-field stride, the data-term
weight C), the learning-rate schedule, the optimiser, the weights of the energy terms and the
scale of the initial noise. The loop (``loop.py``) asks the preset and never branches on its
name. The constants and formulas are those of the module docstring of ``minigrad.inversion``.

``resolve_options`` turns a preset plus the user's overrides into the immutable option
mapping of one run.
"""
import dataclasses
import math
import numbers
import types

from .. import backend
from ..backend import np
from .optim import AdaGradMomentum, MomentumSGD, PiecewiseSchedule

SIGMA_CAFFENET = 27098.1157  # CVPR15: average norm of a 227×227×3 mean-subtracted image
RHO = SIGMA_CAFFENET / math.sqrt(3 * 227 * 227)  # ≈ 68.93, per-element RMS in pixel units
PAPER_LAYERS = ("conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3",
                "relu3", "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7",
                "relu7", "fc8")

# options every preset accepts (see the module docstring of minigrad.inversion)
COMMON = dict(
    iters=None, restarts=1, window=None, channels=None, mask=None, seed=0, callback=None,
    tol=None, patience=10, sync_every=None, device=None, on_interrupt="raise", init=None,
    size=None, jitter=None, jitter_phases=None, loss_weight=None, alpha=6.0, beta=2.0,
    bound=None, original=None, objective="l2", safeguard=True, threads=None,
)


class InversionError(ValueError):
    """Bad arguments to ``invert`` (unknown option, layer, mask that selects nothing, ...)."""


@dataclasses.dataclass(frozen=True)
class TermWeights:
    """How the energy terms are weighted and how the gradient becomes a step.

    step_scale multiplies ∇E before the optimiser (σ² for CVPR15's descent on x/σ);
    per_pixel/normalize select the IJCV16 forms of N_α and TV_β (colour norms, 1/HW).
    """

    alpha: float
    tv: float
    step_scale: float
    per_pixel: bool
    normalize: bool


class Preset:
    """The interface of a formulation; see ``CVPR15`` and ``IJCV16``."""

    name = ""
    defaults = {}

    def fill(self, opts, rep, layer):
        """Fill the layer-dependent values the user left as None (in place, while resolving)."""
        if opts["loss_weight"] is None:
            opts["loss_weight"] = self.loss_weight(rep)
        if opts["jitter"] is None:
            opts["jitter"] = self.jitter(rep, layer)

    def fill_geometry(self, opts, channels, hw):
        """Fill the values that depend on the input size (in place)."""

    def loss_weight(self, rep):
        return 1.0

    def jitter(self, rep, layer):
        return 1

    def schedule(self, opts, hw):
        raise NotImplementedError

    def optimizer(self, opts):
        raise NotImplementedError

    def term_weights(self, opts):
        raise NotImplementedError

    def gaussian_norm(self, opts, channels, hw):
        """‖x‖ of a Gaussian initialisation: the per-element RMS ρ at this size."""
        return RHO * math.sqrt(channels * hw[0] * hw[1])


class CVPR15(Preset):
    """deep-goggle ``invert_nn.m``: momentum SGD on x/σ, λTV by layer group, Gaussian init."""

    name = "cvpr15"
    defaults = dict(
        COMMON, formulation="cvpr15", lambda_alpha=8e-10, lambda_tv=None, sigma=None, rho=RHO,
        lr=0.004, lr_factors=None, lr_lengths=None, momentum=0.9, init="gaussian",
    )

    def fill(self, opts, rep, layer):
        super().fill(opts, rep, layer)
        if opts["lambda_tv"] is None:
            opts["lambda_tv"] = lambda_tv_for(rep, layer)
        if opts["lr_factors"] is None or opts["lr_lengths"] is None:
            if opts["window"] is not None:
                factors, lengths = (0.1, 0.01, 0.001), (200, 200, 200)
            elif rep.kind == "cnn":
                factors, lengths = (1.0, 0.1, 0.01), (100, 200, 100)
            else:
                factors, lengths = (1.0, 0.1, 0.01, 0.001), (200, 200, 200, 200)
            opts["lr_factors"] = opts["lr_factors"] or factors
            opts["lr_lengths"] = opts["lr_lengths"] or lengths

    def fill_geometry(self, opts, channels, hw):
        sigma = opts["sigma"] or opts["rho"] * math.sqrt(channels * hw[0] * hw[1])
        opts["sigma"] = float(sigma)

    def schedule(self, opts, hw):
        return PiecewiseSchedule.scaled(opts["lr"], opts["lr_factors"], opts["lr_lengths"],
                                        total=opts["iters"])

    def optimizer(self, opts):
        return MomentumSGD(opts["momentum"])

    def term_weights(self, opts):
        sigma2 = opts["sigma"] ** 2
        return TermWeights(alpha=opts["lambda_alpha"] / 2 / sigma2,
                           tv=opts["lambda_tv"] / 2 / sigma2,
                           step_scale=sigma2,  # descent on x/σ: x ← x − lr·σ²·∇ₓE
                           per_pixel=False, normalize=False)

    def gaussian_norm(self, opts, channels, hw):
        return opts["sigma"]


class IJCV16(Preset):
    """nnpreimage: AdaGrad-momentum, N_α/B^α + TV_β/V^β, B₊ projection, jitter, uniform init."""

    name = "ijcv16"
    defaults = dict(
        COMMON, formulation="ijcv16", B=80.0, B_plus=160.0, V=None, eta=None,
        phase_iters=(300, 50), phase2_factor=0.1, momentum=0.9, decay=0.9, init="uniform",
        jitter_phases=(0,),
    )

    def fill(self, opts, rep, layer):
        super().fill(opts, rep, layer)
        if opts["V"] is None:
            opts["V"] = opts["B"] / 6.5
        if opts["bound"] is None:
            opts["bound"] = opts["B_plus"]

    def loss_weight(self, rep):
        return 1.0 if rep.kind == "cnn" else 100.0

    def jitter(self, rep, layer):
        return jitter_for(rep, layer)

    def schedule(self, opts, hw):
        eta = opts["eta"]
        if eta is None:
            eta = hw[0] * hw[1] * 0.05 * opts["B"] ** 2 / opts["alpha"]
        return PiecewiseSchedule.scaled(eta, (1.0, opts["phase2_factor"]), opts["phase_iters"],
                                        total=opts["iters"])

    def optimizer(self, opts):
        return AdaGradMomentum(opts["momentum"], opts["decay"])

    def term_weights(self, opts):
        return TermWeights(alpha=1.0 / opts["B"] ** opts["alpha"],
                           tv=1.0 / opts["V"] ** opts["beta"],
                           step_scale=1.0, per_pixel=True, normalize=True)


PRESET_OBJECTS = {p.name: p for p in (CVPR15(), IJCV16())}
PRESETS = {name: p.defaults for name, p in PRESET_OBJECTS.items()}  # name -> default values


def get_preset(name):
    if name not in PRESET_OBJECTS:
        raise InversionError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESET_OBJECTS[name]


def resolve_options(rep, layer, preset="cvpr15", *, hw=None, **overrides):
    """The immutable option mapping of one run: the preset's values, the layer-dependent ones
    filled in (λTV, schedule, C, jitter), ``overrides`` on top, and, when the input size
    ``hw`` is given, the size-dependent ones (CVPR15's σ)."""
    p = get_preset(preset)
    opts = dict(p.defaults)
    unknown = sorted(set(overrides) - set(opts))
    if unknown:
        raise InversionError(
            f"unknown option(s) {', '.join(unknown)} for preset {preset!r}; valid options: "
            f"{', '.join(sorted(opts))}"
        )
    opts.update(overrides)
    validate_options(opts)
    opts["preset"] = preset
    p.fill(opts, rep, layer)
    opts["jitter"] = max(int(opts["jitter"]), 1)
    opts["restarts"] = int(opts["restarts"])
    if opts["on_interrupt"] not in ("raise", "return"):
        raise InversionError("on_interrupt must be 'raise' or 'return'")
    if hw is not None:
        p.fill_geometry(opts, rep.channels, hw)
    return types.MappingProxyType(opts)


# --- validation -------------------------------------------------------------------------------
# option -> (rule, None allowed); every numeric option of every preset is listed
_RULES = {
    "positive": ("lr", "eta", "sigma", "rho", "B", "B_plus", "V", "loss_weight", "alpha", "beta",
                 "bound", "tol", "phase2_factor"),
    "non-negative": ("lambda_alpha", "lambda_tv"),
    "fraction": ("momentum", "decay"),
    "positive integer": ("iters", "restarts", "patience", "sync_every", "window", "threads"),
    "non-negative integer": ("seed", "jitter"),
    "positive numbers": ("lr_factors",),
    "positive integers": ("lr_lengths", "phase_iters", "size"),
    "non-negative integers": ("jitter_phases",),  # segment indices; () jitters in none
}
_EACH = {"positive numbers": "positive", "positive integers": "positive integer",
         "non-negative integers": "non-negative integer"}
_NOT_NONE = ("restarts", "patience", "seed", "alpha", "beta", "rho", "lambda_alpha", "momentum",
             "decay", "B", "B_plus", "phase2_factor", "phase_iters", "lr")
_WORDING = {"positive": "a finite number > 0", "non-negative": "a finite number >= 0",
            "fraction": "a number in [0, 1)", "positive integer": "an integer >= 1",
            "non-negative integer": "an integer >= 0",
            "positive numbers": "a sequence of finite numbers > 0",
            "positive integers": "a sequence of integers >= 1",
            "non-negative integers": "a sequence of integers >= 0"}


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_integer(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _obeys(rule, v):
    if rule in _EACH:  # a sequence of values, each under the singular rule
        return isinstance(v, (tuple, list)) and (len(v) > 0 or rule.startswith("non")) \
            and all(_obeys(_EACH[rule], x) for x in v)
    if rule.endswith("integer"):
        return _is_integer(v) and v >= (1 if rule.startswith("positive") else 0)
    if not _is_number(v) or not math.isfinite(v):
        return False
    return {"positive": v > 0, "non-negative": v >= 0, "fraction": 0 <= v < 1}[rule]


def validate_options(opts):
    """Raise InversionError, one line naming the option, for any numeric option out of range
    (a non-number, NaN, ±inf, a non-positive rate, sigma=0, lambda_tv=-1, ...)."""
    for rule, names in _RULES.items():
        for name in names:
            if name not in opts or (opts[name] is None and name not in _NOT_NONE):
                continue
            value = opts[name]
            if not _obeys(rule, value):
                raise InversionError(f"{name} must be {_WORDING[rule]}, got {value!r}")
    if opts.get("size") is not None and len(opts["size"]) != 2:
        raise InversionError(f"size must be (H, W), got {opts['size']!r}")


def schedule_for(opts, hw):
    """The learning-rate schedule (PiecewiseSchedule) of the resolved options."""
    return get_preset(opts["preset"]).schedule(opts, hw)


# --- layer-dependent rules --------------------------------------------------------------------
def _group_by_position(index):
    """CVPR15's λTV for layer ``index`` of the 20-layer networks: 1 / 10 / 100 for 1–6, 7–12,
    13–20."""
    return 1.0 if index < 6 else 10.0 if index < 12 else 100.0


def lambda_tv_for(rep, layer):
    """CVPR15's λTV for ``layer``: 1 / 10 / 100 for CNN layers 1–6, 7–12, 13–20; 1 for HOG/DSIFT.

    Networks with the paper's 20 layers (caffenet, caffe-alexnet) use the position, exactly as
    the paper. Others (torchvision alexnet, vgg16) use the receptive-field size: ≤ 51 px → 1,
    ≤ 131 px → 10, larger → 100, which gives CaffeNet's groups on CaffeNet itself (its layers
    have receptive fields 11 11 19 19 51 51 | 67 67 99 99 131 131 | 163 …) and puts each
    torchvision layer in its namesake's group; VGG-16: conv1_1…pool3 → 1, conv4_x/pool4 → 10,
    conv5_x and fc → 100.
    """
    if rep.kind != "cnn":
        return 1.0
    if set(rep.layers) == set(PAPER_LAYERS) and len(rep.layers) == 20:
        return _group_by_position(list(rep.layers).index(layer))
    size = rep.receptive_field(layer)[0]
    return 1.0 if size <= 51 else 10.0 if size <= 131 else 100.0


def jitter_for(rep, layer):
    """IJCV16's J = max(round(s/4), 1) with s the receptive-field stride of ``layer``."""
    stride = rep.receptive_field(layer)[1]
    return max(int(round(stride / 4)), 1)


# --- initialisation ---------------------------------------------------------------------------
def initial_canvas(opts, rng, R, C, hw, J, scale_host):
    """The host float64 starting canvas (R, C, H+J-1, W+J-1) in pixel units.

    "gaussian": normal noise rescaled to ‖x‖ = the preset's norm (σ for cvpr15); "uniform":
    U[-1, 1] scaled so that the 95th percentile of |x| is B/√3; or an array in the input space,
    (C, H, W), (R|1, C, H, W) or canvas-sized, edge-padded to the canvas when jitter needs it.
    """
    H, W = hw
    Hc, Wc = H + J - 1, W + J - 1
    init = opts["init"]
    if isinstance(init, str):
        if init == "gaussian":
            z = rng.standard_normal((R, C, Hc, Wc))
            norms = np.sqrt((z * z).reshape(R, -1).sum(axis=1)).reshape(R, 1, 1, 1)
            target_norm = get_preset(opts["preset"]).gaussian_norm(opts, C, hw)
            return z * (target_norm / norms)
        if init == "uniform":
            z = rng.uniform(-1.0, 1.0, (R, C, Hc, Wc))
            p95 = np.percentile(np.abs(z).reshape(R, -1), 95, axis=1).reshape(R, 1, 1, 1)
            return z * ((opts.get("B", 80.0) / math.sqrt(3)) / p95)
        raise InversionError(f"init must be 'gaussian', 'uniform' or an array, got {init!r}")
    return _canvas_from_array(init, R, C, hw, J, scale_host)


def _canvas_from_array(init, R, C, hw, J, scale_host):
    H, W = hw
    Hc, Wc = H + J - 1, W + J - 1
    z = np.asarray(backend.asnumpy(backend.unwrap(init)), dtype=np.float64)
    z = z.reshape((-1, C) + z.shape[-2:]) / scale_host
    if z.shape[-2:] == (H, W) and J > 1:
        centre = (J - 1) // 2
        z = np.pad(z, ((0, 0), (0, 0), (centre, J - 1 - centre), (centre, J - 1 - centre)),
                   mode="edge")
    if z.shape[-2:] != (Hc, Wc):
        raise InversionError(f"init of shape {z.shape} does not match the canvas {Hc}x{Wc}")
    return np.broadcast_to(z, (R, C, Hc, Wc)).copy()
