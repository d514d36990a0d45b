"""``invert``: setup → optimise → summarise (the method is in ``minigrad.inversion``'s docstring).

- ``_setup`` computes the target code, builds the mask, resolves the options once (immutable),
  and asks the preset for the schedule, the term weights and the starting canvas: a
  ``Problem`` holds all of it.
- ``_optimise`` runs the loop: one forward/backward per step, host syncs only every
  ``sync_every`` steps (``History``), the optimiser's in-place update.
- ``_summarise`` computes the final code, the metrics and the JSON record of the options.
"""
import dataclasses
import math
import time

from .. import backend
from ..backend import np
from ..tensor import Tensor, no_grad
from . import metrics as M
from .image_input import as_image
from .objectives import FeatureLoss, get_objective  # noqa: F401 - FeatureLoss: its old home
from .optim import project_pixel_norm
from .presets import InversionError, get_preset, initial_canvas, resolve_options
from .regularizers import alpha_norm, total_variation
from .safeguard import Safeguard

TERMS = ("loss", "alpha", "tv", "energy")


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
        m = m * np.asarray(backend.asnumpy(backend.unwrap(mask)), dtype=np.float32)
    if not m.any():
        raise InversionError("the mask selects no entry of the code")
    return m


def input_scale(rep, hw=None):
    """Per-channel slope s_c of ``rep.preprocess`` as a host float64 (1, C, 1, 1) array: the
    optimisation variable x (pixel units) maps to the network input as s·x."""
    return np.asarray(rep.input_scale(), dtype=np.float64).reshape(1, -1, 1, 1)


# --- setup -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Problem:
    """Everything the optimisation needs, built once by ``_setup``."""

    rep: object
    layer: str
    opts: object  # the resolved options, an immutable mapping
    xp: object
    phi0: object  # target code on the device, (1, ...)
    mask: object  # device 0/1 array or None
    mask_host: object
    loss_scale: float  # C/‖MΦ0‖²
    hw: tuple
    jitter: int
    scale: object  # device (1, C, 1, 1) pixel units -> input space
    scale_host: object
    unit_scale: bool  # s = 1: the crop is fed as it is
    schedule: object
    weights: object  # presets.TermWeights
    sync_every: int
    original: object
    objective: object = None  # objectives.FeatureDistance, InnerObjective, EnhanceObjective

    @property
    def centre(self):
        return (self.jitter - 1) // 2

    def central(self, x):
        c, (H, W) = self.centre, self.hw
        return x[:, :, c:c + H, c:c + W]


def _target_code(rep, image, code, layer, opts, device, xp):
    """(Φ0 on the device with a batch axis, (H, W), the original uint8 image or None).

    Exactly one of ``image`` (the rules of ``image_input.as_image``) and ``code`` is given."""
    if (image is None) == (code is None):
        raise InversionError("invert needs exactly one target: an image, invert(rep, image), "
                             "or a precomputed code, invert(rep, code=...)")
    with no_grad():
        if code is None:
            x0 = rep.preprocess(as_image(image))
            phi0 = rep.forward(x0.to(device), layer).data
            return phi0, tuple(x0.shape[-2:]), rep.deprocess(x0)
        phi0 = xp.asarray(backend.to_device(backend.unwrap(code), device),
                          dtype=xp.float32)
    if opts["size"] is not None:
        hw = tuple(opts["size"])
    elif rep.input_size is not None:
        hw = tuple(rep.input_size)
    else:
        raise InversionError(
            f"{rep.name} accepts any input size: pass size=(H, W) with a precomputed code"
        )
    if _lacks_batch_axis(rep, layer, hw, phi0):
        phi0 = phi0[None]
    return phi0, hw, opts["original"]


def _lacks_batch_axis(rep, layer, hw, phi0):
    """True for a code without the batch axis (else its batch is 1 or one per restart)."""
    try:
        return phi0.ndim == len(rep.output_shape(layer, hw))
    except (NotImplementedError, ValueError):  # a representation without output_shape
        return phi0.ndim >= 1 and (phi0.ndim == 1 or phi0.shape[0] != 1)


def _check_layer(rep, layer):
    try:
        return rep.check_layer(layer)
    except ValueError as e:  # models' UnknownNameError: the one message, as an InversionError
        raise InversionError(str(e)) from None


def _setup(rep, image, code, layer, preset, overrides):
    backend.keep_freed_memory()  # no page faults for each iteration's temporaries
    opts = resolve_options(rep, layer, preset, **overrides)
    device = backend.check_device(opts["device"] or rep.device)
    if device == "cpu":
        backend.check_parallel(opts["threads"])
    if rep.device != device:
        rep.to(device)
    xp = backend.xp_for(device)
    objective = get_objective(opts["objective"])
    phi0, hw, original = _target_code(rep, image, code, layer, opts, device, xp)
    phi0 = objective.target(phi0, layer)
    mask_host = build_mask(phi0.shape, opts["window"], opts["channels"], opts["mask"])
    mask = None if mask_host is None else xp.asarray(mask_host)
    loss_scale = objective.loss_scale(phi0, mask, opts, layer)
    # the device the run used is recorded, also when the caller moved the model beforehand
    opts = resolve_options(rep, layer, preset, hw=hw, **{**overrides, "device": device})
    p = get_preset(preset)
    scale_host = input_scale(rep)
    return Problem(
        rep=rep, layer=layer, opts=opts, xp=xp, phi0=phi0, mask=mask, mask_host=mask_host,
        loss_scale=loss_scale, hw=hw, jitter=opts["jitter"],
        scale=xp.asarray(scale_host.astype(np.float32)), scale_host=scale_host,
        unit_scale=bool(np.all(scale_host == 1)), schedule=p.schedule(opts, hw),
        weights=p.term_weights(opts),
        sync_every=opts["sync_every"] or (1 if device == "cpu" else 10),
        original=None if original is None else np.asarray(original), objective=objective,
    )


def _initial_x(pb, rng):
    """The starting canvas on the device (host RNG, then moved: CPU and GPU start alike)."""
    z = initial_canvas(pb.opts, rng, pb.opts["restarts"], pb.rep.channels, pb.hw, pb.jitter,
                       pb.scale_host)
    return pb.xp.asarray(z.astype(np.float32))


# --- optimise --------------------------------------------------------------------------------
class History:
    """Per-step energy terms, kept on the device and pulled to the host only at sync points."""

    def __init__(self, xp):
        self.xp, self.pending = xp, []  # (step, lr, device array (4,)) since the last sync
        self.lists = {"step": [], "lr": [], **{t: [] for t in TERMS}}

    def record(self, step, lr, terms):
        self.pending.append((step, lr, self.xp.stack(terms)))

    def flush(self):
        """Move pending terms to the host; return (step, row) of the first non-finite one."""
        if not self.pending:
            return None
        vals = backend.asnumpy(self.xp.stack([p for _, _, p in self.pending])).astype(np.float64)
        bad = None
        for (s, lr, _), row in zip(self.pending, vals):
            self.lists["step"].append(s)
            self.lists["lr"].append(lr)
            for name, v in zip(TERMS, row):
                self.lists[name].append(float(v))
            if bad is None and not np.all(np.isfinite(row)):
                bad = (s, row)
        self.pending.clear()
        return bad

    def last(self):
        return {n: self.lists[n][-1] for n in TERMS}

    def truncate(self, step):
        """Drop the host entries of ``step`` and later (the steps a back-off redoes)."""
        keep = sum(1 for s in self.lists["step"] if s < step)
        for values in self.lists.values():
            del values[keep:]


def _energy(pb, xt, oy, ox):
    """Per-restart (loss, α-term, TV-term, energy) Tensors (R,) of the canvas ``xt`` whose
    H×W crop at (oy, ox) is fed to the representation."""
    (H, W), J = pb.hw, pb.jitter
    crop = xt if (oy, ox, J) == (0, 0, 1) else xt[:, :, oy:oy + H, ox:ox + W]
    inp = crop if pb.unit_scale else crop * pb.scale
    phi = pb.rep.forward(inp, pb.layer)
    loss = pb.objective.data_term(phi, pb)  # (R,)
    w, o = pb.weights, pb.opts
    ra = alpha_norm(xt, o["alpha"], w.per_pixel, w.normalize, reduction="none") * w.alpha
    tv = total_variation(xt, o["beta"], w.normalize, reduction="none") * w.tv
    return loss, ra, tv, loss + ra + tv


def _crop_offset(pb, rng, step):
    """The jitter offset of this step: random in [0, J) while the segment jitters, else the
    centre."""
    phases = pb.opts["jitter_phases"]
    seg = pb.schedule.segment_index(step)
    if pb.jitter > 1 and (phases is None or seg in phases):
        return tuple(int(v) for v in rng.integers(0, pb.jitter, size=2))
    return pb.centre, pb.centre


@dataclasses.dataclass
class Run:
    """The state of the loop: the iterate, the last x whose energy was finite, the outcome."""

    x: object
    snapshot: object
    snapshot_step: int = 0
    step: int = 0
    status: str = "completed"
    message: str = ""
    small_changes: int = 0
    guard: object = None  # the Safeguard (safeguard.py): snapshots and back-offs
    redo: object = None  # set by a back-off: the step to go back to


def _optimise(pb, x, rng):
    """The loop; returns (Run, History). Ctrl-C ends it per ``on_interrupt``."""
    opts, xp = pb.opts, pb.xp
    opt = get_preset(opts["preset"]).optimizer(opts)
    run, history = Run(x=x, snapshot=x.copy()), History(xp)
    run.guard = Safeguard(opt, opts["safeguard"])
    run.guard.save(x, 0, math.inf)  # the start: something to go back to before the first sync
    threads = opts["threads"] if opts["device"] == "cpu" else None  # the GPU is parallel already
    try:
        with backend.parallel(threads):
            _steps(pb, run, history, opt, rng)
    except KeyboardInterrupt:
        if opts["on_interrupt"] == "raise":
            raise
        history.flush()
        run.status, run.message = "interrupted", f"interrupted at iteration {run.step}"
    if run.status != "non-finite" and not bool(xp.all(xp.isfinite(run.x))):
        run.x = run.snapshot
        run.status, run.message = "non-finite", (f"the last update made x non-finite; kept the "
                                                 f"iterate of iteration {run.snapshot_step}")
    return run, history


def _steps(pb, run, history, opt, rng):
    """The iterations, until the schedule ends or a sync stops them."""
    opts, sched, step = pb.opts, pb.schedule, 0
    while step < sched.total:
        run.step, lr = step, run.guard.rate(sched(step))
        if sched.changes_at(step):
            opt.reset()  # CVPR15: momentum reset at each rate change; IJCV16: v at phase 2
        oy, ox = _crop_offset(pb, rng, step)
        xt = Tensor(run.x, requires_grad=True)
        loss, ra, tv, e = _energy(pb, xt, oy, ox)
        e.sum().backward()
        history.record(step, lr, [loss.data.mean() / opts["loss_weight"], ra.data.mean(),
                                  tv.data.mean(), e.data.mean()])
        if ((step + 1) % pb.sync_every == 0 or step + 1 == sched.total) and \
                _sync(pb, run, history, lr):
            return
        if run.redo is not None:  # a back-off: x and the optimiser are the snapshot's
            step, run.redo = run.redo, None
            continue
        g = xt.grad if pb.weights.step_scale == 1.0 else xt.grad * pb.weights.step_scale
        opt.step(run.x, g, lr)
        if opts["bound"] is not None:
            project_pixel_norm(run.x, opts["bound"])
        del xt, loss, ra, tv, e
        step += 1


def _sync(pb, run, history, lr):
    """A host sync: record the terms, stop on a non-finite energy, snapshot x, early stop and
    callback. Returns True when the loop must stop."""
    opts, step, guard = pb.opts, run.step, run.guard
    first = len(history.lists["energy"])
    bad = history.flush()
    failed = guard.failure(history.lists["energy"], first) if guard.enabled else None
    if failed is not None and guard.can_back_off():
        _back_off(run, history, *failed)
        return False
    if bad is not None:
        s, row = bad
        which = [n for n, v in zip(TERMS, row) if not math.isfinite(v)]
        run.status = "non-finite"
        run.message = (f"the energy became non-finite at iteration {s} ({', '.join(which)}"
                       f" = {', '.join(str(row[TERMS.index(n)]) for n in which)})"
                       + (f" after {guard.backoffs} learning-rate back-offs" if guard.backoffs
                          else "")
                       + f"; stopped, keeping the last finite x (iteration {run.snapshot_step})")
        run.x = run.snapshot
        return True
    guard.save(run.x, step, history.lists["energy"][-1])
    run.snapshot, run.snapshot_step = guard.x, step
    energy = history.lists["energy"]
    if opts["tol"] is not None and len(energy) >= 2:
        rel = abs(energy[-2] - energy[-1]) / max(abs(energy[-1]), 1e-30)
        run.small_changes = run.small_changes + 1 if rel < opts["tol"] else 0
    if opts["callback"] is not None:
        opts["callback"](step, pb.central(run.x) * pb.scale,
                         {**history.last(), "lr": lr, "backoffs": guard.backoffs})
    if opts["tol"] is not None and run.small_changes >= opts["patience"]:
        run.status = "converged"
        run.message = (f"relative energy change below {opts['tol']} for "
                       f"{opts['patience']} iterations; stopped at iteration {step}")
        return True
    return False


def _back_off(run, history, index, reason):
    """The safeguard's back-off after the failing history entry ``index``: x and the optimiser
    go back to a snapshot, the steps from there are dropped from the history and redone."""
    h, guard = history.lists, run.guard
    run.x, run.redo = guard.back_off(h["step"][index], h["lr"][index])
    history.truncate(run.redo)
    run.message = (f"{guard.backoffs} learning-rate back-off(s) (at iteration(s) "
                   f"{', '.join(map(str, guard.backoff_steps))}; the last: the energy {reason}; "
                   f"redone from iteration {run.redo} at lr {guard.cap:.3g})")


# --- summarise -------------------------------------------------------------------------------
def _summarise(pb, run, history, t_start):
    R = pb.opts["restarts"]
    x_in = pb.central(run.x) * pb.scale  # (R, C, H, W), input space
    x_host = backend.asnumpy(x_in)
    images = [pb.rep.deprocess(x_host[i:i + 1]) for i in range(R)]
    with no_grad():
        phi = pb.rep.forward(Tensor(x_in), pb.layer).data
    h = history.lists
    met = {**pb.objective.metrics(phi, pb),
           "iterations": len(h["energy"]), "layer": pb.layer, "representation": pb.rep.name,
           **run.guard.metrics()}
    if h["energy"]:
        met.update({f"final_{t}": h[t][-1] for t in TERMS})
    if pb.original is not None and pb.original.shape == images[0].shape:
        met["rmse"] = float(np.mean([M.rmse(im, pb.original) for im in images]))
        met["psnr"] = float(np.mean([M.psnr(im, pb.original) for im in images]))
        met["naturalness"] = float(np.mean([M.naturalness(im, pb.original) for im in images]))
    return InversionResult(
        image=images[0] if R == 1 else images, x=x_host, history=h, metrics=met,
        options=options_record(pb.opts, pb.schedule), status=run.status, message=run.message,
        wall_time=time.perf_counter() - t_start, original=pb.original,
        code_shape=tuple(pb.phi0.shape),
    )


def options_record(opts, schedule):
    """The JSON-serialisable record of resolved options (``InversionResult.options``)."""
    out = {}
    record = dict(opts, schedule=[[v, n] for v, n in schedule.segments], iters=schedule.total)
    for k, v in record.items():
        if k in ("callback", "original"):
            continue
        if k in ("mask", "init") and v is not None and not isinstance(v, str):
            v = "array"
        elif isinstance(v, slice):
            v = f"{'' if v.start is None else v.start}:{'' if v.stop is None else v.stop}"
        elif isinstance(v, tuple):
            v = list(v)
        elif backend.is_array(v):
            v = "array"
        out[k] = v
    return out


# --- the whole ------------------------------------------------------------------------------
def invert(rep, image=None, layer=None, preset="cvpr15", *, code=None, **overrides):
    """Reconstruct an image from ``rep``'s code at ``layer``; see ``minigrad.inversion``.

    Give exactly one target: ``invert(rep, image, ...)`` or ``invert(rep, code=..., ...)``.

    Args:
        rep: a representation (``models.get(...)``).
        image: a uint8 image (H, W), (H, W, 3), or with alpha (H, W, 2)/(H, W, 4), composited
            on white as the command line does (``image_input.as_image``); its code is
            computed. A float image is refused with a message saying how to convert it.
        code: a precomputed code Φ0 (float array or Tensor, with or without the batch axis);
            representations of any input size then need ``size=(H, W)``.
        layer: a name in ``rep.layers`` (default: the last one).
        preset: "cvpr15" or "ijcv16".
        **overrides: any preset value or option (see ``PRESETS`` and ``minigrad.inversion``).
    Returns:
        InversionResult.
    """
    t_start = time.perf_counter()
    layer = _check_layer(rep, rep.layers[-1] if layer is None else layer)
    pb = _setup(rep, image, code, layer, preset, overrides)
    rng = np.random.default_rng(pb.opts["seed"])
    run, history = _optimise(pb, _initial_x(pb, rng), rng)
    return _summarise(pb, run, history, t_start)
