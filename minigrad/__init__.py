"""minigrad: a small reverse-mode autodiff on NumPy/CuPy, and feature inversion on top of it.

Importing minigrad loads the core only (backend, engine, ops, functional API, gradcheck,
graph view). ``minigrad.invert``, ``minigrad.InversionResult`` and ``minigrad.caricature``
load the inversion package on first use (PEP 562), ``minigrad.visualize`` the application
module that adds the natural-image statistics of activation maximisation to it, so that
``from minigrad import F`` in a model costs nothing above it.
"""
import importlib

from . import backend, functional
from . import functional as F  # noqa: F401 - the conventional short name
from .backend import get_array_module, to_device
from .gradcheck import GradcheckError, gradcheck
from .graph_view import graph
from .tensor import Function, Tensor, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"

_LAZY = {"invert": "minigrad.inversion", "InversionResult": "minigrad.inversion",
         "caricature": "minigrad.inversion.visualize",
         "visualize": "minigrad.app.visualization"}  # it reads the natural-image statistics


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'minigrad' has no attribute {name!r}")


__all__ = [
    "Function", "GradcheckError", "Tensor", "F", "backend", "functional", "get_array_module",
    "gradcheck", "graph", "invert", "caricature", "visualize", "InversionResult",
    "is_grad_enabled", "no_grad", "tensor", "to_device",
]
