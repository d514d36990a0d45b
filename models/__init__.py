"""Representations to invert: CNNs (AlexNet variants, VGG-16), HOG/HOGb and dense SIFT.

``models.get(name, weights="default")`` returns a representation object; see
``models.base.Representation`` for the interface every one of them follows.
"""
import importlib

from .base import Representation, UnknownNameError  # noqa: F401

# name -> "module:factory"; each factory takes (weights=..., **options)
_REGISTRY = {
    "caffenet": "models.alexnet:caffenet",
    "caffe-alexnet": "models.alexnet:caffe_alexnet",
    "alexnet": "models.alexnet:alexnet",
    "vgg16": "models.vgg:vgg16",
    "hog": "models.hog:hog",
    "hogb": "models.hog:hogb",
    "dsift": "models.dsift:dsift",
}


def names():
    return list(_REGISTRY)


def get(name, weights="default", **options):
    """The representation called ``name`` (one of ``models.names()``)."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown network {name!r}; valid names: {', '.join(_REGISTRY)}")
    module, factory = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), factory)(weights=weights, **options)
