"""The CNNs (models/alexnet.py, models/vgg.py) against torch.nn references built here.

Every variant gets random weights drawn here into torch modules built independently of
models/ (nn.Conv2d with groups, nn.LocalResponseNorm, nn.MaxPool2d(ceil_mode=True),
nn.AdaptiveAvgPool2d, nn.Linear); the same arrays go to minigrad by key. Forward outputs are
compared at every named layer in float32 (rtol 1e-4, atol 1e-5 of the layer's largest value);
input gradients in float64, where float32 rounding cannot flip a max-pool winner between the
two implementations.
"""
import numpy as np
import pytest
from conftest import assert_same_on_devices

import models
from minigrad import backend
from minigrad.tensor import Tensor
from models.base import UnknownNameError
from models.cnn import MissingWeightsError, Normalization, normalization_from_meta
from weights.errors import WeightsError

torch = pytest.importorskip("torch", reason="torch (the test extra) builds the references")
nn = torch.nn

PAPER_LAYERS = ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3",
                "relu3", "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7",
                "relu7", "fc8"]


# --- torch references (written from the docs, not from models/) ----------------------------
class FirstFC(nn.Module):
    """(adaptive pool), NCHW flatten, Linear: torchvision's avgpool + classifier.1."""

    def __init__(self, cin, cout, pool=None):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool) if pool else nn.Identity()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


def torch_caffe(norm_first):
    def stage(i, conv):
        relu, norm = nn.ReLU(), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        tail = [(f"norm{i}", norm), (f"pool{i}", pool)]
        return [(f"conv{i}", conv), (f"relu{i}", relu)] + (tail if norm_first else tail[::-1])

    return (stage(1, nn.Conv2d(3, 96, 11, stride=4))
            + stage(2, nn.Conv2d(96, 256, 5, padding=2, groups=2))
            + [("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu3", nn.ReLU()),
               ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=2)), ("relu4", nn.ReLU()),
               ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=2)), ("relu5", nn.ReLU()),
               ("pool5", nn.MaxPool2d(3, 2, ceil_mode=True))]
            + torch_classifier(FirstFC(9216, 4096)))


def torch_classifier(first):
    return [("fc6", first), ("relu6", nn.ReLU()), ("fc7", nn.Linear(4096, 4096)),
            ("relu7", nn.ReLU()), ("fc8", nn.Linear(4096, 1000))]


def torch_alexnet():
    return [("conv1", nn.Conv2d(3, 64, 11, stride=4, padding=2)), ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(3, 2)),
            ("conv2", nn.Conv2d(64, 192, 5, padding=2)), ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(3, 2)),
            ("conv3", nn.Conv2d(192, 384, 3, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(384, 256, 3, padding=1)), ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(256, 256, 3, padding=1)), ("relu5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(3, 2))] + torch_classifier(FirstFC(9216, 4096, pool=6))


def torch_vgg16():
    out, cin = [], 3
    for b, widths in enumerate([(64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3], 1):
        for i, cout in enumerate(widths, 1):
            out += [(f"conv{b}_{i}", nn.Conv2d(cin, cout, 3, padding=1)),
                    (f"relu{b}_{i}", nn.ReLU())]
            cin = cout
        out.append((f"pool{b}", nn.MaxPool2d(2, 2)))
    return out + torch_classifier(FirstFC(25088, 4096, pool=7))


TORCH_BUILDERS = {
    "caffenet": lambda: torch_caffe(norm_first=False),
    "caffe-alexnet": lambda: torch_caffe(norm_first=True),
    "alexnet": torch_alexnet,
    "vgg16": torch_vgg16,
}


class Reference:
    """A torch.nn network with named layers and the arrays it was given, keyed as in weights/.

    Modules are built on the meta device and materialised only up to ``upto`` (a conv-only
    reference never allocates, initialises or converts fc6's 38M-100M weights).
    """

    def __init__(self, name, seed=0, params=None, upto=None, dtype=np.float32):
        with torch.device("meta"):
            named = TORCH_BUILDERS[name]()
        if upto is not None:
            named = named[:[n for n, _ in named].index(upto) + 1]
        self.named = [(n, m.to_empty(device="cpu")) for n, m in named]
        self.params = {}
        rng = np.random.default_rng(seed)
        for lname, module in self.named:
            for pname, p in module.named_parameters():
                key = f"{lname}.{pname.split('.')[-1]}"
                if params is not None:
                    a = np.asarray(params[key], dtype=dtype)
                else:  # He-uniform weights (variance 2/fan_in) and visible biases, drawn here
                    fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else 1
                    bound = np.sqrt(6.0 / fan_in) if p.ndim > 1 else 0.1
                    a = (rng.random(tuple(p.shape), dtype=np.float32) - np.float32(0.5))
                    a *= np.float32(2 * bound)
                p.data = torch.from_numpy(a)  # shares memory with the array given to minigrad
                self.params[key] = a

    def outputs(self, x, upto):
        """{layer: array} for every named layer up to ``upto`` (one pass)."""
        out, h = {}, x
        for lname, module in self.named:
            h = module(h)
            out[lname] = h
            if lname == upto:
                break
        return out


def assert_close(ours, ref, what, rtol=1e-4):
    ref = ref.detach().cpu().numpy() if isinstance(ref, torch.Tensor) else ref
    ours = ours.numpy() if isinstance(ours, Tensor) else ours
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != torch {ref.shape}"
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=1e-5 * scale + 1e-30, err_msg=what)


def random_input(name, size, seed=1, dtype=np.float32):
    """A random image-like input in the network's input space (0-255 minus mean for Caffe nets,
    mean/std-normalised for torchvision's)."""
    rng = np.random.default_rng(seed)
    scale = 60.0 if name.startswith("caffe") else 1.0
    return (rng.standard_normal((1, 3, size, size)) * scale).astype(dtype)


_REFS = {}


@pytest.fixture(scope="module", autouse=True)
def _free_references():
    yield
    _REFS.clear()  # the four networks' weights (about 1.3 GB) are not kept for other modules


def reference(name):
    """One random reference and minigrad model per variant, shared by the tests (fc6 is big)."""
    if name not in _REFS:
        ref = Reference(name)
        _REFS[name] = (ref, models.get(name, weights=ref.params))
    return _REFS[name]


# --- forward at every layer -------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("caffenet", 227), ("caffe-alexnet", 227),
                                       ("alexnet", 224), ("alexnet", 256), ("vgg16", 64)])
def test_forward_matches_torch_at_every_layer(name, size):
    ref, model = reference(name)
    assert model.kind == "cnn"
    assert list(model.layers) == [n for n, _ in ref.named]
    x = random_input(name, size)
    with torch.no_grad():
        expected = ref.outputs(torch.from_numpy(x), upto=model.layers[-1])
    ours = model.forward_layers(Tensor(x), model.layers)
    for layer in model.layers:
        assert_close(ours[layer], expected[layer], f"{name} {size}px {layer}")
        if size == model.input_size[0]:
            assert ours[layer].shape[1:] == model.output_shape(layer), layer
        else:
            assert ours[layer].shape[1:] == model.output_shape(layer, (size, size)), layer
    # forward(x, layer) stops at the layer and agrees with the one-pass dict
    for layer in (model.layers[0], "pool5", "fc8"):
        np.testing.assert_array_equal(model.forward(Tensor(x), layer).numpy(),
                                      ours[layer].numpy())


def test_caffe_layer_order():
    assert list(reference("caffenet")[1].layers) == PAPER_LAYERS
    alex = reference("caffe-alexnet")[1].layers
    assert list(alex[:4]) == ["conv1", "relu1", "norm1", "pool1"]
    assert sorted(alex) == sorted(PAPER_LAYERS)
    assert list(reference("alexnet")[1].layers) == [
        n for n in PAPER_LAYERS if not n.startswith("norm")]


@pytest.mark.parametrize("name", ["caffenet", "caffe-alexnet"])
def test_caffe_ceil_pooling_off_size(name):
    """At 231 px every Caffe pool rounds up (floor would give 27/13/6, ceil gives 28/14/7)."""
    ref, model = reference(name)
    x = random_input(name, 231, seed=2)
    with torch.no_grad():
        expected = ref.outputs(torch.from_numpy(x), upto="pool5")
    ours = model.forward_layers(Tensor(x), model.layers[:15])
    assert ours["pool5"].shape == (1, 256, 7, 7)
    for layer in model.layers[:15]:
        assert_close(ours[layer], expected[layer], f"{name} 231px {layer}")
    with pytest.raises(ValueError, match="fc6 expects its input of shape"):
        model.forward(Tensor(x), "fc6")


# --- input gradients --------------------------------------------------------------------------
@pytest.mark.parametrize("name,size,layers", [
    ("caffenet", 227, ["norm2", "relu5", "pool5"]),
    ("caffe-alexnet", 231, ["pool1", "pool5"]),
    ("alexnet", 256, ["pool5", "fc8"]),
    ("vgg16", 64, ["relu3_3", "pool5"]),
])
def test_input_gradient_matches_torch(name, size, layers):
    ref, model32 = reference(name)
    needed = model32.layers[:max(model32.layer_index(n) for n in layers) + 1]
    params = {k: v for k, v in ref.params.items() if k.split(".")[0] in needed}  # no unused fc
    net64 = Reference(name, params=params, upto=needed[-1], dtype=np.float64)
    model = models.get(name, weights=net64.params, dtype="float64")  # shares net64's arrays
    x = random_input(name, size, seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    for layer in layers:
        shape = (1,) + model.output_shape(layer, (size, size))
        r = rng.standard_normal(shape)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        (net64.outputs(xt, upto=layer)[layer] * torch.from_numpy(r)).sum().backward()
        xm = Tensor(x.copy(), requires_grad=True, dtype="float64")
        out = model.forward(xm, layer)
        assert out.dtype == np.float64
        (out * Tensor(r, dtype="float64")).sum().backward()
        assert_close(xm.grad, xt.grad, f"{name} d{layer}/dx", rtol=1e-7)


# --- receptive fields and shapes --------------------------------------------------------------
def test_caffenet_receptive_fields_match_paper():
    model = reference("caffenet")[1]
    sizes = [model.receptive_field(layer)[0] for layer in model.layers]
    strides = [model.receptive_field(layer)[1] for layer in model.layers]
    # paper-spec §6: 11 11 19 19 51 51 67 67 99 99 131 131 163 163 195 355…, fc layers all 355
    assert sizes == [11, 11, 19, 19, 51, 51, 67, 67, 99, 99, 131, 131, 163, 163, 195,
                     355, 355, 355, 355, 355]
    # composed from the geometry: each pool doubles the stride of what follows it
    assert strides == [4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32]


def test_other_receptive_fields():
    alex = reference("caffe-alexnet")[1]
    assert [alex.receptive_field(n) for n in ("norm1", "pool1", "norm2", "pool2", "fc6")] == [
        (11, 4), (19, 8), (51, 8), (67, 16), (355, 32)]
    tv = reference("alexnet")[1]
    assert tv.receptive_field("pool5") == (195, 32) and tv.receptive_field("fc8") == (355, 32)
    vgg = reference("vgg16")[1]
    assert vgg.receptive_field("conv1_2") == (5, 1)
    assert vgg.receptive_field("pool1") == (6, 2)
    assert vgg.receptive_field("conv5_3") == (196, 16)
    assert vgg.receptive_field("pool5") == (212, 32)
    assert vgg.output_shape("pool5") == (512, 7, 7) and vgg.output_shape("fc6") == (4096,)


# --- real weights -------------------------------------------------------------------------------
def _cached_default(name):
    import weights

    if not hasattr(weights, "default_path"):
        pytest.skip("weights.default_path is not available in this checkout")
    try:
        path = weights.default_path(name, fetch=False)
    except WeightsError as exc:
        pytest.skip(f"real {name} weights not cached ({exc}); run `minigrad weights fetch {name}`")
    if path is None or not path.exists():
        pytest.skip(f"real {name} weights not cached; run `minigrad weights fetch {name}`")
    return path


def _sample_image():
    try:
        from minigrad import samples

        return samples.load("astronaut")
    except (ImportError, AttributeError, FileNotFoundError):
        return np.random.default_rng(5).integers(0, 256, (256, 256, 3), dtype=np.uint8)


@pytest.mark.parametrize("name,layer", [("alexnet", "conv5"), ("vgg16", "conv5_3")])
def test_real_conv_weights_match_torch(name, layer):
    path = _cached_default(name)
    model = models.get(name)  # the cached default: nothing is fetched
    assert not model.has_weights("fc6")
    ref = Reference(name, params=model.params_numpy(), upto=layer)
    x = model.preprocess(_sample_image())
    with torch.no_grad():
        expected = ref.outputs(torch.from_numpy(x.numpy()), upto=layer)[layer]
    ours = model.forward(x, layer)
    assert_close(ours, expected, f"real {name} {layer} ({path})")
    assert float(expected.abs().max()) > 0
    with pytest.raises(MissingWeightsError, match="convert"):
        model.forward(x, "fc6")


# --- weights handling and errors ----------------------------------------------------------------
def test_unknown_names():
    with pytest.raises(UnknownNameError, match="caffenet.*vgg16"):
        models.get("resnet50", weights=None)
    model = reference("alexnet")[1]
    with pytest.raises(UnknownNameError, match="conv1, relu1, pool1"):
        model.forward(Tensor(random_input("alexnet", 224)), "norm1")
    with pytest.raises(UnknownNameError):
        model.receptive_field("conv6")
    assert model.layer_index("conv1") == 0 and model.layer_index("fc8") == 17


def test_wrong_shapes_and_keys_are_named():
    ref, _ = reference("alexnet")
    bad = dict(ref.params)
    bad["conv2.weight"] = np.zeros((192, 64, 3, 3), np.float32)
    with pytest.raises(WeightsError, match=r"conv2.weight.*\(192, 64, 3, 3\).*\(192, 64, 5, 5\)"):
        models.get("alexnet", weights=bad)
    missing = {k: v for k, v in ref.params.items() if k != "conv3.bias"}
    with pytest.raises(WeightsError, match="missing key 'conv3.bias'"):
        models.get("alexnet", weights=missing)
    with pytest.raises(WeightsError, match="unexpected keys.*norm1.weight"):
        models.get("alexnet", weights=dict(ref.params, **{"norm1.weight": np.ones(3)}))
    # caffe weights do not fit torchvision's AlexNet
    with pytest.raises(WeightsError, match="conv1.weight"):
        models.get("caffenet", weights={k: v for k, v in ref.params.items()})


def test_missing_fc_weights_refuse_to_run():
    ref, _ = reference("alexnet")
    conv_only = {k: v for k, v in ref.params.items() if not k.startswith("fc")}
    model = models.get("alexnet", weights=conv_only)
    x = Tensor(random_input("alexnet", 224))
    assert model.forward(x, "pool5").shape == (1, 256, 6, 6)
    assert model.has_weights("pool5") and not model.has_weights("fc6")
    for layer in ("fc6", "relu6", "fc8"):
        with pytest.raises(MissingWeightsError,
                           match="minigrad weights convert alexnet-owt-7be5be79.pth"):
            model.forward(x, layer)
    vgg = models.get("vgg16", weights={k: v for k, v in reference("vgg16")[0].params.items()
                                       if not k.startswith("fc")})
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        vgg.forward(Tensor(random_input("vgg16", 32)), "fc7")


@pytest.mark.parametrize("name,file", [("caffenet", "imagenet-caffe-ref.mat"),
                                       ("caffe-alexnet", "imagenet-caffe-alex.mat")])
def test_caffe_default_is_the_users_converted_file(name, file, tmp_path, monkeypatch):
    from weights.npz import save_npz

    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=f"minigrad weights convert {file}"):
        models.get(name)
    ref, model = reference(name)
    conv_only = {k: v for k, v in ref.params.items() if not k.startswith("fc")}
    save_npz(tmp_path / "weights" / f"{name}.npz", conv_only, {"variant": name})
    cached = models.get(name)
    x = Tensor(random_input(name, 227))
    np.testing.assert_array_equal(cached.forward(x, "conv5").numpy(),
                                  model.forward(x, "conv5").numpy())


def test_npz_round_trip_and_metadata(tmp_path):
    from weights.npz import save_npz

    ref, model = reference("caffenet")
    conv_only = {k: v for k, v in ref.params.items() if not k.startswith("fc")}
    meta = {"variant": "caffenet", "source": "test",
            "preprocessing": {"colour_order": "BGR", "mean": [104.0, 117.0, 123.0],
                              "std": [1.0, 1.0, 1.0]}}
    path = save_npz(tmp_path / "caffenet.npz", conv_only, meta)
    loaded = models.get("caffenet", weights=str(path))
    x = Tensor(random_input("caffenet", 227))
    np.testing.assert_array_equal(loaded.forward(x, "pool5").numpy(),
                                  model.forward(x, "pool5").numpy())
    with pytest.raises(MissingWeightsError, match=str(path.name)):
        loaded.forward(x, "fc6")
    # BGR metadata: preprocessing swaps channels and subtracts the BGR mean
    assert loaded.normalization.order == "BGR" and loaded.normalization.pixel_range == 255
    image = np.zeros((227, 227, 3), np.uint8)
    image[..., 0] = 200  # red
    pre = loaded.preprocess(image).numpy()
    np.testing.assert_allclose(pre[0, :, 0, 0], [-104.0, -117.0, 200 - 123.0], rtol=1e-6)
    np.testing.assert_array_equal(loaded.deprocess(pre), image)
    # a file made for another variant is refused even when the shapes fit
    other = save_npz(tmp_path / "alex.npz", conv_only, dict(meta, variant="caffe-alexnet"))
    with pytest.raises(WeightsError, match="caffe-alexnet"):
        models.get("caffenet", weights=str(other))
    # wrong shape inside a file: the loader names key, expected and actual shape
    bad = dict(conv_only, **{"conv1.bias": np.zeros(95, np.float32)})
    save_npz(tmp_path / "bad.npz", bad, meta)
    with pytest.raises(WeightsError, match=r"conv1.bias.*\(95,\).*\(96,\)"):
        models.get("caffenet", weights=str(tmp_path / "bad.npz"))


def test_mean_image_metadata():
    rng = np.random.default_rng(6)
    mean_image = rng.uniform(90, 130, (227, 227, 3))
    norm = normalization_from_meta({"preprocessing": {"colour_order": "RGB",
                                                      "mean": [120.0, 110.0, 100.0]}},
                                   Normalization())
    assert norm.pixel_range == 255.0 and norm.mean == (120.0, 110.0, 100.0)
    model = models.get("caffenet", weights=None)
    model.meta["mean_image"] = mean_image
    model._norm_arrays()
    image = rng.integers(0, 256, (227, 227, 3), dtype=np.uint8)
    pre = model.preprocess(image).numpy()[0].transpose(1, 2, 0)
    np.testing.assert_allclose(pre, image - mean_image, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(model.deprocess(model.preprocess(image)), image)


@pytest.mark.parametrize("name", ["caffenet", "alexnet", "vgg16"])
def test_preprocess_deprocess(name):
    model = reference(name)[1]
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, model.input_size + (3,), dtype=np.uint8)
    x = model.preprocess(image)
    assert x.shape == (1, 3) + model.input_size and x.dtype == np.float32
    assert not x.requires_grad
    np.testing.assert_array_equal(model.deprocess(x), image)
    if name == "alexnet":  # torchvision: [0, 1] RGB, ImageNet mean/std
        expected = (image[0, 0] / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    else:  # Caffe, RGB (the MatConvNet convention): 0-255 minus the mean pixel
        expected = image[0, 0] - np.array([122.67891434, 116.66876762, 104.00698793])
    if name != "vgg16":
        np.testing.assert_allclose(x.numpy()[0, :, 0, 0], expected, rtol=1e-5, atol=1e-5)
    # any size: shorter side resized to the input size, then a centre crop; grey and RGBA work
    wide = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    assert model.preprocess(wide).shape == (1, 3) + model.input_size
    assert model.preprocess(wide[:, :, 0]).shape == (1, 3) + model.input_size
    rgba = np.concatenate([wide, np.full((300, 500, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(model.preprocess(rgba).numpy(), model.preprocess(wide).numpy())
    with pytest.raises(ValueError, match="uint8"):
        model.preprocess(wide.astype(np.float32))


def _network(name):
    """The shared CNN of ``name``, or a fresh HOG/DSIFT ("hog-colour": colour HOG)."""
    if name == "hog-colour":
        return models.get("hog", color=True)
    return reference(name)[1] if name in CNN_NAMES else models.get(name)


CNN_NAMES = ("caffenet", "caffe-alexnet", "alexnet", "vgg16")


@pytest.mark.parametrize("name", list(models.names()) + ["hog-colour"])
def test_input_scale_is_the_measured_slope_of_preprocess(name):
    model = _network(name)
    hw = model.input_size or (24, 32)
    scale = model.input_scale()
    assert scale.dtype == np.float64 and scale.shape == (model.channels,)
    black = model.preprocess(np.zeros(hw + (3,), np.uint8)).numpy()[0].astype(np.float64)
    white = model.preprocess(np.full(hw + (3,), 255, np.uint8)).numpy()[0].astype(np.float64)
    slope = (white - black) / 255.0  # (C, H, W)
    np.testing.assert_allclose(slope, np.broadcast_to(scale[:, None, None], slope.shape),
                               rtol=1e-6, atol=0)


def test_input_scale_follows_the_network_channel_order():
    from models.cnn import CNN, Conv, ReLU

    norm = Normalization("BGR", 1.0, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    model = CNN("tiny", [Conv("conv1", 3, 2, 3), ReLU("relu1")], (8, 8), norm, weights=None,
                dtype="float64")
    np.testing.assert_allclose(model.input_scale(), [1 / 255 / 0.2, 1 / 255 / 0.25,
                                                     1 / 255 / 0.3], rtol=1e-15)
    black = model.preprocess(np.zeros((8, 8, 3), np.uint8)).numpy()[0]
    for rgb in range(3):  # only this colour at 255: network channel 2 - rgb (BGR) moves
        image = np.zeros((8, 8, 3), np.uint8)
        image[:, :, rgb] = 255
        moved = (model.preprocess(image).numpy()[0] - black) / 255.0
        expected = np.zeros(3)
        expected[2 - rgb] = model.input_scale()[2 - rgb]
        np.testing.assert_allclose(moved[:, 0, 0], expected, rtol=1e-12, atol=1e-15)


def test_modules_lists_the_layers_up_to_a_layer():
    model = reference("alexnet")[1]
    assert [m.name for m in model.modules()] == list(model.layers)
    assert [m.name for m in model.modules("pool2")] == ["conv1", "relu1", "pool1", "conv2",
                                                         "relu2", "pool2"]
    model.modules().clear()  # a copy: the network keeps its layers
    assert len(model.modules()) == 18
    with pytest.raises(UnknownNameError, match="valid layers: conv1, relu1"):
        model.modules("norm1")


def test_require_weights_is_the_public_explanation():
    conv_only = {k: v for k, v in reference("alexnet")[0].params.items()
                 if not k.startswith("fc")}
    model = models.get("alexnet", weights=conv_only)
    assert model.require_weights("pool5") is None
    with pytest.raises(MissingWeightsError, match="fc6.weight, fc6.bias.*alexnet-owt"):
        model.require_weights("fc7")
    for name in ("hog", "hogb", "dsift"):
        rep = models.get(name)
        layer = rep.layers[0]
        assert rep.has_weights(layer) and rep.require_weights(layer) is None
        with pytest.raises(UnknownNameError, match=f"valid layers: {layer}"):
            rep.require_weights("conv1")


def test_output_shape_has_one_signature():
    hog, dsift = models.get("hog"), models.get("dsift")
    assert hog.output_shape("hog", hw=(64, 48)) == (31, 8, 6)
    assert dsift.output_shape("dsift", (64, 48)) == (128, 5, 3)
    for rep in (hog, dsift):
        with pytest.raises(ValueError, match="any size: give hw"):
            rep.output_shape(rep.layers[0])
    alexnet = reference("alexnet")[1]
    assert alexnet.output_shape("pool5", hw=(256, 256)) == (256, 7, 7)
    assert alexnet.output_shape("pool5") == (256, 6, 6)


def test_receptive_field_is_required():
    class Bare(models.Representation):
        name, layers = "bare", ("out",)

    with pytest.raises(NotImplementedError, match=r"Bare does not define receptive_field"):
        Bare().receptive_field("out")
    for name in models.names():
        size, stride = _network(name).receptive_field(_network(name).layers[-1])
        assert size >= stride >= 1


def test_random_weights_are_seeded_and_documented():
    a = models.get("alexnet", weights=None, seed=3)
    b = models.get("alexnet", weights=None, seed=3)
    c = models.get("alexnet", weights=None, seed=4)
    w = [m.params["conv1.weight"].numpy() for m in (a, b, c)]
    np.testing.assert_array_equal(w[0], w[1])
    assert not np.array_equal(w[0], w[2])
    assert a.meta["pretrained"] is False
    assert all(p.dtype == np.float32 and not p.requires_grad for p in a.params.values())
    std = a.params["conv2.weight"].numpy().std()
    assert abs(std - np.sqrt(2.0 / (64 * 25))) < 0.01 * std + 1e-3


@pytest.mark.parametrize("name,size,layer", [("caffenet", 99, "pool5"),
                                             ("caffe-alexnet", 99, "pool5"),
                                             ("alexnet", 99, "fc8"), ("vgg16", 32, "pool5")])
def test_forward_and_input_gradient_on_cuda_match_cpu(name, size, layer, cuda):
    """The reference's random weights, a small input: the same code and input gradient on
    both devices (bit-identical on the CuPy stand-in, 1e-4 relative on a GPU)."""
    ref, model32 = reference(name)
    needed = model32.layers[:model32.layer_index(layer) + 1]
    params = {k: v for k, v in ref.params.items() if k.split(".")[0] in needed}  # no unused fc
    model = models.get(name, weights=params)  # its own Tensors: .to() does not touch ref's
    results = {}
    for device in ("cpu", cuda):
        model.to(device)
        assert all(p.device == device for p in model.params.values())
        x = Tensor(backend.to_device(random_input(name, size), device), requires_grad=True)
        out = model.forward(x, layer)
        assert out.device == device
        r = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
        (out * Tensor(backend.to_device(r, device))).sum().backward()
        assert backend.device_of(x.grad) == device
        results[device] = (out, x.grad)
    assert_same_on_devices(results["cpu"][0], results[cuda][0], f"{name} {layer}")
    assert_same_on_devices(results["cpu"][1], results[cuda][1], f"{name} d{layer}/dx")
    assert model.preprocess(np.zeros((size, size, 3), np.uint8)).device == cuda
