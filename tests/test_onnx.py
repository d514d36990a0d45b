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


# --- the reader against the onnx package --------------------------------------------------------
@pytest.mark.parametrize("name", ["inception", "lrn"])
def test_reader_agrees_with_the_onnx_package(nets, name):
    path = nets[name][0]
    model, graph = onnx.load(path), read_onnx(path)
    assert graph.opset == next(o.version for o in model.opset_import if o.domain == "")
    assert len(graph.nodes) == len(model.graph.node)
    for ours, theirs in zip(graph.nodes, model.graph.node):
        assert (ours.name, ours.op_type) == (theirs.name, theirs.op_type)
        assert ours.inputs == tuple(theirs.input) and ours.outputs == tuple(theirs.output)
        expected = {a.name: helper.get_attribute_value(a) for a in theirs.attribute}
        assert set(ours.attrs) == set(expected)
        for key, value in expected.items():
            if isinstance(value, TensorProto):
                np.testing.assert_array_equal(ours.attrs[key], numpy_helper.to_array(value))
            elif isinstance(value, bytes):
                assert ours.attrs[key] == value.decode()
            else:
                np.testing.assert_allclose(ours.attrs[key], value, rtol=0)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert set(graph.initializers) == set(inits)
    for key, value in inits.items():
        assert graph.initializers[key].dtype == value.dtype
        np.testing.assert_array_equal(graph.initializers[key], value)
    (info,) = graph.inputs
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert info.dims == tuple(dims) and info.elem_type == TensorProto.FLOAT


def test_batch_norm_is_folded_into_the_convs(nets):
    path = nets["resnet"][0]
    graph = onnx.load(path).graph
    bns = [n for n in graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) >= 5  # exported unfused (fold=False), every one after a conv
    rep = models.from_onnx(path)
    ops = [s.node.op_type for s in rep._steps]
    assert "BatchNormalization" not in ops
    assert len(rep.layers) == len(graph.node) - len(bns)
    for bn in bns:  # the BN output is the layer; the conv output before it is gone
        assert bn.output[0] in rep.layers and bn.input[0] not in rep.layers


def test_a_batch_norm_after_a_pool_stays_a_step(nets):
    rep = models.from_onnx(nets["inception"][0])
    assert [s.node.op_type for s in rep._steps].count("BatchNormalization") == 1


# --- the representation ---------------------------------------------------------------------
def test_geometry_matches_the_builtin_alexnet(nets):
    """Output shapes and receptive fields of the exported torchvision AlexNet equal those of
    models' own torchvision AlexNet, layer by layer (the names differ: '/conv1/Conv_output_0')."""
    rep = models.from_onnx(nets["alexnet"][0])
    builtin = models.get("alexnet", weights=None)
    assert rep.input_size == (224, 224) and rep.kind == "cnn" and rep.channels == 3
    named = {layer.split("/")[1] if "/" in layer else layer: layer for layer in rep.layers}
    compared = 0
    for layer in builtin.layers:
        if layer in named:
            assert rep.receptive_field(named[layer]) == builtin.receptive_field(layer), layer
            compared += 1
    assert compared >= 15 and rep.receptive_field("fc8") == (355, 32)
    assert rep.output_shape("fc8") == (50,)
    assert rep.output_shape(named["conv5"]) == (32, 13, 13)
    assert rep.output_shape(named["conv5"], hw=(256, 256)) == (32, 15, 15)


def test_residual_geometry(nets):
    rep = models.from_onnx(nets["resnet"][0])
    x = np.zeros((1, 3, 32, 32), np.float32)
    for layer in rep.layers:
        assert rep.output_shape(layer) == tuple(rep.forward(x, layer).shape[1:])
    # stem: 7x7/2 conv then 3x3/2 pool; layer1: two 3x3 convs at stride 4; layer2 (stride 8) adds
    # a 3x3/2 and a 3x3 conv: 11 + 2·2·4 → 27 + 2·4 + 2·8 = 51
    assert rep.receptive_field("layer1") == (11 + 2 * 4 + 2 * 4, 4)
    assert rep.receptive_field("layer2") == (27 + 2 * 4 + 2 * 8, 8)
    size, stride = rep.receptive_field("fc")  # after global pooling: the whole input
    assert size >= 32 and stride == 8


def test_preprocessing_and_input_scale(nets):
    rep = models.from_onnx(nets["resnet"][0])
    assert rep.mean == (0.485, 0.456, 0.406) and rep.std == (0.229, 0.224, 0.225)
    assert "ImageNet" in rep.meta["normalization"] and "ImageNet" in repr(rep)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = rep.preprocess(image)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(rep.deprocess(x), image)
    lo = rep.preprocess(np.zeros((32, 32, 3), np.uint8)).numpy()
    hi = rep.preprocess(np.full((32, 32, 3), 255, np.uint8)).numpy()
    np.testing.assert_allclose(rep.input_scale(), (hi - lo).mean(axis=(0, 2, 3)) / 255, rtol=1e-6)
    own = models.from_onnx(nets["resnet"][0], mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    np.testing.assert_allclose(own.input_scale(), 1 / (255 * np.array([0.25, 0.5, 1.0])))
    assert own.meta["normalization"] == "mean/std as given"
    white = own.preprocess(np.full((8, 8, 3), 255, np.uint8)).numpy()
    np.testing.assert_allclose(white[0, :, 0, 0], [2.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="mean and std need 3 values"):
        models.from_onnx(nets["resnet"][0], mean=(0.5, 0.5))


def test_models_get_routes_onnx_files(nets):
    path = str(nets["squeezenet"][0])
    for rep in (models.get(path), models.get("onnx", path=path), models.from_onnx(path)):
        assert rep.name == "squeezenet.onnx" and rep.layers[-1] and rep.has_weights(rep.layers[0])
        assert rep.require_weights(rep.layers[-1]) is None
    with pytest.raises(models.UnknownNameError, match="weights are in the file"):
        models.get(path, weights="other.npz")
    with pytest.raises(models.UnknownNameError, match="given by its file"):
        models.get("onnx")
    with pytest.raises(models.UnknownNameError, match="unknown layer 'conv9'"):
        models.get(path).forward(np.zeros((1, 3, 48, 48), np.float32), "conv9")


def test_forward_runs_only_what_the_layer_needs(nets):
    rep = models.from_onnx(nets["resnet"][0])
    first = rep._steps_for((rep.layers[0],))
    assert [s.output for s in first] == [rep.layers[0]]
    assert len(rep._steps_for(("layer1",))) < len(rep._steps_for(("fc",))) == len(rep.layers)


def test_input_size_from_the_user_when_the_graph_has_none(tmp_path, nets):
    model = onnx.load(nets["squeezenet"][0])
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "side"
    onnx.save(model, tmp_path / "dynamic.onnx")
    with pytest.raises(OnnxError, match=r"not fixed .* pass input_size=\(H, W\)"):
        models.from_onnx(tmp_path / "dynamic.onnx")
    rep = models.from_onnx(tmp_path / "dynamic.onnx", input_size=(64, 64))
    assert rep.input_size == (64, 64) and rep.output_shape(rep.layers[0]) == (8, 31, 31)


def test_on_every_device(nets, device):
    """The same ONNX network on NumPy and (with a GPU) CuPy."""
    path, shape = nets["inception"]
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    host = models.from_onnx(path).forward(x, models.from_onnx(path).layers[-1]).numpy()
    rep = models.from_onnx(path, device=device)
    xm = mg.Tensor(mg.backend.to_device(x, device), requires_grad=True)
    y = rep.forward(xm, rep.layers[-1])
    assert mg.backend.device_of(y.data) == device
    ok, err = close(y.numpy(), host, 1e-5)
    assert ok, err
    (y * y).sum().backward()
    assert xm.grad.shape == shape


# --- inversion ------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["fc", "layer2"])
def test_invert_an_exported_resnet(nets, layer):
    """At the fc layer and at a residual block's output, a few iterations run and lower E."""
    rep = models.from_onnx(nets["resnet"][0])
    image = np.random.default_rng(3).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    result = mg.invert(rep, image, layer, iters=6)
    assert result.image.shape == (32, 32, 3) and result.image.dtype == np.uint8
    assert result.x.shape == (1, 3, 32, 32) and np.isfinite(result.x).all()
    energy = result.history["energy"]
    assert len(energy) == 6 and energy[-1] < energy[0]


def test_the_command_line_inverts_an_onnx_file(nets, tmp_path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 40, 3), np.uint8)).save(photo)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "out"
    args = ["invert", photo, "--net", nets["resnet"][0], "--layer", "fc", "--iters", 4,
            "--out", out, "--quiet"]
    r = subprocess.run([sys.executable, "-m", "minigrad.cli", *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with Image.open(out / "reconstruction.png") as im:
        assert im.size == (32, 32)
    assert (out / "metrics.json").stat().st_size > 0


# --- bad files: one-line errors, bounded work -------------------------------------------------
def tiny(path, extra_nodes=(), weight=None, opset=13):
    """image -> Conv(w) -> Relu ("out"), plus ``extra_nodes``; ``weight`` replaces w's tensor."""
    w = weight if weight is not None else numpy_helper.from_array(
        np.ones((2, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["image", "w"], ["conv"], "conv"),
             helper.make_node("Relu", ["conv"], ["out"], "relu"), *extra_nodes]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, path)  # no checker: the hostile ones are invalid on purpose
    return path


def refused(path, match, **options):
    with pytest.raises(OnnxError, match=match) as info:
        models.from_onnx(path, **options)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def test_a_tiny_model_loads(tmp_path):
    rep = models.from_onnx(tiny(tmp_path / "ok.onnx"))
    assert rep.layers == ("conv", "out")
    x = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4) - 20
    np.testing.assert_allclose(rep.forward(x, "out").numpy(), np.maximum(x.sum(1, keepdims=True),
                                                                         0).repeat(2, 1))


def test_unsupported_operator(tmp_path):
    path = tiny(tmp_path / "erf.onnx", [helper.make_node("Erf", ["out"], ["erf"], "my_erf")])
    message = refused(path, r"node 'my_erf' has operator 'Erf', which is not supported")
    assert "supported: Add, AveragePool, BatchNormalization" in message and "Softmax" in message
    path = tiny(tmp_path / "if.onnx", [helper.make_node(
        "If", ["out"], ["y"], "branch", then_branch=helper.make_graph([], "t", [], []),
        else_branch=helper.make_graph([], "e", [], []))])
    refused(path, "operator 'If'")
    custom = helper.make_node("Relu", ["out"], ["y"], "mine", domain="com.example")
    refused(tiny(tmp_path / "domain.onnx", [custom]), "domain 'com.example'")


def test_an_unsupported_use_of_a_supported_operator(tmp_path):
    pool = helper.make_node("MaxPool", ["out"], ["p", "indices"], "pool", kernel_shape=[2, 2])
    use = helper.make_node("Identity", ["indices"], ["i2"], "use")
    refused(tiny(tmp_path / "idx.onnx", [pool, use]), "its output 'indices' .* is used")
    conv = helper.make_node("Conv", ["out", "w"], ["c3"], "conv3d", kernel_shape=[1, 1, 1])
    refused(tiny(tmp_path / "3d.onnx", [conv]), "only 2-D images")


def test_truncated_file(tmp_path, nets):
    data = Path(nets["inception"][0]).read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 7):
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        refused(path, "truncated|ends inside|no graph")


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 5)
    refused(tmp_path / "text.onnx", "corrupt file|not an ONNX model")
    refused(tmp_path / "missing.onnx", "cannot read")


def test_inflated_declared_sizes_are_refused_before_allocating(tmp_path):
    import tracemalloc

    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20, 3, 1],
                       raw_data=b"\0" * 16)
    big = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3, 4096, 4096],
                      raw_data=b"\0" * 24)
    paths = [tiny(tmp_path / "huge.onnx", weight=huge), tiny(tmp_path / "big.onnx", weight=big)]
    tracemalloc.start()
    refused(paths[0], r"declared shape .* exceeds")
    refused(paths[1], r"needs 402653184 bytes of float32, the file holds 24 \(truncated\?\)")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20, peak
    # a length-delimited field that claims more bytes than the file has
    path = tmp_path / "long.onnx"
    path.write_bytes(Path(paths[1]).read_bytes() + bytes([0x3A]) + bytes([0xFF] * 5 + [0x0F]))
    refused(path, "ends inside a field")


def _external(tensor, location, length=None):
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", length)):
        if value is not None:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
    return tensor


def test_external_data(tmp_path):
    ok = tmp_path / "model"
    ok.mkdir()
    weight = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1)
    (ok / "w.bin").write_bytes(b"pad!" + weight.tobytes())
    tensor = _external(numpy_helper.from_array(weight, "w"), "w.bin", 24)
    tensor.external_data.add(key="offset", value="4")
    rep = models.from_onnx(tiny(ok / "ok.onnx", weight=tensor))
    np.testing.assert_array_equal(rep._host["w"], weight)
    # onnx's own external-data layout loads too
    model = onnx.load(tiny(tmp_path / "plain.onnx"))
    onnx.save_model(model, ok / "saved.onnx", save_as_external_data=True, location="saved.bin",
                    size_threshold=0)
    assert (ok / "saved.bin").exists() and models.from_onnx(ok / "saved.onnx").layers[-1] == "out"


def test_external_data_outside_the_model_directory(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 24)
    weight = lambda location, length=24: _external(numpy_helper.from_array(  # noqa: E731
        np.zeros((2, 3, 1, 1), np.float32), "w"), location, length)
    refused(tiny(d / "up.onnx", weight=weight("../secret.bin")), "not a relative path inside")
    refused(tiny(d / "abs.onnx", weight=weight(str(tmp_path / "secret.bin"))), "not a relative")
    (d / "link.bin").symlink_to(tmp_path / "secret.bin")
    refused(tiny(d / "link.onnx", weight=weight("link.bin")), "resolves outside")
    (d / "short.bin").write_bytes(b"\0" * 8)
    refused(tiny(d / "short.onnx", weight=weight("short.bin")), "past the end")
    refused(tiny(d / "long.onnx", weight=weight("short.bin", 10 ** 12)), "but its shape needs 24")
    refused(tiny(d / "none.onnx", weight=weight("nothing.bin")), "cannot read external data")


def test_size_caps(tmp_path, monkeypatch):
    path = tiny(tmp_path / "ok.onnx")
    monkeypatch.setattr(onnx_file, "MAX_FILE_BYTES", 64)
    refused(path, "exceeds the 64-byte cap")
    monkeypatch.undo()
    (tmp_path / "w.bin").write_bytes(b"\0" * 24)
    weight = _external(numpy_helper.from_array(np.zeros((2, 3, 1, 1), np.float32), "w"), "w.bin")
    monkeypatch.setattr(onnx_file, "MAX_EXTERNAL_BYTES", 16)
    refused(tiny(tmp_path / "ext.onnx", weight=weight), "external data exceed 16 bytes")


def test_opset_and_inputs(tmp_path):
    refused(tiny(tmp_path / "new.onnx", opset=30), "opset 30 is not supported")
    refused(tiny(tmp_path / "old.onnx", opset=6), "opset 6 is not supported")
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"], "add")], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              tmp_path / "two.onnx")
    refused(tmp_path / "two.onnx", "must take one image input, it takes 'a', 'b'")


@pytest.mark.parametrize("opset", [9, 11])
def test_older_opsets(tmp_path, opset):
    """Clip's bounds were attributes before opset 11; Dropout and Softmax changed too."""
    torch.manual_seed(1)
    path = T.export(T.InceptionNet(4, 10), tmp_path / f"inception{opset}.onnx", (1, 3, 32, 32),
                    opset=opset)
    assert onnx.load(path).opset_import[0].version == opset
    check_every_layer(path, (1, 3, 32, 32), "float64", 1e-9)


def test_softmax_before_opset_13_spans_the_trailing_axes(tmp_path):
    nodes = [helper.make_node("Mul", ["image", "two"], ["scaled"], "scaled"),
             helper.make_node("Softmax", ["scaled"], ["prob"], "prob", axis=1)]
    graph = helper.make_graph(
        nodes, "sm", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 5])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(2, np.int64), "two")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]),
              tmp_path / "sm.onnx")
    rep = models.from_onnx(tmp_path / "sm.onnx")
    x = np.random.default_rng(6).standard_normal((1, 3, 4, 5)).astype(np.float32)
    y = rep.forward(x, "prob")
    assert y.dtype == np.float32  # the integer constant did not promote to float64
    e = np.exp(2 * x - (2 * x).max())
    np.testing.assert_allclose(y.numpy(), e / e.sum(), rtol=1e-5)  # over C, H and W together
    assert rep.receptive_field("prob") == (5, 1)  # mixes every position of the 4×5 input


def test_long_lists_and_many_entries_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_file, "MAX_LIST", 8)
    pool = helper.make_node("MaxPool", ["out"], ["p"], "pool", kernel_shape=[1] * 9)
    refused(tiny(tmp_path / "ints.onnx", [pool]), "ints: more than 8 values in one list")
    shape = TensorProto(name="s", data_type=TensorProto.INT64, dims=[9],
                        int64_data=list(range(9)))  # packed varints
    refused(tiny(tmp_path / "packed.onnx", weight=shape), "a packed list of 9 bytes exceeds")
    monkeypatch.setattr(onnx_file, "MAX_ENTRIES", 4)  # the tiny graph has 5
    refused(tiny(tmp_path / "many.onnx"), "more than 4 nodes, initializers and value infos")
    concat = helper.make_node("Concat", ["out"] * 5, ["c"], "wide", axis=1)
    monkeypatch.setattr(onnx_file, "MAX_ENTRIES", 5)
    refused(tiny(tmp_path / "wide.onnx", [concat]), "more than 5 inputs and outputs in node ''")
