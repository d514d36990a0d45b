"""minigrad: a small reverse-mode autodiff on NumPy/CuPy, and feature inversion on top of it."""
from . import backend, functional
from . import functional as F  # noqa: F401 - the conventional short name
from .backend import get_array_module, to_device
from .gradcheck import GradcheckError, gradcheck
from .graph_view import graph
from .inversion import InversionResult, invert
from .tensor import Function, Tensor, _install_operators, is_grad_enabled, no_grad, tensor

_install_operators()

__version__ = "0.1.0"

__all__ = [
    "Function", "GradcheckError", "Tensor", "F", "backend", "functional", "get_array_module",
    "gradcheck", "graph", "invert", "InversionResult", "is_grad_enabled", "no_grad", "tensor",
    "to_device",
]
