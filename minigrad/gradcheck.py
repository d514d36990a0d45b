"""Finite-difference gradient checks that anyone can run on their own functions.

``gradcheck(fn, *inputs)`` compares the gradient from backprop with central differences, in
float64, for every input that is a floating-point array or Tensor. The scalar checked is
<v, fn(x)> with a fixed random v, so every output element and a transposition bug count.
"""
from typing import NamedTuple

from . import backend
from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    pass


def _as_float64_tensor(value):
    data = backend.unwrap(value)
    # a C-contiguous copy: perturbing it through a flat view must reach fn, never the caller
    data = backend.get_array_module(data).array(data, dtype="float64", order="C")
    return Tensor(data, requires_grad=True)


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4, max_elements=400, seed=0):
    """Check fn's analytic gradients against central differences; raise on mismatch.

    Inputs that are arrays or Tensors are cast to float64 and differentiated; anything else is
    passed through. At most ``max_elements`` entries per input are perturbed (a fixed random
    subset when there are more). Returns, per checked input, ``(max_abs_err, max_rel_err)``.
    """
    rng = backend.np.random.default_rng(seed)
    args, _, objective, grads = _backprop(fn, inputs, rng)
    errors = []
    for i, arg in enumerate(args):
        if not isinstance(arg, Tensor):
            continue
        analytic = grads[i]
        flat = arg.data.reshape(-1)  # a view: perturbing it perturbs the input
        picks = backend.np.arange(flat.size)
        if flat.size > max_elements:
            picks = backend.np.sort(rng.choice(flat.size, max_elements, replace=False))
        worst_abs, worst_rel = 0.0, 0.0
        for j in picks.tolist():
            original = float(flat[j])
            flat[j] = original + eps
            plus = objective()
            flat[j] = original - eps
            minus = objective()
            flat[j] = original
            numeric = (plus - minus) / (2 * eps)
            exact = float(analytic.reshape(-1)[j])
            err = abs(exact - numeric)
            if err > atol + rtol * abs(numeric):
                index = backend.np.unravel_index(j, arg.shape)
                raise GradcheckError(
                    f"gradcheck failed for input {i} (shape {arg.shape}) at element "
                    f"{tuple(int(k) for k in index)}: analytic {exact:.10g} vs numeric "
                    f"{numeric:.10g} (abs err {err:.3g}, atol {atol}, rtol {rtol})"
                )
            worst_abs = max(worst_abs, err)
            worst_rel = max(worst_rel, err / max(abs(numeric), 1e-12))
        errors.append((worst_abs, worst_rel))
    return errors


def _backprop(fn, inputs, rng):
    """(args, v, objective, analytic gradients by argument position) for the scalar <v, fn(x)>."""
    args = [_as_float64_tensor(a) if _differentiable(a) else a for a in inputs]
    if not any(isinstance(a, Tensor) for a in args):
        kinds = [backend.unwrap(a) for a in inputs]
        kinds = [str(getattr(a, "dtype", type(a).__name__)) for a in kinds]
        raise TypeError(f"gradcheck needs a floating-point array or Tensor input, got {kinds}")
    out = fn(*args)
    xp = backend.get_array_module(out.data)
    v = backend.to_device(rng.standard_normal(out.shape), out.device)
    (out * Tensor(v, dtype="float64")).sum().backward()

    def objective():
        with no_grad():
            return float((fn(*args).data * v).sum())

    grads = {i: backend.asnumpy(a.grad if a.grad is not None else xp.zeros(a.shape))
             for i, a in enumerate(args) if isinstance(a, Tensor)}
    return args, v, objective, grads


class Comparison(NamedTuple):
    """One input's gradients, element by element (``compare_gradients``)."""

    input: int  # position among fn's arguments
    shape: tuple
    analytic: object  # host float64 arrays of ``shape``
    numeric: object
    worst: tuple  # index of the largest |analytic − numeric|
    ok: bool  # every element within atol + rtol·|numeric|


def compare_gradients(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Backprop's and central differences' gradient of <v, fn(x)> at EVERY element of every
    differentiable input (the same v and tolerances as ``gradcheck``, which stops at the first
    bad element): a list of ``Comparison``. Costs two calls of fn per element: small inputs."""
    args, _, objective, grads = _backprop(fn, inputs, backend.np.random.default_rng(seed))
    out = []
    for i, analytic in grads.items():
        flat = args[i].data.reshape(-1)  # a view: perturbing it perturbs the input
        numeric = backend.np.zeros(flat.size)
        for j in range(flat.size):
            original = float(flat[j])
            flat[j] = original + eps
            plus = objective()
            flat[j] = original - eps
            numeric[j] = (plus - objective()) / (2 * eps)
            flat[j] = original
        numeric = numeric.reshape(analytic.shape)
        err = backend.np.abs(analytic - numeric)
        worst = tuple(int(k) for k in backend.np.unravel_index(int(err.argmax()), err.shape)) \
            if err.size else ()
        ok = bool(backend.np.all(err <= atol + rtol * backend.np.abs(numeric)))
        out.append(Comparison(i, tuple(analytic.shape), analytic, numeric, worst, ok))
    return out


def _differentiable(value):
    data = backend.unwrap(value)
    return backend.is_array(data) and data.dtype.kind == "f"
