"""Feature inversion (Mahendran & Vedaldi, CVPR15 and IJCV16): find x with Φ(x) ≈ Φ0.

    result = minigrad.invert(rep, image_or_code, layer="conv3", preset="cvpr15", **overrides)

The exact specification is ``docs/paper-spec.md`` §1–§3; this module implements it as follows.

**The variable.** x is always held in *pixel units*: mean-subtracted colour (or grey) values in
the 0–255 range, whatever the network's own input space. The network receives ``s_c · x``, where
``s_c`` is the per-channel slope of ``rep.preprocess`` (measured once from two constant
images). For CaffeNet and HOG/DSIFT s = 1; for torchvision's AlexNet s_c = 1/(255·std_c). All
constants of the papers (σ, B, V, the learning rates) are therefore used unchanged.

**Preset ``cvpr15``** (deep-goggle ``invert_nn.m``)::

    E(x) = C·‖M(Φ(x) − Φ0)‖²/‖MΦ0‖² + [(λTV/2)·TV_β(x) + (λL/2)·Σ x^α] / σ²
    m ← μ·m − lr·σ²·∇E(x);  x ← x + m        (m reset to 0 at every change of lr)

  The step ``lr·σ²·∇E`` is gradient descent on the normalised variable x/σ of the paper, which
  is what deep-goggle's update does; lr = 0.004 × the schedule. α = 6, λL = 8e−10, β = 2, C = 1.

  - **σ** = ρ·√(C·H·W) with ρ = 27098.1157/√(3·227·227) ≈ 68.93, the per-element RMS of
    mean-subtracted natural images. For CaffeNet at 227×227×3 this is exactly the paper's
    27098.1157; for other sizes and networks it keeps the same per-element balance between
    the data term and the regularisers (both regularisers are sums over elements) and the same
    RMS of the initial noise. For **HOG and DSIFT** (grey input 255·gray − 128) σ = ρ·√(H·W),
    *not* the authors' constant 27098.1157 applied to every grey image whatever its size: with
    a fixed σ the regulariser weight would grow with the image and the initial noise of a
    227×227 grey image would have RMS 119 instead of 69. Pass ``sigma=27098.1157`` to get the
    authors' choice.
  - **λTV by layer group**: 1 for CNN layers 1–6 (conv1…relu2), 10 for 7–12 (pool2…relu4),
    100 for 13–20 (conv5…fc8), by position for the 20-layer Caffe networks. Networks without
    those 20 layers map by receptive field: ≤ 51 px → 1, ≤ 131 px → 10, larger → 100 (the same
    groups on CaffeNet; torchvision's alexnet layers land in their namesakes' groups; VGG-16:
    conv1_1…pool3 → 1, conv4_x/pool4 → 10, conv5_x and fc → 100). HOG/DSIFT: 1.
  - **Schedules**: CNN 0.004 × [1 (100 it), 0.1 (200), 0.01 (100)]; HOG/HOGb/DSIFT
    0.004 × [1, 0.1, 0.01, 0.001] × 200 it; with ``window`` 0.004 × [0.1, 0.01, 0.001] × 200.
    ``iters=N`` stretches a schedule proportionally.
  - **Init**: Gaussian noise rescaled to ‖x‖ = σ (each restart separately).

**Preset ``ijcv16``** (nnpreimage)::

    E(x) = C·‖M(Φ(crop_J(x)) − Φ0)‖²/‖MΦ0‖² + N_α(x)/B^α + TV_β(x)/V^β,   ‖x_uv‖ ≤ B₊
    G ← 0.9·G + g²;  v ← 0.9·v − g/(1/η + √G);  x ← x + v;  project

  with N_α, TV_β the per-pixel-normalised (1/HW) forms, B = 80, B₊ = 160, V = B/6.5, α = 6,
  β = 2, C = 1 for CNNs and 100 for HOG/HOGb/DSIFT, η = H·W·0.05·B²/α. Jitter
  J = max(round(stride/4), 1) from the receptive-field stride of the layer: the canvas is
  (H+J−1)×(W+J−1), each iteration feeds a random H×W crop (the same offset for all restarts of
  a batch), the regularisers act on the whole canvas, and the result is the central crop.
  Phase 1: 300 iterations with jitter; phase 2: 50 at η/10 without jitter (the central crop),
  v reset between them. Init: uniform noise in [−1, 1] scaled so that the 95th percentile of
  |x| is B/√3 (each restart separately).

**Options** (every preset value can be overridden by keyword; unknown names are an error):
``restarts`` (independent reconstructions optimised as one batch: the energy is a sum of
per-image energies), ``window=K`` (compare only the central K×K of Φ0), ``channels``
("first-half", "second-half", a ``slice`` or "a:b"), ``mask`` (an explicit 0/1 array
broadcastable to Φ0), ``seed``, ``callback(step, x, terms)``, ``tol``/``patience`` (early stop
when the relative energy change stays below ``tol``; off in the presets), ``sync_every``
(host syncs — logging, NaN checks, callback, early stop — happen only every N steps: default 1
on the CPU, where they cost nothing, 10 on CUDA), ``device``, ``on_interrupt`` ("raise" or
"return": Ctrl-C returns the current result marked ``status="interrupted"``).

Non-finite energy stops the run: ``status="non-finite"``, a message saying where, and ``x`` is
the last iterate whose energy was finite. On the CPU the same seed gives bit-identical output.
"""
import dataclasses
import math
import time

from . import backend
from .backend import np
from .optim import AdaGradMomentum, MomentumSGD, PiecewiseSchedule, project_pixel_norm
from .regularizers import alpha_norm, total_variation
from .tensor import Function, Tensor, no_grad

SIGMA_CAFFENET = 27098.1157  # CVPR15: average norm of a 227×227×3 mean-subtracted image
RHO = SIGMA_CAFFENET / math.sqrt(3 * 227 * 227)  # ≈ 68.93, per-element RMS in pixel units
TERMS = ("loss", "alpha", "tv", "energy")

_COMMON = dict(
    iters=None, restarts=1, window=None, channels=None, mask=None, seed=0, callback=None,
    tol=None, patience=10, sync_every=None, device=None, on_interrupt="raise", init=None,
    size=None, jitter=None, jitter_phases=None, loss_weight=None, alpha=6.0, beta=2.0,
    bound=None, original=None,
)
PRESETS = {
    "cvpr15": dict(
        _COMMON, formulation="cvpr15", lambda_alpha=8e-10, lambda_tv=None, sigma=None, rho=RHO,
        lr=0.004, lr_factors=None, lr_lengths=None, momentum=0.9, init="gaussian",
    ),
    "ijcv16": dict(
        _COMMON, formulation="ijcv16", B=80.0, B_plus=160.0, V=None, eta=None,
        phase_iters=(300, 50), phase2_factor=0.1, momentum=0.9, decay=0.9, init="uniform",
        jitter_phases=(0,),
    ),
}


class InversionError(ValueError):
    """Bad arguments to ``invert`` (unknown option, layer, mask that selects nothing, ...)."""


@dataclasses.dataclass
class InversionResult:
    """What ``invert`` returns.

    image: uint8 HxWx3 (HxW for grey representations); a list of them when ``restarts > 1``.
    x: the final iterate in the network's input space, NumPy (R, C, H, W) (central crop).
    history: dict of per-iteration lists: ``step``, ``lr`` and every energy term (``loss`` is the
        normalised feature distance, ``alpha`` and ``tv`` the weighted regulariser terms,
        ``energy`` their weighted sum), each the mean over restarts.
    metrics: final ``relative_error`` (mean and ``per_restart``), ``rmse``/``psnr`` against the
        original image when it is known, ``iterations``.
    options: the resolved options (JSON-serialisable). wall_time: seconds.
    status: "completed", "converged" (early stop), "non-finite" or "interrupted"; message.
    """

    image: object
    x: object
    history: dict
    metrics: dict
    options: dict
    wall_time: float
    status: str = "completed"
    message: str = ""
    original: object = None
    code_shape: tuple = ()


class FeatureLoss(Function):
    """Per-image scale·‖M(φ − φ0)‖² (N,), fused: one pass forward, one backward."""

    def forward(self, phi, phi0, mask, scale):
        r = phi - phi0
        if mask is not None:
            r *= mask
        self.r, self.scale = r, scale
        return (r * r).reshape(r.shape[0], -1).sum(axis=1) * scale  # (N,)

    def backward(self, gy):
        g = gy.reshape((-1,) + (1,) * (self.r.ndim - 1)) * (2 * self.scale)  # (N,) -> (N,1,..)
        return g * self.r, None, None


# --- options ---------------------------------------------------------------------------------
def resolve_options(rep, layer, preset="cvpr15", **overrides):
    """The full option dict for one run: the preset's values, the layer-dependent ones filled
    in (λTV, schedule, C, jitter), then ``overrides`` on top."""
    if preset not in PRESETS:
        raise InversionError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    opts = dict(PRESETS[preset])
    unknown = sorted(set(overrides) - set(opts))
    if unknown:
        raise InversionError(
            f"unknown option(s) {', '.join(unknown)} for preset {preset!r}; valid options: "
            f"{', '.join(sorted(opts))}"
        )
    opts.update({k: v for k, v in overrides.items()})
    opts["preset"] = preset
    kind = getattr(rep, "kind", "cnn")
    if opts["loss_weight"] is None:
        opts["loss_weight"] = 100.0 if (preset == "ijcv16" and kind != "cnn") else 1.0
    if preset == "cvpr15":
        if opts["lambda_tv"] is None:
            opts["lambda_tv"] = lambda_tv_for(rep, layer)
        if opts["lr_factors"] is None or opts["lr_lengths"] is None:
            if opts["window"] is not None:
                factors, lengths = (0.1, 0.01, 0.001), (200, 200, 200)
            elif kind == "cnn":
                factors, lengths = (1.0, 0.1, 0.01), (100, 200, 100)
            else:
                factors, lengths = (1.0, 0.1, 0.01, 0.001), (200, 200, 200, 200)
            opts["lr_factors"] = opts["lr_factors"] or factors
            opts["lr_lengths"] = opts["lr_lengths"] or lengths
        if opts["jitter"] is None:
            opts["jitter"] = 1
    else:
        if opts["V"] is None:
            opts["V"] = opts["B"] / 6.5
        if opts["bound"] is None:
            opts["bound"] = opts["B_plus"]
        if opts["jitter"] is None:
            opts["jitter"] = jitter_for(rep, layer)
    opts["jitter"] = max(int(opts["jitter"]), 1)
    if int(opts["restarts"]) < 1:
        raise InversionError(f"restarts must be >= 1, got {opts['restarts']}")
    opts["restarts"] = int(opts["restarts"])
    if opts["on_interrupt"] not in ("raise", "return"):
        raise InversionError("on_interrupt must be 'raise' or 'return'")
    return opts


PAPER_LAYERS = ("conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3",
                "relu3", "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7",
                "relu7", "fc8")


def lambda_tv_for(rep, layer):
    """CVPR15's λTV for ``layer``: 1 / 10 / 100 for CNN layers 1–6, 7–12, 13–20; 1 for HOG/DSIFT.

    Networks with the paper's 20 layers (caffenet, caffe-alexnet) use the position, exactly as
    the paper. Others (torchvision alexnet, vgg16) use the receptive-field size: ≤ 51 px → 1,
    ≤ 131 px → 10, larger → 100, which gives CaffeNet's groups on CaffeNet itself (its layers
    have receptive fields 11 11 19 19 51 51 | 67 67 99 99 131 131 | 163 …) and puts each
    torchvision layer in its namesake's group; VGG-16: conv1_1…pool3 → 1, conv4_x/pool4 → 10,
    conv5_x and fc → 100.
    """
    if getattr(rep, "kind", "cnn") != "cnn":
        return 1.0
    if set(rep.layers) == set(PAPER_LAYERS) and len(rep.layers) == 20:
        i = list(rep.layers).index(layer)
        return 1.0 if i < 6 else 10.0 if i < 12 else 100.0
    try:
        size = rep.receptive_field(layer)[0]
    except Exception:  # noqa: BLE001 - a representation without geometry: use the position
        i = list(rep.layers).index(layer)
        return 1.0 if i < 6 else 10.0 if i < 12 else 100.0
    return 1.0 if size <= 51 else 10.0 if size <= 131 else 100.0


def jitter_for(rep, layer):
    """IJCV16's J = max(round(s/4), 1) with s the receptive-field stride of ``layer``."""
    try:
        stride = rep.receptive_field(layer)[1]
    except Exception:  # noqa: BLE001
        return 1
    return max(int(round(stride / 4)), 1)


def schedule_for(opts, hw):
    """The learning-rate schedule (PiecewiseSchedule) of the resolved options."""
    iters = opts["iters"]
    if opts["formulation"] == "cvpr15":
        return PiecewiseSchedule.scaled(opts["lr"], opts["lr_factors"], opts["lr_lengths"],
                                        total=iters)
    eta = opts["eta"]
    if eta is None:
        eta = hw[0] * hw[1] * 0.05 * opts["B"] ** 2 / opts["alpha"]
    return PiecewiseSchedule.scaled(eta, (1.0, opts["phase2_factor"]), opts["phase_iters"],
                                    total=iters)


# --- masks -----------------------------------------------------------------------------------
def parse_channels(channels, n):
    """"first-half" | "second-half" | slice | "a:b" -> a slice of ``n`` channels."""
    if isinstance(channels, slice):
        sl = channels
    elif channels == "first-half":
        sl = slice(0, n // 2)
    elif channels == "second-half":
        sl = slice(n // 2, n)
    elif isinstance(channels, str) and ":" in channels:
        try:
            a, b = (int(p) if p.strip() else None for p in channels.split(":", 1))
        except ValueError:
            raise InversionError(f"channels {channels!r}: expected 'a:b' with integers") from None
        sl = slice(a, b)
    else:
        raise InversionError(
            f"channels must be 'first-half', 'second-half', 'a:b' or a slice, got {channels!r}"
        )
    if len(range(n)[sl]) == 0:
        raise InversionError(f"channels {channels!r} selects none of the {n} channels")
    return sl


def build_mask(code_shape, window=None, channels=None, mask=None):
    """A host 0/1 float array broadcastable to the code (batch 1), or None for no mask.

    window=K keeps the central K×K spatial window of a (1, C, h, w) code; ``channels`` keeps a
    channel range; ``mask`` (array) is multiplied in.
    """
    if window is None and channels is None and mask is None:
        return None
    m = np.ones((1,) + tuple(code_shape[1:]), dtype=np.float32)
    if window is not None:
        k = int(window)
        if len(code_shape) != 4:
            raise InversionError(f"window needs a spatial code (N, C, h, w), got {code_shape}")
        h, w = code_shape[2:]
        if not 1 <= k <= min(h, w):
            raise InversionError(f"window {k} does not fit the {h}x{w} code")
        top, left = (h - k) // 2, (w - k) // 2
        win = np.zeros_like(m)
        win[:, :, top:top + k, left:left + k] = 1
        m *= win
    if channels is not None:
        if len(code_shape) < 2:
            raise InversionError(f"channels needs a code with a channel axis, got {code_shape}")
        sl = parse_channels(channels, code_shape[1])
        ch = np.zeros_like(m)
        ch[:, sl] = 1
        m *= ch
    if mask is not None:
        m = m * np.asarray(backend.asnumpy(getattr(mask, "data", mask)), dtype=np.float32)
    if not m.any():
        raise InversionError("the mask selects no entry of the code")
    return m


# --- pixel units <-> input space -------------------------------------------------------------
def input_scale(rep, hw):
    """Per-channel slope s_c of ``rep.preprocess`` (host float64, shape (1, C, 1, 1)).

    Measured from a black and a white image; the optimisation variable x (pixel units) maps to
    the network input as s·x. Ones when preprocess is not affine in this way.
    """
    h, w = hw
    try:
        lo = backend.asnumpy(rep.preprocess(np.zeros((h, w, 3), np.uint8)).data)
        hi = backend.asnumpy(rep.preprocess(np.full((h, w, 3), 255, np.uint8)).data)
        s = (hi.astype(np.float64) - lo).mean(axis=(0, 2, 3)) / 255.0
        if np.all(np.isfinite(s)) and np.all(s > 0):
            return s.reshape(1, -1, 1, 1)
    except Exception:  # noqa: BLE001 - fall back on identity units
        pass
    return np.ones((1, rep.channels, 1, 1))


def initial_canvas(opts, rng, R, C, hw, J, scale_host):
    """The host float64 starting canvas (R, C, H+J-1, W+J-1) in pixel units.

    "gaussian" (cvpr15): normal noise rescaled to ‖x‖ = σ; "uniform" (ijcv16): U[-1, 1] scaled so
    that the 95th percentile of |x| is B/√3; or an array in the input space, (C, H, W),
    (R|1, C, H, W) or canvas-sized, edge-padded to the canvas when jitter needs it.
    """
    H, W = hw
    Hc, Wc = H + J - 1, W + J - 1
    init = opts["init"]
    if isinstance(init, str):
        if init == "gaussian":
            z = rng.standard_normal((R, C, Hc, Wc))
            norms = np.sqrt((z * z).reshape(R, -1).sum(axis=1)).reshape(R, 1, 1, 1)
            cvpr = opts["formulation"] == "cvpr15"
            target_norm = opts["sigma"] if cvpr else RHO * math.sqrt(C * H * W)
            return z * (target_norm / norms)
        if init == "uniform":
            z = rng.uniform(-1.0, 1.0, (R, C, Hc, Wc))
            p95 = np.percentile(np.abs(z).reshape(R, -1), 95, axis=1).reshape(R, 1, 1, 1)
            return z * ((opts.get("B", 80.0) / math.sqrt(3)) / p95)
        raise InversionError(f"init must be 'gaussian', 'uniform' or an array, got {init!r}")
    z = np.asarray(backend.asnumpy(getattr(init, "data", init)), dtype=np.float64)
    z = z.reshape((-1, C) + z.shape[-2:]) / scale_host
    if z.shape[-2:] == (H, W) and J > 1:
        centre = (J - 1) // 2
        z = np.pad(z, ((0, 0), (0, 0), (centre, J - 1 - centre), (centre, J - 1 - centre)),
                   mode="edge")
    if z.shape[-2:] != (Hc, Wc):
        raise InversionError(f"init of shape {z.shape} does not match the canvas {Hc}x{Wc}")
    return np.broadcast_to(z, (R, C, Hc, Wc)).copy()


def _is_image(target):
    return isinstance(target, np.ndarray) and target.dtype == np.uint8


# --- the loop --------------------------------------------------------------------------------
def invert(rep, target, layer=None, preset="cvpr15", **overrides):
    """Reconstruct an image from ``rep``'s code at ``layer``; see the module docstring.

    Args:
        rep: a representation (``models.get(...)``).
        target: a uint8 image (H, W) or (H, W, 3), whose code is computed, or a precomputed
            code Φ0 (float array or Tensor, with or without the batch axis).
        layer: a name in ``rep.layers`` (default: the last one).
        preset: "cvpr15" or "ijcv16".
        **overrides: any preset value or option (see ``PRESETS`` and the module docstring).
    Returns:
        InversionResult.
    """
    t_start = time.perf_counter()
    layer = rep.layers[-1] if layer is None else layer
    if layer not in rep.layers:
        raise InversionError(
            f"unknown layer {layer!r} for {rep.name}; valid layers: {', '.join(rep.layers)}"
        )
    opts = resolve_options(rep, layer, preset, **overrides)
    device = backend.check_device(opts["device"] or getattr(rep, "device", "cpu"))
    if getattr(rep, "device", "cpu") != device:
        rep.to(device)
    xp = backend.xp_for(device)

    # target code and input size
    original = opts["original"]
    with no_grad():
        if _is_image(target):
            x0 = rep.preprocess(target)
            hw = tuple(x0.shape[-2:])
            phi0 = rep.forward(x0.to(device), layer).data
            original = rep.deprocess(x0)
        else:
            phi0 = xp.asarray(backend.to_device(getattr(target, "data", target), device),
                              dtype=xp.float32)
            if rep.input_size is not None:
                hw = tuple(rep.input_size)
            elif opts["size"] is not None:
                hw = tuple(opts["size"])
            else:
                raise InversionError(
                    f"{rep.name} accepts any input size: pass size=(H, W) with a precomputed code"
                )
            if phi0.ndim >= 1 and (phi0.ndim == 1 or phi0.shape[0] != 1):
                phi0 = phi0[None]
    if original is not None:
        original = np.asarray(original)
    mask_host = build_mask(phi0.shape, opts["window"], opts["channels"], opts["mask"])
    mask = None if mask_host is None else xp.asarray(mask_host)
    phi0_norm2 = float((phi0 * phi0 if mask is None else (phi0 * mask) ** 2).sum())
    if not phi0_norm2 > 0 or not math.isfinite(phi0_norm2):
        raise InversionError(f"the target code at {layer} is zero or not finite "
                             f"(‖Φ0‖² = {phi0_norm2}); nothing to invert")

    R, C = opts["restarts"], rep.channels
    J = opts["jitter"]
    H, W = hw
    Hc, Wc = H + J - 1, W + J - 1
    centre = (J - 1) // 2
    scale_host = input_scale(rep, hw)
    unit_scale = bool(np.all(scale_host == 1))
    scale = xp.asarray(scale_host.astype(np.float32))
    cvpr = opts["formulation"] == "cvpr15"
    if cvpr:
        sigma = opts["sigma"] or opts["rho"] * math.sqrt(C * H * W)
        opts["sigma"] = float(sigma)
    schedule = schedule_for(opts, hw)
    opts["schedule"] = [[v, n] for v, n in schedule.segments]
    opts["iters"] = schedule.total
    sync_every = opts["sync_every"] or (1 if device == "cpu" else 10)

    # initialisation (host RNG, then moved: CPU and GPU start from the same x)
    rng = np.random.default_rng(opts["seed"])
    z = initial_canvas(opts, rng, R, C, (H, W), J, scale_host)
    if not isinstance(opts["init"], str):
        opts["init"] = "array"
    x = xp.asarray(z.astype(np.float32))
    del z

    if cvpr:
        opt = MomentumSGD(opts["momentum"])
        step_scale = opts["sigma"] ** 2  # descent on x/σ: x ← x − lr·σ²·∇ₓE
        w_alpha = opts["lambda_alpha"] / 2 / opts["sigma"] ** 2
        w_tv = opts["lambda_tv"] / 2 / opts["sigma"] ** 2
        per_pixel = normalize = False
    else:
        opt = AdaGradMomentum(opts["momentum"], opts["decay"])
        step_scale = 1.0
        w_alpha = 1.0 / opts["B"] ** opts["alpha"]
        w_tv = 1.0 / opts["V"] ** opts["beta"]
        per_pixel = normalize = True
    loss_scale = opts["loss_weight"] / phi0_norm2
    jitter_phases = opts["jitter_phases"]

    def energy(xt, oy, ox, with_regs=True):
        crop = xt if (oy, ox, Hc, Wc) == (0, 0, H, W) else xt[:, :, oy:oy + H, ox:ox + W]
        inp = crop if unit_scale else crop * scale
        phi = rep.forward(inp, layer)
        loss = FeatureLoss.apply(phi, phi0, mask, scale=loss_scale)  # (R,)
        ra = alpha_norm(xt, opts["alpha"], per_pixel, normalize, reduction="none") * w_alpha
        tv = total_variation(xt, opts["beta"], normalize, reduction="none") * w_tv
        return loss, ra, tv, loss + ra + tv

    history = {"step": [], "lr": [], **{t: [] for t in TERMS}}
    pending = []  # device arrays (4,) per step, pulled to the host at sync points
    status, message = "completed", ""
    snapshot, snapshot_step = x.copy(), 0
    small_changes = 0
    step = 0

    def flush():
        """Pull pending terms to the host; return the first non-finite step or None."""
        if not pending:
            return None
        vals = backend.asnumpy(xp.stack([p for _, _, p in pending])).astype(np.float64)
        bad = None
        for (s, lr, _), row in zip(pending, vals):
            history["step"].append(s)
            history["lr"].append(lr)
            for name, v in zip(TERMS, row):
                history[name].append(float(v))
            if bad is None and not np.all(np.isfinite(row)):
                bad = (s, row)
        pending.clear()
        return bad

    try:
        for step in range(schedule.total):
            lr = schedule(step)
            if schedule.changes_at(step):
                opt.reset()  # CVPR15: momentum reset at each rate change; IJCV16: v at phase 2
            seg = schedule.segment_index(step)
            jit = J > 1 and (jitter_phases is None or seg in jitter_phases)
            if jit:
                oy, ox = (int(v) for v in rng.integers(0, J, size=2))
            else:
                oy = ox = centre
            xt = Tensor(x, requires_grad=True)
            loss, ra, tv, e = energy(xt, oy, ox)
            e.sum().backward()
            pending.append((step, lr, xp.stack([loss.data.mean() / opts["loss_weight"],
                                                 ra.data.mean(), tv.data.mean(),
                                                 e.data.mean()])))
            if (step + 1) % sync_every == 0 or step + 1 == schedule.total:
                bad = flush()
                if bad is not None:
                    s, row = bad
                    which = [n for n, v in zip(TERMS, row) if not math.isfinite(v)]
                    status = "non-finite"
                    message = (f"the energy became non-finite at iteration {s} ({', '.join(which)}"
                               f" = {', '.join(str(row[TERMS.index(n)]) for n in which)}); "
                               f"stopped, keeping the last finite x (iteration {snapshot_step})")
                    x = snapshot
                    break
                snapshot, snapshot_step = x.copy(), step
                if opts["tol"] is not None and len(history["energy"]) >= 2:
                    e1, e0 = history["energy"][-1], history["energy"][-2]
                    rel = abs(e0 - e1) / max(abs(e1), 1e-30)
                    small_changes = small_changes + 1 if rel < opts["tol"] else 0
                if opts["callback"] is not None:
                    terms = {n: history[n][-1] for n in TERMS}
                    terms["lr"] = lr
                    opts["callback"](step, _central(x, centre, H, W) * scale, terms)
                if opts["tol"] is not None and small_changes >= opts["patience"]:
                    status = "converged"
                    message = (f"relative energy change below {opts['tol']} for "
                               f"{opts['patience']} iterations; stopped at iteration {step}")
                    break
            opt.step(x, xt.grad if step_scale == 1.0 else xt.grad * step_scale, lr)
            if opts["bound"] is not None:
                project_pixel_norm(x, opts["bound"])
            del xt, loss, ra, tv, e
    except KeyboardInterrupt:
        if opts["on_interrupt"] == "raise":
            raise
        flush()
        status, message = "interrupted", f"interrupted at iteration {step}"
    if status in ("completed", "converged", "interrupted"):
        if not bool(xp.all(xp.isfinite(x))):
            x = snapshot
            status, message = "non-finite", (f"the last update made x non-finite; kept the "
                                              f"iterate of iteration {snapshot_step}")

    # results (outside the loop: host work is fine here)
    x_in = _central(x, centre, H, W) * scale  # (R, C, H, W), input space
    x_host = backend.asnumpy(x_in)
    images = [rep.deprocess(x_host[i:i + 1]) for i in range(R)]
    with no_grad():
        phi = rep.forward(Tensor(x_in), layer).data
    from . import metrics as M

    rel = M.relative_error(phi, phi0, mask=mask_host, per_image=True)
    met = {"relative_error": float(rel.mean()), "relative_error_per_restart": rel.tolist(),
           "iterations": len(history["energy"]), "layer": layer, "representation": rep.name}
    if history["energy"]:
        met.update({f"final_{t}": history[t][-1] for t in TERMS})
    if original is not None and original.shape == images[0].shape:
        met["rmse"] = float(np.mean([M.rmse(im, original) for im in images]))
        met["psnr"] = float(np.mean([M.psnr(im, original) for im in images]))
    opts = _jsonable(opts)
    return InversionResult(
        image=images[0] if R == 1 else images, x=x_host, history=history, metrics=met,
        options=opts, wall_time=time.perf_counter() - t_start, status=status, message=message,
        original=original, code_shape=tuple(phi0.shape),
    )


def _central(x, centre, H, W):
    return x[:, :, centre:centre + H, centre:centre + W]


def _jsonable(opts):
    out = {}
    for k, v in opts.items():
        if k in ("callback", "original"):
            continue
        if k == "mask":
            v = None if v is None else "array"
        elif isinstance(v, slice):
            v = f"{'' if v.start is None else v.start}:{'' if v.stop is None else v.stop}"
        elif isinstance(v, tuple):
            v = list(v)
        elif backend.is_array(v):
            v = "array"
        out[k] = v
    return out
