"""The inversion problem as plain NumPy data, shared by the PyTorch and JAX references.

``Problem.build(rep, target, layer, preset, **overrides)`` resolves everything that
``minigrad.invert`` decides before its loop, the same way (``minigrad/inversion/``):

- the options: the preset's values and the layer-dependent ones (λTV, C, jitter, schedule), via
  minigrad's own ``resolve_options``/``schedule_for`` (configuration, not autodiff);
- the input x0 (``rep.preprocess``) and its size, the mask, the per-channel input scale s_c;
- σ, the regulariser weights, the step scale (σ² for cvpr15), the loss scale C/‖MΦ0‖²;
- the initial canvas x (R, C, H+J−1, W+J−1) in pixel units, drawn with the same seeded NumPy
  generator and the same arithmetic as ``invert``; the generator is kept, because ``invert``
  draws the jitter offsets from it afterwards (``Problem.offsets``).

Φ0 itself is *not* computed here: each reference computes it with its own network from x0
(or takes the precomputed code), so that the target is that framework's own.
"""
import dataclasses

import numpy as np

from minigrad import backend
from minigrad.inversion import (
    build_mask,
    initial_canvas,
    input_scale,
    resolve_options,
    schedule_for,
)
from minigrad.inversion.image_input import as_image
from minigrad.inversion.presets import get_preset


def _is_image(target):
    """A uint8 array is an image (as ``invert(rep, image)``); anything else a code."""
    return isinstance(target, np.ndarray) and target.dtype == np.uint8


@dataclasses.dataclass
class Problem:
    rep: object
    layer: str
    opts: dict
    x0: object  # (1, C, H, W) float32 input-space image, or None with a precomputed code
    code: object  # precomputed Φ0 (with batch axis) or None
    mask: object  # host float32 array broadcastable to Φ0, or None
    scale: np.ndarray  # (1, C, 1, 1) float32 input scale s_c
    unit_scale: bool
    hw: tuple
    J: int
    centre: int
    schedule: object  # minigrad.inversion.optim.PiecewiseSchedule
    cvpr: bool
    step_scale: float
    w_alpha: float
    w_tv: float
    per_pixel: bool
    normalize: bool
    x_init: np.ndarray  # (R, C, Hc, Wc) float32, pixel units
    rng: object  # the generator, in the state invert leaves it in after the init

    @classmethod
    def build(cls, rep, target, layer=None, preset="cvpr15", **overrides):
        layer = rep.layers[-1] if layer is None else layer
        x0 = code = None
        if _is_image(target):
            x0 = backend.asnumpy(rep.preprocess(as_image(target)).data).astype(np.float32)
            hw = tuple(x0.shape[-2:])
        else:
            code = np.asarray(backend.asnumpy(backend.unwrap(target)), np.float32)
            if code.ndim == 1 or code.shape[0] != 1:
                code = code[None]
            size = overrides.get("size")
            hw = tuple(rep.input_size) if rep.input_size is not None else tuple(size)
        opts = dict(resolve_options(rep, layer, preset, hw=hw, **overrides))
        code_shape = cls._code_shape(rep, layer, x0, code)
        mask = build_mask(code_shape, opts["window"], opts["channels"], opts["mask"])
        R, C, J = opts["restarts"], rep.channels, opts["jitter"]
        scale = input_scale(rep)
        schedule = schedule_for(opts, hw)
        opts["iters"] = schedule.total
        # initialisation: the same generator and function as invert()
        rng = np.random.default_rng(opts["seed"])
        x_init = initial_canvas(opts, rng, R, C, hw, J, scale).astype(np.float32)
        w = get_preset(preset).term_weights(opts)
        return cls(rep, layer, opts, x0, code, mask, scale.astype(np.float32),
                   bool(np.all(scale == 1)), hw, J, (J - 1) // 2, schedule,
                   preset == "cvpr15", w.step_scale, w.alpha, w.tv, w.per_pixel, w.normalize,
                   x_init, rng)

    @staticmethod
    def _code_shape(rep, layer, x0, code):
        if code is not None:
            return code.shape
        from minigrad import Tensor, no_grad

        with no_grad():
            return tuple(rep.forward(Tensor(x0), layer).shape)

    def offsets(self, step):
        """(lr, reset, oy, ox) of iteration ``step``, drawing the jitter as ``invert`` does
        (call once per step, in order)."""
        s = self.schedule
        lr = s(step)
        reset = s.changes_at(step)
        seg = s.segment_index(step)
        phases = self.opts["jitter_phases"]
        if self.J > 1 and (phases is None or seg in phases):
            oy, ox = (int(v) for v in self.rng.integers(0, self.J, size=2))
        else:
            oy = ox = self.centre
        return lr, reset, oy, ox

    def loss_scale(self, phi0):
        """C / ‖MΦ0‖² from a framework's own Φ0 (host NumPy)."""
        phi0 = np.asarray(phi0, dtype=np.float32)
        m = phi0 if self.mask is None else phi0 * self.mask
        return self.opts["loss_weight"] / float((m * m).sum())

    def regulariser_scales(self):
        """(alpha scale, tv scale): the 1/HW normalisation of the IJCV16 forms, else 1."""
        Hc, Wc = self.x_init.shape[-2:]
        s = 1.0 / (Hc * Wc) if self.normalize else 1.0
        return s, s
