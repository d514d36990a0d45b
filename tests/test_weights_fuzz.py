"""A seeded fuzzer over every weight reader (issue 13): each valid small file is mutated at
least 300 times (truncations, flipped bytes, changed declared sizes and shapes, swapped
pickle opcodes and globals). Every case must end in success with well-formed arrays or in
the project's own WeightsError: no other exception, no global outside the restricted table
ever handed to a pickle, and a traced memory peak under 256 MB."""
import io
import pickle
import pickletools
import re
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
import scipy.io
from test_weights import (
    lpips_checkpoint,
    tiny_alexnet_params,
    tiny_caffemodel,
    tiny_matconvnet,
    torch_state_pickle,
)

import weights
from weights import safe_pickle, torchfile
from weights.errors import WeightsError

CASES = 300
PEAK_LIMIT = 256 << 20
HUGE = (0, 1, 2**31 - 1, 2**30, -1, 2**16, 7)


# ------------------------------------------------------------------ valid small files
def _torchvision_state():
    """A torchvision-keyed tiny AlexNet state: (tensors for torch_state_pickle, storages)."""
    params = tiny_alexnet_params()
    keys = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
            "conv4": "features.8", "conv5": "features.10", "fc6": "classifier.1",
            "fc7": "classifier.4", "fc8": "classifier.6"}
    tensors, storages = [], {}
    for i, (name, value) in enumerate(params.items()):
        layer, kind = name.split(".")
        size = value.shape
        stride = tuple(int(np.prod(size[j + 1:])) for j in range(len(size)))
        tensors.append((f"{keys[layer]}.{kind}", "FloatStorage", str(i), value.size, 0, size,
                        stride))
        storages[str(i)] = value.astype("<f4").tobytes()
    return tensors, storages


def torch_zip_parts():
    tensors, storages = _torchvision_state()
    return torch_state_pickle(tensors), storages


def zip_bytes(members, method=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def torch_zip_members(pkl, storages):
    members = {"archive/data.pkl": pkl, "archive/byteorder": b"little"}
    members.update({f"archive/data/{k}": v for k, v in storages.items()})
    return members


def legacy_bytes(pkl=None):
    tensors, storages = _torchvision_state()
    pkl = pkl or torch_state_pickle(tensors)
    out = b"".join(pickle.dumps(v, protocol=2) for v in (
        torchfile.LEGACY_MAGIC, torchfile.LEGACY_PROTOCOL,
        {"protocol_version": 1001, "little_endian": True}))
    out += pkl + pickle.dumps(sorted(storages), protocol=2)
    for key in sorted(storages):
        out += struct.pack("<q", len(storages[key]) // 4) + storages[key]
    return out


def npz_members():
    params = tiny_alexnet_params()
    arrays = {k: v for k, v in params.items()}
    arrays["__meta__"] = np.array('{"format": "minigrad-weights", "variant": "alexnet"}')
    members = {}
    for k, v in arrays.items():
        b = io.BytesIO()
        np.save(b, v)
        members[f"{k}.npy"] = b.getvalue()
    return members


def mat_bytes():
    d, _, _ = tiny_matconvnet()
    buf = io.BytesIO()
    scipy.io.savemat(buf, d)
    return buf.getvalue()


# ------------------------------------------------------------------------ mutations
def pickle_spots(data):
    """(opcode offsets, (offset, width) of 4-byte BININT args, GLOBAL offsets) of a pickle
    stream that may be followed by other bytes (only the first pickle is scanned)."""
    ops, ints, globals_ = [], [], []
    try:
        for op, _arg, pos in pickletools.genops(data):
            ops.append(pos)
            if op.name == "BININT":
                ints.append(pos + 1)
            elif op.name == "GLOBAL":
                globals_.append(pos)
            if op.name == "STOP":
                break
    except Exception:  # noqa: BLE001 - a stream already mutated: use what was found
        pass
    return ops, ints, globals_


SWAP_OPS = b"Rb.s0(tN)}]ae\x85\x86\x87Qh"
EVIL_GLOBALS = [b"cposix\nsystem\n", b"cbuiltins\neval\n", b"csubprocess\ncall\n",
                b"ctorch\nload\n", b"cnumpy\nload\n", b"c__builtin__\ngetattr\n"]


def mutate_pickle(rng, data):
    ops, ints, globals_ = pickle_spots(data)
    out = bytearray(data)
    choice = rng.integers(4)
    if choice == 0 and ops:  # swap one opcode for another
        out[ops[rng.integers(len(ops))]] = SWAP_OPS[rng.integers(len(SWAP_OPS))]
    elif choice == 1 and ints:  # a declared size, offset, stride or numel changed
        pos = ints[rng.integers(len(ints))]
        out[pos:pos + 4] = struct.pack("<i", HUGE[rng.integers(len(HUGE))] % 2**31 *
                                       (1 if rng.random() < 0.8 else -1))
    elif choice == 2 and globals_:  # a global swapped for a dangerous one
        pos = globals_[rng.integers(len(globals_))]
        end = data.index(b"\n", data.index(b"\n", pos) + 1) + 1
        out[pos:end] = EVIL_GLOBALS[rng.integers(len(EVIL_GLOBALS))]
    else:
        return mutate_bytes(rng, data)
    return bytes(out)


def mutate_bytes(rng, data):
    out = bytearray(data)
    choice = rng.integers(3)
    if choice == 0:  # truncation
        return bytes(out[:rng.integers(len(out))])
    if choice == 1:  # flipped bytes
        for _ in range(rng.integers(1, 9)):
            out[rng.integers(len(out))] ^= 1 << rng.integers(8)
        return bytes(out)
    pos = rng.integers(max(len(out) - 4, 1))  # a 4-byte field set to an extreme value
    out[pos:pos + 4] = struct.pack("<I", HUGE[rng.integers(len(HUGE))] % 2**32)
    return bytes(out)


def mutate_npy_header(rng, data):
    """A changed declared shape or dtype in a .npy member's header."""
    text = data.decode("latin1")
    m = re.search(r"'shape': \(([^)]*)\)", text)
    if m is None or rng.random() < 0.3:
        return mutate_bytes(rng, data)
    dims = [s for s in m.group(1).split(",") if s.strip()]
    dims = [str(HUGE[rng.integers(len(HUGE))] % 2**31) if rng.random() < 0.5 else d
            for d in dims] + (["3"] if rng.random() < 0.2 else [])
    shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    new = text[:m.start(1) - 1] + shape + text[m.end(1) + 1:]
    if rng.random() < 0.2:
        new = new.replace("'<f4'", "'|O'" if rng.random() < 0.5 else "'<f8'")
    return new.encode("latin1")


def mutate_zip(rng, members, inner):
    """Mutate one member's content (then re-zip, so the CRC is right) or the zip itself."""
    if rng.random() < 0.6:
        name = list(members)[rng.integers(len(members))]
        mutated = dict(members)
        mutated[name] = inner(rng, name, members[name])
        method = zipfile.ZIP_DEFLATED if rng.random() < 0.3 else zipfile.ZIP_STORED
        return zip_bytes(mutated, method)
    return mutate_bytes(rng, zip_bytes(members))


# ------------------------------------------------------------------------- the harness
class Recorder:
    """Wraps RestrictedUnpickler.find_class: every object it ever hands out is recorded."""

    def __init__(self, monkeypatch):
        self.handed = []
        real = safe_pickle.RestrictedUnpickler.find_class

        def find_class(unpickler, module, name):
            obj = real(unpickler, module, name)
            self.handed.append(obj)
            return obj

        monkeypatch.setattr(safe_pickle.RestrictedUnpickler, "find_class", find_class)

    def check(self):
        allowed = (safe_pickle.Admitted, safe_pickle.Marker, safe_pickle.StorageType)
        bad = [o for o in self.handed if not isinstance(o, allowed)]
        assert not bad, f"the unpickler handed out {bad[:3]}"


def _well_formed(params, baseline_total):
    assert isinstance(params, dict) and params
    total = 0
    for key, value in params.items():
        assert isinstance(key, str) and isinstance(value, np.ndarray), (key, type(value))
        assert value.dtype.kind in "fiub"
        total += value.size
    assert total <= 4 * baseline_total + 1000


def fuzz(read, make, baseline, path, seed, monkeypatch):
    """Run ``CASES`` mutated files through ``read``; returns (succeeded, refused)."""
    recorder = Recorder(monkeypatch)
    rng = np.random.default_rng(seed)
    expected = read_ok(read, path, baseline)
    total = sum(v.size for v in expected.values())
    outcomes = {"success": 0, "refused": 0}
    tracemalloc.start()
    try:
        for _ in range(CASES):
            path.write_bytes(make(rng))
            try:
                params = read(path)
            except WeightsError:
                outcomes["refused"] += 1
                continue
            _well_formed(params, total)
            outcomes["success"] += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    recorder.check()
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MB"
    assert outcomes["refused"] > CASES // 10  # the mutations reach the error paths
    return outcomes


def read_ok(read, path, baseline):
    """The unmutated file reads back exactly."""
    path.write_bytes(baseline)
    params = read(path)
    for key, value in params.items():
        assert np.all(np.isfinite(value)), key
    return params


# -------------------------------------------------------------------------- the readers
def _convert(fmt):
    return lambda path: weights.read_source(path, fmt=fmt)[0]


def _torch_zip_case():
    pkl, storages = torch_zip_parts()
    members = torch_zip_members(pkl, storages)

    def inner(rng, name, data):
        return mutate_pickle(rng, data) if name.endswith(".pkl") else mutate_bytes(rng, data)

    return zip_bytes(members), lambda rng: mutate_zip(rng, members, inner)


def _legacy_case():
    tensors, _ = _torchvision_state()
    pkl = torch_state_pickle(tensors)

    def make(rng):
        if rng.random() < 0.6:
            return legacy_bytes(mutate_pickle(rng, pkl))
        return mutate_bytes(rng, legacy_bytes())

    return legacy_bytes(), make


def _npz_case():
    members = npz_members()

    def inner(rng, name, data):
        return mutate_npy_header(rng, data)

    return zip_bytes(members), lambda rng: mutate_zip(rng, members, inner)


def _lpips_case():
    data = pickle.dumps(lpips_checkpoint("alexnet"), protocol=3)
    return data, lambda rng: mutate_pickle(rng, data)


def _mat_case():
    data = mat_bytes()
    return data, lambda rng: mutate_bytes(rng, data)


def _caffe_case():
    data, _ = tiny_caffemodel()
    return data, lambda rng: mutate_bytes(rng, data)


READERS = {
    "torch zip": (_torch_zip_case, _convert("torch"), "net.pth"),
    "legacy torch": (_legacy_case, _convert("torch"), "net.pth"),
    ".npz": (_npz_case, lambda p: weights.load_npz(p)[0], "net.npz"),
    ".mat": (_mat_case, _convert("matconvnet"), "net.mat"),
    ".caffemodel": (_caffe_case, _convert("caffe"), "net.caffemodel"),
    "lpips pickle": (_lpips_case, _convert("lpips"), "net.ckpt"),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_fuzz_weight_reader(reader, tmp_path, monkeypatch):
    case, read, name = READERS[reader]
    baseline, make = case()
    outcomes = fuzz(read, make, baseline, tmp_path / name, seed=sorted(READERS).index(reader),
                    monkeypatch=monkeypatch)
    assert outcomes["success"] + outcomes["refused"] == CASES
