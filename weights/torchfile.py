"""Read ``torch.save`` files without importing torch.

Supported layouts (see docs/weights-formats.md section 2):

* **zip** (torch >= 1.6): ``<prefix>/data.pkl`` plus one raw blob per storage under
  ``<prefix>/data/<key>``; the prefix is taken from the entry ending in ``data.pkl``;
  ``<prefix>/byteorder`` is honoured;
* **legacy pickle** (torch 0.1.10 - 1.5, or ``_use_new_zipfile_serialization=False``):
  magic number, protocol version, sys_info, the object, the sorted storage keys, then for
  each key an int64 element count and the raw bytes;
* **tar** (torch <= 0.1.9, e.g. the old ``alexnet-owt-4df8aa71.pth``) is detected and
  refused with a message.

All pickles go through :class:`weights.safe_pickle.RestrictedUnpickler`; tensors are
rebuilt as NumPy arrays from their storages honouring dtype, storage offset and strides
(all in elements).
"""
import collections
import io
import struct
import tarfile
import zipfile
import zlib

import numpy as np

from . import safe_pickle
from .errors import WeightsError
from .limits import (
    MAX_PICKLE_BYTES,
    MAX_STORAGE_BYTES,
    ElementBudget,
    check_file_size,
    read_zip_member,
)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def detect(path):
    """'zip', 'legacy', 'tar' or None for a file that is not a torch.save file."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:2] == b"\x80\x02" and head[2:3] == b"\x8a":
        return "legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _load_pickle(data_or_file, persistent_load):
    f = io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray)) else data_or_file
    try:
        return safe_pickle.RestrictedUnpickler(
            f, torch=True, persistent_load=persistent_load, encoding="utf-8"
        ).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"cannot unpickle torch data (truncated or corrupt?): {exc}") from None


def _storage_pid(pid, path):
    """(storage type, key, numel, view) of a persistent id, its types checked."""
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        raise WeightsError(f"{path}: unexpected persistent id {pid!r}")
    _, storage_type, key, _location, numel = pid[:5]
    if not isinstance(storage_type, safe_pickle.StorageType):
        raise WeightsError(f"{path}: torch pickle names an unsupported storage type "
                           f"{storage_type!r}")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise WeightsError(f"{path}: storage {key!r} declares a bad size {numel!r}")
    if not isinstance(key, (str, int)):
        raise WeightsError(f"{path}: storage key {key!r} is not a name")
    view = pid[5] if len(pid) > 5 else None
    if view is not None and (not isinstance(view, tuple) or len(view) != 3
                             or not all(isinstance(v, int) and v >= 0 for v in view[1:])):
        raise WeightsError(f"{path}: storage {key!r} has a malformed view {view!r}")
    return storage_type, str(key), numel, view


def _zip_storages(zf, prefix, path):
    """(persistent_load, loader) of a torch zip: each storage's declared size is checked
    against its member's uncompressed size and the file's byte budget before any is read."""
    infos = {i.filename: i for i in zf.infolist()}
    budget = ElementBudget(MAX_STORAGE_BYTES, "bytes of storage")
    declared, cache = {}, {}

    def persistent_load(pid):
        storage_type, key, numel, _ = _storage_pid(pid, path)
        nbytes = numel * storage_type.itemsize
        if key not in declared:
            name = f"{prefix}data/{key}"
            if name not in infos:
                raise WeightsError(f"{path}: storage {name} is missing")
            budget.charge(nbytes, path)
            if infos[name].file_size != nbytes:
                raise WeightsError(
                    f"{path}: storage {name} holds {infos[name].file_size:,} bytes but the "
                    f"pickle declares {numel:,} elements of {storage_type.itemsize} bytes")
            declared[key] = infos[name]
        elif declared[key].file_size != nbytes:
            raise WeightsError(f"{path}: storage {key!r} is declared with two sizes")
        return safe_pickle.StorageRef(storage_type, key, numel, loader)

    def loader(key):
        if key not in cache:
            info = declared[key]
            try:
                cache[key] = read_zip_member(zf, info, info.file_size, path)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError,
                RuntimeError) as exc:
                raise WeightsError(f"{path}: cannot read {info.filename} (truncated?): "
                                   f"{exc}") from None
        return cache[key]

    return persistent_load, loader


def _read_small_member(zf, name, cap, path):
    try:
        return read_zip_member(zf, zf.getinfo(name), cap, path)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError,
                RuntimeError) as exc:
        raise WeightsError(f"{path}: cannot read {name} (truncated?): {exc}") from None


def _read_zip(path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable torch zip file (truncated?): {exc}") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise WeightsError(f"{path}: zip file has {len(pkl)} data.pkl entries, expected 1")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            raw = _read_small_member(zf, prefix + "byteorder", 16, path)
            byteorder = raw.decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise WeightsError(f"{path}: unknown byteorder {byteorder!r}")
        persistent_load, _ = _zip_storages(zf, prefix, path)
        data = _read_small_member(zf, pkl[0], MAX_PICKLE_BYTES, path)
        obj = _load_pickle(data, persistent_load)
        return safe_pickle.resolve(obj, lambda t: t.build(byteorder))


def _legacy_storages(raw, pos, keys, roots, little, path):
    """{key: bytes} of the storages that follow a legacy pickle, each size checked."""
    blobs = {}
    budget = ElementBudget(MAX_STORAGE_BYTES, "bytes of storage")
    for key in keys:
        key = str(key)
        if key not in roots:
            raise WeightsError(f"{path}: storage {key!r} is not referenced by the pickle")
        if pos + 8 > len(raw):
            raise WeightsError(f"{path}: file ends before storage {key!r} (truncated?)")
        (numel,) = struct.unpack("<q" if little else ">q", raw[pos : pos + 8])
        nbytes = numel * roots[key].itemsize
        pos += 8
        if numel < 0 or pos + nbytes > len(raw):
            raise WeightsError(f"{path}: file ends inside storage {key!r} (truncated?)")
        budget.charge(nbytes, path)
        blobs[key] = raw[pos : pos + nbytes]
        pos += nbytes
    return blobs


def _read_legacy(path):
    check_file_size(path)
    with open(path, "rb") as f:
        raw = f.read()
    f = io.BytesIO(raw)
    magic = _load_pickle(f, None)
    if magic != LEGACY_MAGIC:
        raise WeightsError(f"{path}: bad magic number in legacy torch file")
    protocol = _load_pickle(f, None)
    if protocol != LEGACY_PROTOCOL:
        raise WeightsError(f"{path}: unsupported legacy torch protocol version {protocol!r}")
    sys_info = _load_pickle(f, None)
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    roots = {}  # key -> StorageType
    blobs = {}

    def loader(key):
        return blobs[key]

    def persistent_load(pid):
        storage_type, key, numel, view = _storage_pid(pid, path)
        if roots.setdefault(key, storage_type) is not storage_type:
            raise WeightsError(f"{path}: storage {key!r} is declared with two types")
        if view is not None:  # (view_key, offset, view_size): a view into the root storage
            _view_key, offset, view_size = view
            return safe_pickle.StorageRef(storage_type, key, view_size, loader, offset=offset)
        return safe_pickle.StorageRef(storage_type, key, numel, loader)

    obj = _load_pickle(f, persistent_load)
    keys = _load_pickle(f, None)
    if not isinstance(keys, list):
        raise WeightsError(f"{path}: malformed legacy torch file (no storage key list)")
    blobs.update(_legacy_storages(raw, f.tell(), keys, roots, little, path))
    missing = set(roots) - set(blobs)
    if missing:
        raise WeightsError(f"{path}: storages {sorted(missing)} have no data")
    return safe_pickle.resolve(obj, lambda t: t.build("little" if little else "big"))


def flatten_state_dict(obj, where="file"):
    """An ordered {dotted_name: ndarray} from a state_dict or a checkpoint dict."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise WeightsError(f"{where}: expected a state_dict (a dict of tensors), got "
                           f"{type(obj).__name__}")
    out = collections.OrderedDict()

    def walk(d, prefix):
        for k, v in d.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, name + ".")
            elif isinstance(v, np.ndarray):
                out[name] = v
    walk(obj, "")
    if not out:
        raise WeightsError(f"{where}: no tensors found")
    return out


def read_torch(path):
    """Read a torch.save file; returns ``(state_dict, format)`` with NumPy arrays."""
    kind = detect(path)
    if kind == "zip":
        obj = _read_zip(path)
    elif kind == "legacy":
        obj = _read_legacy(path)
    elif kind == "tar" or tarfile.is_tarfile(path):
        raise WeightsError(
            f"{path}: tar-format torch file (torch <= 0.1.9) is not supported; re-save it "
            "with a newer torch or fetch the current file (e.g. alexnet-owt-7be5be79.pth)"
        )
    else:
        raise WeightsError(f"{path}: not a torch.save file (neither zip nor legacy pickle)")
    return flatten_state_dict(obj, str(path)), kind
