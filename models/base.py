"""The interface every representation follows; the inversion loop knows nothing else."""
from minigrad import backend


class UnknownNameError(ValueError):
    """An unknown network or layer name; the message lists the valid ones."""


class Representation:
    """A representation Φ with named layers.

    Attributes:
        name: registry name ("alexnet", "hog", ...).
        kind: "cnn", "hog" or "dsift" (the presets pick their constants by kind).
        layers: ordered layer names; ``forward(x, layer)`` computes nothing beyond ``layer``.
        input_size: (H, W) the network expects, or None when any size works (HOG, DSIFT).
        channels: 3 (RGB) or 1 (grey) input channels.
        device: "cpu" or "cuda".

    Methods every representation has: ``check_layer``, ``forward``, ``preprocess``,
    ``deprocess``, ``input_scale``, ``output_shape``, ``receptive_field``, ``has_weights``,
    ``require_weights`` and ``to``.
    """

    name = "representation"
    kind = "cnn"
    layers = ()
    input_size = None
    channels = 3
    device = "cpu"

    def check_layer(self, layer):
        """``layer`` when it is one of ``layers``; else UnknownNameError listing the valid ones."""
        if layer not in self.layers:
            raise UnknownNameError(
                f"unknown layer {layer!r} for {self.name}; valid layers: {', '.join(self.layers)}"
            )
        return layer

    def forward(self, x, layer):
        """x: Tensor (N, C, H, W) in the network's input space -> Tensor at ``layer``."""
        raise NotImplementedError

    def __call__(self, x, layer):
        return self.forward(x, layer)

    def preprocess(self, image):
        """HxWx3 (or HxW) uint8 image -> float32 Tensor (1, C, H, W) in the input space."""
        raise NotImplementedError

    def deprocess(self, x):
        """Tensor or array (1, C, H, W) (or (C, H, W)) -> uint8 HxWx3 image (HxW when grey)."""
        raise NotImplementedError

    def input_scale(self):
        """Host float64 (channels,): the slope d(input)/d(pixel, 0–255 units) of ``preprocess``
        per channel, in the network's channel order. Default: ones (255·gray − 128 inputs)."""
        return backend.np.ones(self.channels, dtype=backend.np.float64)

    def output_shape(self, layer, hw=None):
        """Shape (without the batch) at ``layer`` for an input of size ``hw`` = (H, W); None
        means ``input_size`` (representations without one require ``hw``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define output_shape")

    def _size(self, hw):
        """``hw`` (default ``input_size``) as (H, W); ValueError when neither is given."""
        hw = hw if hw is not None else self.input_size
        if hw is None:
            raise ValueError(f"{self.name} takes images of any size: give hw=(H, W)")
        height, width = hw
        return height, width

    def receptive_field(self, layer):
        """(size, stride) in input pixels of one unit at ``layer``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not define receptive_field(layer) -> (size, stride); "
            "every representation must (the inversion sets λTV and jitter from it)"
        )

    def has_weights(self, layer):
        """True when everything up to ``layer`` is loaded (always, without learnt weights)."""
        self.check_layer(layer)
        return True

    def require_weights(self, layer):
        """None when ``layer`` can run; else the model's MissingWeightsError explaining how to
        get the weights it lacks. Representations without learnt weights always can run."""
        self.check_layer(layer)

    def to(self, device):
        """Move constants (weights, filter banks) to ``device``; returns self."""
        raise NotImplementedError
