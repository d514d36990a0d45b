"""ONNX networks (``models.from_onnx``) against PyTorch, the reader against the onnx package, and
every refusal of a bad file.

The networks are exported inside the tests, with random weights, by torch's legacy exporter
(``benchmarks.torch_onnx``); the reference runs each file in PyTorch op by op
(``TorchOnnx``: parsed by the onnx package, BatchNorm unfolded). "Close" is
max|minigrad − torch| ≤ rtol · max|torch| over each compared array.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx", reason="the onnx package exports the test networks")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import minigrad as mg  # noqa: E402
import models  # noqa: E402
from benchmarks import torch_onnx as T  # noqa: E402
from weights import onnx_file  # noqa: E402
from weights.onnx_file import OnnxError, read_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def close(a, b, rtol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(float(np.abs(b).max()), 1e-30)
    err = float(np.abs(a - b).max()) / scale
    return err <= rtol, err


def lrn_model(path):
    """A graph written with the onnx helper API: torch exports LocalResponseNorm as a
    decomposition, and asymmetric pads, even LRN sizes and Gemm's general form never."""
    rng = np.random.default_rng(5)
    init = lambda name, *shape: numpy_helper.from_array(  # noqa: E731
        rng.standard_normal(shape).astype(np.float32) * 0.5, name)
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["conv1"], "conv1", kernel_shape=[3, 3],
                         pads=[0, 1, 1, 0], strides=[2, 1]),
        helper.make_node("LRN", ["conv1"], ["norm1"], "norm1", size=5, alpha=0.5, beta=0.75,
                         bias=2.0),
        helper.make_node("LRN", ["norm1"], ["norm2"], "norm2", size=4, alpha=0.3, beta=0.6),
        helper.make_node("MaxPool", ["norm2"], ["pool1"], "pool1", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("AveragePool", ["pool1"], ["avg1"], "avg1", kernel_shape=[2, 3],
                         pads=[1, 0, 0, 2], count_include_pad=0),
        helper.make_node("AveragePool", ["avg1"], ["avg2"], "avg2", kernel_shape=[2, 2],
                         pads=[0, 1, 1, 1], strides=[1, 1], count_include_pad=1),
        helper.make_node("Constant", [], ["six"], "six",
                         value=numpy_helper.from_array(np.array(0.4, np.float32))),
        helper.make_node("Identity", ["six"], ["hi"], "hi_id"),
        helper.make_node("Clip", ["avg2", "", "hi"], ["clip1"], "clip1"),
        helper.make_node("Dropout", ["clip1"], ["drop1"], "drop1"),
        helper.make_node("Flatten", ["drop1"], ["flat"], "flat"),
        helper.make_node("Gemm", ["flat", "w2", "b2"], ["fc"], "fc", alpha=0.7, beta=1.5),
        helper.make_node("Mul", ["fc", "gain"], ["scaled"], "scaled"),
        helper.make_node("Softmax", ["scaled"], ["prob"], "prob", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "lrn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 12, 10])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 7])],
        [init("w1", 6, 3, 3, 3), init("b1", 6), init("w2", 6 * 3 * 5, 7), init("b2", 7),
         init("gain", 7)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """name -> (path, input shape) of the exported test networks."""
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    resnet = T.Features(T.resnet((1, 1), (8, 16), 10), ["layer1", "layer2", "fc"])
    specs = {
        "alexnet": (T.alexnet(0.125, 50), (1, 3, 224, 224), ["fc8"], True),
        "resnet": (resnet, (1, 3, 32, 32), ["layer1", "layer2", "fc"], False),
        "squeezenet": (T.squeezenet(0.125, 10), (1, 3, 48, 48), None, True),
        "inception": (T.InceptionNet(4, 10), (1, 3, 32, 32), None, True),
    }
    out = {}
    for name, (net, shape, names, fold) in specs.items():
        out[name] = (T.export(net, d / f"{name}.onnx", shape, names, fold=fold), shape)
    out["lrn"] = (lrn_model(d / "lrn.onnx"), (1, 3, 12, 10))
    return out


def _has_max_pool(rep, layer):
    return any(s.node.op_type == "MaxPool" for s in rep._steps_for((layer,)))


def check_every_layer(path, shape, dtype, rtol, grads=True):
    """Forward and input gradient at every layer, minigrad vs the PyTorch runner."""
    rep = models.from_onnx(path, dtype=dtype)
    ref = T.TorchOnnx(path, dtype=getattr(torch, dtype))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    for layer in rep.layers:
        xm, xt = mg.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ym, yt = rep.forward(xm, layer), ref.run(xt, [layer])[layer]
        ok, err = close(ym.numpy(), yt.detach().numpy(), rtol)
        assert ok, f"{layer}: forward relative error {err:.3g}"
        if not grads or (dtype == "float32" and _has_max_pool(rep, layer)):
            continue  # float32 gradients only where no max-pool near-tie can flip a winner
        g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
        ym.backward(g)
        yt.backward(torch.from_numpy(g))
        ok, err = close(xm.grad, xt.grad.numpy(), rtol)
        assert ok, f"{layer}: input-gradient relative error {err:.3g}"
    return rep


NETS = ["alexnet", "resnet", "squeezenet", "inception", "lrn"]


@pytest.mark.parametrize("name", NETS)
def test_every_layer_matches_torch_float64(nets, name):
    rep = check_every_layer(*nets[name], "float64", 1e-9)
    graph = onnx.load(nets[name][0]).graph
    outputs = {n.output[0] for n in graph.node}
    assert set(rep.layers) <= outputs
    assert {o.name for o in graph.output} <= set(rep.layers)


@pytest.mark.parametrize("name", NETS)
def test_every_layer_matches_torch_float32(nets, name):
    check_every_layer(*nets[name], "float32", 1e-4)
