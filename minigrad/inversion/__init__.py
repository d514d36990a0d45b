"""Feature inversion (Mahendran & Vedaldi, CVPR15 and IJCV16): find x with Φ(x) ≈ Φ0.

    result = minigrad.invert(rep, image, layer="conv3", preset="cvpr15", **overrides)
    result = minigrad.invert(rep, code=phi0, layer="conv3", size=(H, W))  # a precomputed code

**The target.** ``image`` is a uint8 array, (H, W) grey, (H, W, 3) RGB, or with an alpha channel
(composited on white exactly as the command line does); a float image is refused with a
message saying how to convert it (values are never rescaled by a guess). A precomputed code
goes in ``code=`` (``image_input.py``).

The exact specification is ``docs/paper-spec.md`` §1–§3; this package implements it as follows
(``presets.py``: the two formulations; ``loop.py``: setup → optimise → summarise;
``objectives.py``: the data terms; ``regularizers.py``, ``optim.py``, ``metrics.py``: the
priors, the update rules, the errors; ``visualize.py``: activation maximisation, caricatures).

**The variable.** x is always held in *pixel units*: mean-subtracted colour (or grey) values in
the 0–255 range, whatever the network's own input space. The network receives ``s_c · x``, where
``s_c`` is the per-channel slope of ``rep.preprocess`` (``rep.input_scale()``, exact for every
representation). For CaffeNet and HOG/DSIFT s = 1; for torchvision's AlexNet
s_c = 1/(255·std_c). All constants of the papers (σ, B, V, the learning rates) are therefore
used unchanged.

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
"return": Ctrl-C returns the current result marked ``status="interrupted"``), ``threads=N``
(CPU: the loop runs in ``backend.parallel(N)``, the large array work split over N threads with
BLAS at one; needs threadpoolctl; default None: one Python thread, BLAS as configured).

``objective`` selects the data term (``objectives.py``): "l2" (the default, the inversion
above), "inner" (−C·⟨w, Φ(x)⟩ with the target taken as the weights w: activation maximisation)
or "enhance" (−C·⟨Φ0₊/‖Φ0₊‖², Φ(x)⟩: caricatures); ``visualize.py`` runs the last two with the
authors' settings (``maximise``, ``caricature``; ``minigrad.visualize`` adds the natural-image
maxima). With "l2", ``metrics`` also holds ``naturalness`` (IJCV16: the intersection of the
gradient-orientation histograms of the original and the reconstruction) when the original is
known.

**The safeguard** (``safeguard.py``, on for both presets; ``safeguard=False`` turns it off):
when the energy becomes non-finite or grows more than 100× within 5 steps, the loop goes back to
its best recent snapshot (x and the optimiser's state), caps the learning rate at a tenth of
the failing step's and redoes the steps; at most 3 back-offs, recorded in ``history["lr"]`` and
in the metrics ``lr_backoffs`` / ``lr_backoff_steps``. Where the schedule is stable it never
acts and the run is bit-identical to the loop without it. When it gives up, the run stops:
``status="non-finite"``, a message saying where, and ``x`` is the last iterate whose energy
was finite. On the CPU the same seed gives bit-identical output.
"""
from .loop import (  # noqa: F401
    TERMS,
    FeatureLoss,
    InversionResult,
    build_mask,
    input_scale,
    invert,
    options_record,
    parse_channels,
)
from .presets import (  # noqa: F401
    PAPER_LAYERS,
    PRESETS,
    RHO,
    SIGMA_CAFFENET,
    InversionError,
    initial_canvas,
    jitter_for,
    lambda_tv_for,
    resolve_options,
    schedule_for,
)

__all__ = [
    "FeatureLoss", "InversionError", "InversionResult", "PRESETS", "RHO", "SIGMA_CAFFENET",
    "build_mask", "initial_canvas", "input_scale", "invert", "jitter_for", "lambda_tv_for",
    "parse_channels", "resolve_options", "schedule_for",
]
