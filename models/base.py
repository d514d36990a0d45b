"""The interface every representation follows; the inversion loop knows nothing else."""


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
    """

    name = "representation"
    kind = "cnn"
    layers = ()
    input_size = None
    channels = 3
    device = "cpu"

    def check_layer(self, layer):
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

    def receptive_field(self, layer):
        """(size, stride) in input pixels of one unit at ``layer``."""
        raise NotImplementedError

    def to(self, device):
        """Move constants (weights, filter banks) to ``device``; returns self."""
        raise NotImplementedError
