"""Representations to invert: CNNs (AlexNet variants, VGG-16), HOG/HOGb and dense SIFT, and
any CNN exported to ONNX.

``models.get(name, weights="default")`` returns a representation object; see
``models.base.Representation`` for the interface every one of them follows.
``models.get("model.onnx")``, ``models.get("onnx", path="model.onnx")`` and
``models.from_onnx("model.onnx", input_size=None, mean=None, std=None)`` load an ONNX file.
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


def from_onnx(path, input_size=None, mean=None, std=None, **options):
    """The CNN in an ONNX file (see ``models.onnx_net.from_onnx``)."""
    from .onnx_net import from_onnx as load

    return load(path, input_size=input_size, mean=mean, std=std, **options)


def _onnx(name, weights, path=None, **options):
    if weights != "default" or (name == "onnx" and path is None):
        raise UnknownNameError(
            "an ONNX network is given by its file: models.get('model.onnx') or "
            "models.get('onnx', path='model.onnx'); its weights are in the file (no weights=)")
    return from_onnx(name if path is None else path, **options)


def get(name, weights="default", **options):
    """The representation called ``name`` (one of ``models.names()``), or the ONNX network in
    the file ``name`` (a path ending in ``.onnx``; also ``get("onnx", path=...)``)."""
    if name == "onnx" or str(name).lower().endswith(".onnx"):
        return _onnx(name, weights, **options)
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown network {name!r}; valid names: {', '.join(_REGISTRY)}")
    module, factory = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), factory)(weights=weights, **options)
