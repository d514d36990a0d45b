"""Host syncs on the GPU path, counted with the CuPy stand-in (tests/fakecupy.py).

On a GPU every device -> host read (``float(x)``, ``bool(x)``, ``.get()``, ``nonzero``, a
boolean-mask update) stalls the queue. After warm-up (constants moved and filter banks
prepared), a representation's forward + backward makes none at all, and an inversion step
makes none beyond the History flush every ``sync_every`` steps.
"""
import numpy as np
import pytest
from test_inversion import TinyNet, smooth_image

import minigrad as mg
import models
from minigrad.inversion import invert


def _reps():
    conv = {k: v.numpy() for k, v in models.get("alexnet", weights=None).params.items()
            if not k.startswith("fc")}
    return {"alexnet": (lambda: models.get("alexnet", weights=conv), (1, 3, 67, 67), "pool5"),
            "hog": (lambda: models.get("hog"), (1, 1, 40, 48), "hog"),
            "hogb": (lambda: models.get("hogb", color=True), (1, 3, 40, 48), "hog"),
            "dsift": (lambda: models.get("dsift", bin_size=4), (1, 1, 40, 48), "dsift")}


@pytest.fixture(scope="module")
def reps():
    return _reps()


def _step(rep, x_host, layer):
    x = mg.Tensor(mg.backend.to_device(x_host, "cuda"), requires_grad=True)
    y = rep.forward(x, layer)
    (y * y).sum().backward()
    return x.grad


@pytest.mark.parametrize("name", ["alexnet", "hog", "hogb", "dsift"])
def test_forward_and_backward_make_no_host_sync_after_warm_up(name, reps, standin):
    build, shape, layer = reps[name]
    rep = build().to("cuda")
    x_host = np.random.default_rng(0).uniform(-100, 100, shape).astype(np.float32)
    _step(rep, x_host, layer)  # warm-up: filter banks split, weight matrices cached
    standin.reset()
    grad = _step(rep, x_host, layer)
    assert standin.count == 0
    assert mg.backend.device_of(grad) == "cuda"
    mg.backend.asnumpy(grad)
    assert standin.count == 1  # the counter does count


@pytest.mark.parametrize("name", ["tiny", "hog", "dsift"])
def test_an_inversion_step_syncs_only_every_sync_every_steps(name, standin):
    def syncs(iters):
        rep = TinyNet() if name == "tiny" else models.get(name)
        image = smooth_image() if name == "tiny" else smooth_image(40, 40)[..., 0]
        standin.reset()
        invert(rep, image, device="cuda", iters=iters, sync_every=10)
        return standin.count

    syncs(10)  # warm-up: the filter banks are split once per process
    assert syncs(40) - syncs(20) == 2  # two more History flushes, nothing per step
