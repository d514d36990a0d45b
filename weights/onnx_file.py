"""A reader for ONNX model files on the wire-format reader of ``weights.protobuf``.

Only the subset a CNN needs (field numbers from onnx.proto): ``ModelProto`` (opset_import 8,
producer_name 2, graph 7), ``GraphProto`` (node 1, initializer 5, input 11, output 12,
value_info 13, sparse_initializer 15), ``NodeProto`` (input 1, output 2, name 3, op_type 4,
attribute 5, domain 7), ``AttributeProto`` (name 1, f 2, i 3, s 4, t 5, g 6, floats 7, ints 8,
strings 9, graphs 11, type 20), ``TensorProto`` (dims 1, data_type 2, float_data 4,
int32_data 5, int64_data 7, name 8, raw_data 9, double_data 10, external_data 13,
data_location 14) and the tensor types of ``ValueInfoProto``.

Hostile files are refused cheaply: the file and the external data are size-capped before they
are read; a tensor's declared element count is bounded and must match the bytes actually
present before any array is made (values are views of the file buffer until then); external
data are read only from files inside the model's own directory; nested graphs (If, Loop) are
never parsed. Every failure is an ``OnnxError`` with a one-line message naming the file.
"""
import os
from typing import NamedTuple

import numpy as np

from .errors import WeightsError
from .protobuf import fields, float32, packed_varints, repeated_ints, signed64, string

MIN_OPSET, MAX_OPSET = 9, 23  # default-domain opsets whose operator semantics are implemented
MAX_FILE_BYTES = 2 ** 31  # protobuf's own limit for one message; bigger models use external data
MAX_EXTERNAL_BYTES = 2 ** 34  # all external-data tensors of one model together
MAX_ELEMENTS = 2 ** 31  # one tensor
MAX_DIM = 2 ** 31
MAX_LIST = 2 ** 20  # numbers (or bytes, packed) in a list made of Python numbers (dims, ints)
MAX_ENTRIES = 2 ** 20  # nodes, initializers and value infos of the graph; names of one node

# TensorProto.DataType -> (NumPy little-endian dtype, name)
DTYPES = {1: ("<f4", "float"), 2: ("u1", "uint8"), 3: ("i1", "int8"), 6: ("<i4", "int32"),
          7: ("<i8", "int64"), 9: ("?", "bool"), 10: ("<f2", "float16"), 11: ("<f8", "double")}


class OnnxError(WeightsError):
    """An ONNX file could not be read, or asks for something this reader does not support."""


class Subgraph:
    """Placeholder for a graph-valued attribute (If/Loop bodies): recorded, never parsed."""


class Node(NamedTuple):
    name: str
    op_type: str
    domain: str
    inputs: tuple
    outputs: tuple
    attrs: dict


class ValueInfo(NamedTuple):
    name: str
    elem_type: int
    dims: tuple  # int per static dimension, None per symbolic or unknown one; () if no shape


class Graph(NamedTuple):
    nodes: list
    initializers: dict  # name -> host array
    inputs: list  # ValueInfo, initializers listed as inputs (old exporters) excluded
    outputs: list  # ValueInfo
    value_info: dict  # name -> ValueInfo
    opset: int  # of the default domain
    producer: str


# --- tensors ---------------------------------------------------------------------------------
class _TensorReader:
    """Tensor payloads, with the external-data budget and directory of one model."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.base = os.path.realpath(os.path.dirname(os.path.abspath(self.path)))
        self.external_bytes = 0

    def tensor(self, buf):
        """(name, host array) of one TensorProto."""
        dims, dtype, name, payload, external, location = [], 1, "", {}, {}, 0
        for field, wt, value in fields(buf):
            if field == 1:
                _grow(dims, repeated_ints(wt, _short(value, wt, "dims")), "dims")
            elif field == 2 and wt == 0:
                dtype = value
            elif field == 8 and wt == 2:
                name = string(value)
            elif field in (4, 5, 7, 9, 10) and wt == 2:
                payload.setdefault(field, []).append(value)
            elif field in (4, 5, 7, 10):  # an unpacked single value
                payload.setdefault(-field, []).append((wt, value))
            elif field == 13 and wt == 2:
                entry = {f: string(v) for f, w, v in fields(value) if w == 2}
                external[entry.get(1, "")] = entry.get(2, "")
            elif field == 14 and wt == 0:
                location = value
        label = f"tensor {name!r}"
        if dtype not in DTYPES:
            raise OnnxError(f"{label}: data type {dtype} is not supported "
                            f"(supported: {', '.join(n for _, n in DTYPES.values())})")
        count = _element_count(dims, label)
        np_dtype = np.dtype(DTYPES[dtype][0])
        if location == 1:
            data = self.external(external, count * np_dtype.itemsize, label)
            return name, _from_bytes(data, np_dtype, dims, count, label)
        return name, _from_payload(payload, np_dtype, dtype, dims, count, label)

    def external(self, entries, nbytes, label):
        """The bytes of an external-data tensor: a file inside the model's directory."""
        location = entries.get("location", "")
        parts = location.replace("\\", "/").split("/")
        if not location or os.path.isabs(location) or ".." in parts or ":" in parts[0]:
            raise OnnxError(f"{label}: external data location {location!r} is not a relative "
                            f"path inside the model's directory")
        target = os.path.realpath(os.path.join(self.base, location))
        if os.path.commonpath([target, self.base]) != self.base:
            raise OnnxError(f"{label}: external data {location!r} resolves outside the model's "
                            f"directory (a link?)")
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries.get("length", str(nbytes)))
            size = os.path.getsize(target)
        except ValueError:
            raise OnnxError(f"{label}: external data offset/length are not integers") from None
        except OSError as e:
            raise OnnxError(f"{label}: cannot read external data {location!r}: "
                            f"{e.strerror or e}") from None
        if length != nbytes:
            raise OnnxError(f"{label}: external data length {length} bytes, but its shape needs "
                            f"{nbytes}")
        if offset < 0 or offset + length > size:
            raise OnnxError(f"{label}: external data [{offset}, {offset + length}) lies past the "
                            f"end of {location!r} ({size} bytes; truncated?)")
        self.external_bytes += length
        if self.external_bytes > MAX_EXTERNAL_BYTES:
            raise OnnxError(f"{label}: external data exceed {MAX_EXTERNAL_BYTES} bytes in all")
        with open(target, "rb") as f:
            f.seek(offset)
            return f.read(length)


def _short(value, wt, what):
    """A packed field that will become a list of Python numbers, refused when too long."""
    if wt == 2 and len(value) > MAX_LIST:
        raise OnnxError(f"{what}: a packed list of {len(value)} bytes exceeds the "
                        f"{MAX_LIST}-byte cap")
    return value


def _grow(items, more, what):
    items.extend(more)
    if len(items) > MAX_LIST:
        raise OnnxError(f"{what}: more than {MAX_LIST} values in one list")

def _entries(items, what):
    if len(items) >= MAX_ENTRIES:
        raise OnnxError(f"more than {MAX_ENTRIES} {what}")


def _element_count(dims, label):
    count = 1
    for d in dims:
        if not 0 <= d <= MAX_DIM:
            raise OnnxError(f"{label}: dimension {d} out of range")
        count *= d
        if count > MAX_ELEMENTS:
            raise OnnxError(f"{label}: declared shape {tuple(dims)} exceeds {MAX_ELEMENTS} "
                            f"elements")
    return count


def _from_bytes(data, np_dtype, dims, count, label):
    if len(data) != count * np_dtype.itemsize:
        raise OnnxError(f"{label}: declared shape {tuple(dims)} needs {count * np_dtype.itemsize} "
                        f"bytes of {np_dtype.name}, the file holds {len(data)} (truncated?)")
    return np.frombuffer(data, dtype=np_dtype).reshape(dims).copy()


def _from_payload(payload, np_dtype, dtype, dims, count, label):
    """A tensor from raw_data, or from the typed repeated fields (float_data, int64_data...)."""
    if 9 in payload:
        return _from_bytes(b"".join(bytes(v) for v in payload[9]), np_dtype, dims, count, label)
    typed = {1: 4, 11: 10, 7: 7}.get(dtype, 5)  # int32_data holds the small integer types
    chunks = payload.get(typed, [])
    if typed in (4, 10):  # packed float / double: fixed width
        width = "<f4" if typed == 4 else "<f8"
        raw = b"".join(bytes(v) for v in chunks)
        singles = [float32(v) if wt == 5 else np.frombuffer(v, "<f8")[0]
                   for wt, v in payload.get(-typed, [])]
        if len(raw) % np.dtype(width).itemsize or len(raw) // np.dtype(width).itemsize + len(
                singles) != count:
            raise OnnxError(f"{label}: declared shape {tuple(dims)} has {count} elements, the "
                            f"file holds a different number (truncated?)")
        values = np.concatenate([np.frombuffer(raw, width), np.asarray(singles, width)])
    else:  # varints, decoded into Python ints: a short list only (shapes, indices)
        values = [v for c in chunks for v in packed_varints(_short(c, 2, label))]
        values += [v for _, v in payload.get(-typed, [])]
        if len(values) != count:
            raise OnnxError(f"{label}: declared shape {tuple(dims)} has {count} elements, the "
                            f"file holds {len(values)} (truncated?)")
        values = np.asarray([signed64(v) for v in values], dtype=np.int64)
        if dtype == 10:  # float16 travels as its bit pattern in int32_data
            values = values.astype(np.uint16).view(np.float16)
    return values.astype(np_dtype).reshape(dims)


# --- nodes, attributes, value infos ----------------------------------------------------------
def _attribute(buf, tensors):
    name, kind, value, lists = "", None, None, {}
    for field, wt, v in fields(buf):
        if field == 1 and wt == 2:
            name = string(v)
        elif field == 20 and wt == 0:
            kind = v
        elif field == 2 and wt == 5:
            value = float32(v)
        elif field == 3 and wt == 0:
            value = signed64(v)
        elif field == 4 and wt == 2:
            value = string(v)
        elif field == 5 and wt == 2:
            value = tensors.tensor(v)[1]
        elif field in (6, 11):
            value = Subgraph()
        elif field == 7:
            chunk = np.frombuffer(bytes(_short(v, wt, "floats")), "<f4").tolist() if wt == 2 \
                else [float32(v)]
            _grow(lists.setdefault("floats", []), chunk, "floats")
        elif field == 8:
            _grow(lists.setdefault("ints", []), repeated_ints(wt, _short(v, wt, "ints")), "ints")
        elif field == 9 and wt == 2:
            _grow(lists.setdefault("strings", []), [string(v)], "strings")
    if kind in (6, 7, 8) or (value is None and lists):
        value = next(iter(lists.values()), [])
    elif value is None and kind in (1, 2, 3):  # a scalar left at its default is not written
        value = {1: 0.0, 2: 0, 3: ""}[kind]
    return name, value


def _node(buf, tensors):
    inputs, outputs, name, op_type, domain, attrs = [], [], "", "", "", {}
    for field, wt, v in fields(buf):
        if wt != 2:
            continue
        _entries(inputs + outputs, f"inputs and outputs in node {name!r}")
        if field == 1:
            inputs.append(string(v))
        elif field == 2:
            outputs.append(string(v))
        elif field == 3:
            name = string(v)
        elif field == 4:
            op_type = string(v)
        elif field == 7:
            domain = string(v)
        elif field == 5:
            _entries(attrs, f"attributes in node {name!r}")
            key, value = _attribute(v, tensors)
            attrs[key] = value
    return Node(name, op_type, domain, tuple(inputs), tuple(outputs), attrs)


def _value_info(buf):
    name, elem_type, dims = "", 0, ()
    for field, wt, v in fields(buf):
        if field == 1 and wt == 2:
            name = string(v)
        elif field == 2 and wt == 2:
            for f2, w2, tensor_type in fields(v):
                if f2 == 1 and w2 == 2:  # TypeProto.tensor_type
                    elem_type, dims = _tensor_type(tensor_type)
    return ValueInfo(name, elem_type, dims)


def _tensor_type(buf):
    elem_type, dims = 0, []
    for field, wt, v in fields(buf):
        if field == 1 and wt == 0:
            elem_type = v
        elif field == 2 and wt == 2:
            for f2, w2, dim in fields(v):
                if f2 == 1 and w2 == 2:
                    value = [signed64(x) for f3, w3, x in fields(dim) if f3 == 1 and w3 == 0]
                    ok = value and 0 < value[0] <= MAX_DIM
                    dims.append(value[0] if ok else None)
    return elem_type, tuple(dims)


# --- the model -------------------------------------------------------------------------------
def _graph(buf, tensors):
    nodes, inits, inputs, outputs, infos = [], {}, [], [], {}
    for field, wt, v in fields(buf):
        if wt != 2:
            continue
        _entries(range(len(nodes) + len(inits) + len(inputs) + len(outputs) + len(infos)),
                 "nodes, initializers and value infos")
        if field == 1:
            nodes.append(_node(v, tensors))
        elif field == 5:
            name, array = tensors.tensor(v)
            inits[name] = array
        elif field == 11:
            inputs.append(_value_info(v))
        elif field == 12:
            outputs.append(_value_info(v))
        elif field == 13:
            info = _value_info(v)
            infos[info.name] = info
        elif field == 15:
            raise OnnxError("sparse initializers are not supported")
    inputs = [i for i in inputs if i.name not in inits]
    return nodes, inits, inputs, outputs, infos


def _opset(buf):
    domain, version = "", 0
    for field, wt, v in fields(buf):
        if field == 1 and wt == 2:
            domain = string(v)
        elif field == 2 and wt == 0:
            version = signed64(v)
    return domain, version


def read_onnx(path):
    """The ``Graph`` of an ONNX model file; ``OnnxError`` (one line) if it cannot be used."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise OnnxError(f"file of {size} bytes exceeds the {MAX_FILE_BYTES}-byte cap")
        with open(path, "rb") as f:
            buf = memoryview(f.read())
        return _model(buf, _TensorReader(path))
    except OSError as e:
        raise OnnxError(f"{path}: cannot read: {e.strerror or e}") from None
    except WeightsError as e:
        raise OnnxError(f"{path}: {e}") from None


def _model(buf, tensors):
    opsets, graph, producer = {}, None, ""
    for field, wt, v in fields(buf):
        if field == 8 and wt == 2:
            domain, version = _opset(v)
            opsets[domain] = version
        elif field == 2 and wt == 2:
            producer = string(v)
        elif field == 7 and wt == 2:
            graph = v
    if graph is None:
        raise OnnxError("no graph found (not an ONNX model file?)")
    opset = opsets.get("", opsets.get("ai.onnx"))
    if opset is None:
        raise OnnxError("the model imports no default-domain opset (not an ONNX model file?)")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxError(f"opset {opset} is not supported (supported: {MIN_OPSET} to {MAX_OPSET}); "
                        f"re-export with opset_version=17")
    nodes, inits, inputs, outputs, infos = _graph(graph, tensors)
    if not nodes:
        raise OnnxError("the graph has no nodes")
    return Graph(nodes, inits, inputs, outputs, infos, opset, producer)
