"""Bad input raises ValueError or TypeError with a message that names the shapes or values."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F


def t(*shape, requires_grad=False):
    return mg.tensor(np.ones(shape), requires_grad=requires_grad)


# (call, exception, regex the message must match)
BAD = [
    # mismatched shapes for an op
    (lambda: F.add(t(2, 3), t(4)), ValueError, r"add: .*\(2, 3\) and \(4,\)"),
    (lambda: t(2, 3) * t(3, 2), ValueError, r"mul: .*\(2, 3\) and \(3, 2\)"),
    (lambda: t(2, 3) - np.ones((2, 2)), ValueError, r"sub: .*\(2, 3\) and \(2, 2\)"),
    (lambda: F.maximum(t(5), t(4)), ValueError, r"maximum: .*\(5,\) and \(4,\)"),
    (lambda: F.where(np.ones((2, 3)) > 0, t(3), t(2)), ValueError,
     r"where: .*\(2, 3\) and \(3,\) and \(2,\)"),
    (lambda: F.matmul(t(2, 3), t(4, 2)), ValueError, r"matmul: .*\(2, 3\) and \(4, 2\)"),
    (lambda: t(3) @ t(4), ValueError, r"\(3,\) and \(4,\)"),
    (lambda: F.linear(t(2, 3), t(4, 5)), ValueError, r"linear: .*\(2, 3\).*\(4, 5\)"),
    (lambda: F.reshape(t(2, 3), 4, 2), ValueError, r"\(2, 3\) into \(4, 2\)"),
    (lambda: F.permute(t(2, 3), 0, 0), ValueError, r"\(0, 0\) is not a permutation"),
    (lambda: F.concat([t(2, 3), t(3, 2)]), ValueError, r"\[\(2, 3\), \(3, 2\)\]"),
    (lambda: F.stack([t(2, 3), t(3, 2)]), ValueError, r"\[\(2, 3\), \(3, 2\)\]"),
    (lambda: F.pad(t(2, 3), (1,)), ValueError, r"even number .*\(1,\)"),
    (lambda: F.sum(t(2, 3), 2), ValueError, r"axis 2 .* 2 dimensions"),
    (lambda: F.max(t(2, 3), -3), ValueError, r"axis -3 .* 2 dimensions"),
    # convolution
    (lambda: F.conv2d(t(1, 3, 5, 5), t(4, 1, 3, 3), groups=2), ValueError,
     r"input channels 3 .*groups=2"),
    (lambda: F.conv2d(t(1, 4, 5, 5), t(3, 2, 3, 3), groups=2), ValueError,
     r"output channels 3 .*groups=2"),
    (lambda: F.conv2d(t(1, 4, 5, 5), t(4, 3, 3, 3)), ValueError,
     r"weight \(4, 3, 3, 3\) .*input \(1, 4, 5, 5\)"),
    (lambda: F.conv2d(t(1, 3, 4, 4), t(2, 3, 5, 5)), ValueError,
     r"kernel 5x5 .*larger than the padded input 4x4"),
    (lambda: F.conv2d(t(1, 3, 4, 6), t(2, 3, 5, 5), padding=(0, 1)), ValueError,
     r"larger than the padded input 4x8"),
    (lambda: F.conv2d(t(1, 3, 4, 4), t(2, 3, 3, 3), dilation=2), ValueError,
     r"kernel 3x3 \(dilation 2x2\) is larger"),
    (lambda: F.conv2d(t(3, 5, 5), t(2, 3, 3, 3)), ValueError, r"4-D .*\(3, 5, 5\)"),
    (lambda: F.conv2d(t(1, 3, 5, 5), t(2, 3, 3, 3), t(3)), ValueError,
     r"bias shape \(3,\) .*2 output channels"),
    # pooling and normalisation
    (lambda: F.max_pool2d(t(1, 1, 2, 2), 3), ValueError,
     r"kernel \(3, 3\) is larger than the padded input \(2, 2\)"),
    (lambda: F.avg_pool2d(t(1, 1, 4, 2), 3, padding=(1, 0)), ValueError,
     r"larger than the padded input \(6, 2\)"),
    (lambda: F.max_pool2d(t(1, 1, 6, 6), 2, padding=2), ValueError,
     r"padding \(2, 2\) .*half the kernel \(2, 2\)"),
    (lambda: F.max_pool2d(t(1, 6, 6), 2), ValueError, r"4-D .*\(1, 6, 6\)"),
    (lambda: F.adaptive_avg_pool2d(t(2, 3), 2), ValueError, r"\(2, 3\)"),
    (lambda: F.adaptive_avg_pool2d(t(1, 1, 3, 3), 0), ValueError, r"output_size .*\(0, 0\)"),
    (lambda: F.local_response_norm(t(1, 6, 6), 3), ValueError, r"\(1, 6, 6\)"),
    (lambda: F.local_response_norm(t(1, 2, 6, 6), 0), ValueError, r"size must be >= 1, got 0"),
    (lambda: F.dropout(t(2, 3), 1.5, training=True), ValueError, r"\[0, 1\), got 1.5"),
    # backward
    (lambda: (t(2, 3) * t(3, requires_grad=True)).backward(), ValueError,
     r"non-scalar tensor of shape \(2, 3\) needs a gradient"),
    (lambda: (t(2, 3) * t(3, requires_grad=True)).backward(np.ones(3)), ValueError,
     r"gradient shape \(3,\) != tensor shape \(2, 3\)"),
    # integer tensors where gradients are required
    (lambda: mg.tensor([1, 2], dtype="int64", requires_grad=True), TypeError,
     r"floating-point .*int64"),
    (lambda: mg.Tensor(np.arange(3, dtype=np.int32), requires_grad=True), TypeError,
     r"floating-point .*int32"),
    (lambda: mg.Tensor(np.array([True]), requires_grad=True), TypeError, r"bool"),
    (lambda: mg.gradcheck(lambda a: a * 2, np.arange(3)), TypeError, r"int64"),
    # devices
    (lambda: mg.tensor([1.0], device="tpu"), ValueError, r"unknown device 'tpu'"),
]


@pytest.mark.parametrize("call, exc, pattern", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_is_refused_clearly(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_mixing_cpu_and_gpu_tensors(monkeypatch):
    """Simulated without a GPU: Tensor.device is patched so one input claims to be on CUDA."""
    monkeypatch.setattr(mg.Tensor, "device",
                        property(lambda self: getattr(self, "_fake_device", "cpu")))
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0])
    b._fake_device = "cuda"
    for call in (lambda: a + b, lambda: F.mul(b, a), lambda: F.conv2d(a, b),
                 lambda: F.stack([a, b])):
        with pytest.raises(ValueError, match=r"different devices \['cpu', 'cuda'\].*\.to\("):
            call()
    assert (a + a).device == "cpu"  # same device: fine


def test_integer_results_never_require_grad():
    x = mg.tensor([1.5, 2.5], requires_grad=True)
    i = x.astype("int32")
    assert i.dtype == np.int32 and not i.requires_grad and i._ctx is None
    mask = x > 2
    assert mask.dtype == bool and not mask.requires_grad


def test_integer_constants_mix_with_float_tensors():
    """An integer tensor that does not require grad is a valid constant operand."""
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    k = mg.tensor([2, 3], dtype="int64")
    (x * k).sum().backward()
    assert x.grad.tolist() == [2.0, 3.0]


def test_backward_without_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor([1.0]).sum().backward()
