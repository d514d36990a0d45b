"""The data terms of IJCV16's three natural pre-images, each a fused op and a small objective.

One energy, three data terms (paper-spec §3; IJCV16 §3, the authors' ``nnpreimage``):

- ``l2`` (inversion): C·‖M(Φ(x) − Φ0)‖²/‖MΦ0‖², the op ``FeatureLoss``.
- ``inner`` (activation maximisation): −C·⟨w, Φ(x)⟩, the op ``InnerProduct``. w is given
  directly as the target: one unit per image (a channel at the central position of a conv
  code, or an fc unit), of value (10000/rf²)/#filters/max_activation; ``minigrad.inversion.
  visualize`` builds it.
- ``enhance`` (caricaturisation): −C·⟨w, Φ(x)⟩ with w = Φ0₊/‖Φ0₊‖², the positive part of the
  image's own code scaled so that ⟨w, Φ0⟩ = 1 at the start.

An objective turns the target code into what its data term compares against (``target``),
gives the data term's constant (``loss_scale``), evaluates the term per image (``data_term``,
shape (R,)) and reports its final values (``metrics``). The loop (``loop.py``) holds one in its
``Problem`` and never branches on its name.
"""
import math

from ..backend import get_array_module
from ..tensor import Function
from . import metrics as M
from .presets import InversionError


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


class InnerProduct(Function):
    """Per-image −scale·⟨w, φ⟩ = −scale·Σ w·φ over all but the batch axis: (N,).

    φ: (N, ...); w: (1, ...) shared by the batch or (N, ...) one per image. The gradient with
    respect to φ is −scale·gy·w (broadcast to φ's shape); w is a constant.
    """

    def forward(self, phi, w, scale):
        self.w, self.scale, self.shape = w, scale, phi.shape
        return (phi * w).reshape(phi.shape[0], -1).sum(axis=1) * (-scale)  # (N,)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = gy.reshape((-1,) + (1,) * (len(self.shape) - 1)) * (-self.scale)  # (N, 1, ..)
        return xp.broadcast_to(g * self.w, self.shape).copy(), None


# --- the objectives --------------------------------------------------------------------------
class FeatureDistance:
    """``l2``: the inversion's normalised feature distance (the default objective)."""

    name = "l2"

    def target(self, phi0, layer):
        return phi0

    def loss_scale(self, target, mask, opts, layer):
        xp = get_array_module(target)
        norm2 = float(xp.sum(target * target if mask is None else (target * mask) ** 2))
        if not norm2 > 0 or not math.isfinite(norm2):
            raise InversionError(f"the target code at {layer} is zero or not finite "
                                 f"(‖Φ0‖² = {norm2}); nothing to invert")
        return opts["loss_weight"] / norm2

    def data_term(self, phi, pb):
        return FeatureLoss.apply(phi, pb.phi0, pb.mask, scale=pb.loss_scale)

    def metrics(self, phi, pb):
        rel = M.relative_error(phi, pb.phi0, mask=pb.mask_host, per_image=True)
        return {"relative_error": float(rel.mean()), "relative_error_per_restart": rel.tolist()}


class InnerObjective(FeatureDistance):
    """``inner``: −C·⟨w, Φ(x)⟩ with the target w given as it is (activation maximisation)."""

    name = "inner"

    def loss_scale(self, target, mask, opts, layer):
        xp = get_array_module(target)
        if not bool(xp.all(xp.isfinite(target))) or not float(xp.abs(target).sum()) > 0:
            raise InversionError(f"the inner-product target at {layer} is zero or not finite")
        return float(opts["loss_weight"])

    def data_term(self, phi, pb):
        w = pb.phi0 if pb.mask is None else pb.phi0 * pb.mask
        return InnerProduct.apply(phi, w, scale=pb.loss_scale)

    def metrics(self, phi, pb):
        """``activation``: ⟨w, Φ(x*)⟩/Σw per image, the target unit's response for a one-hot w
        (the mean response of the selected units otherwise)."""
        xp = get_array_module(phi)
        w = pb.phi0 if pb.mask is None else pb.phi0 * pb.mask
        flat = (phi * w).reshape(phi.shape[0], -1).sum(axis=1)
        per = flat / xp.broadcast_to(w, phi.shape).reshape(phi.shape[0], -1).sum(axis=1)
        per = [float(v) for v in per.tolist()]
        return {"activation": float(sum(per) / len(per)), "activation_per_restart": per}


class EnhanceObjective(InnerObjective):
    """``enhance``: −C·⟨Φ0₊/‖Φ0₊‖², Φ(x)⟩, the caricature of the image whose code is Φ0."""

    name = "enhance"

    def target(self, phi0, layer):
        xp = get_array_module(phi0)
        pos = xp.maximum(phi0, 0)
        norm2 = float((pos * pos).sum())
        if not norm2 > 0 or not math.isfinite(norm2):
            raise InversionError(f"the code at {layer} has no positive entry (‖Φ0₊‖² = {norm2});"
                                 " nothing to enhance")
        return pos / norm2

    def metrics(self, phi, pb):
        """``enhancement``: ⟨w, Φ(x*)⟩ per image, 1 for the image itself."""
        w = pb.phi0 if pb.mask is None else pb.phi0 * pb.mask
        per = [float(v) for v in (phi * w).reshape(phi.shape[0], -1).sum(axis=1).tolist()]
        return {"enhancement": float(sum(per) / len(per)), "enhancement_per_restart": per}


OBJECTIVES = {o.name: o for o in (FeatureDistance(), InnerObjective(), EnhanceObjective())}


def get_objective(name):
    if name not in OBJECTIVES:
        raise InversionError(f"unknown objective {name!r}; valid objectives: "
                             f"{', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
