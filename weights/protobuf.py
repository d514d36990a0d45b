"""A minimal protobuf wire-format reader (no protobuf package), shared by the Caffe and ONNX
readers.

A message is a sequence of (key, value) pairs, key = field_number << 3 | wire_type. Values are
never copied: length-delimited fields come back as slices of the caller's ``memoryview``, so a
hostile length can point past the end of the buffer but never make this reader allocate.
"""
import struct

from .errors import WeightsError


def varint(buf, pos):
    """The unsigned varint at ``buf[pos]`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WeightsError("protobuf data ends inside a varint (truncated file?)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WeightsError("protobuf varint longer than 10 bytes (corrupt file?)")


def signed64(value):
    """An int64 field's varint (two's complement in 64 bits) as a Python int."""
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(buf):
    """Yield (field_number, wire_type, value) over one message in ``buf`` (a memoryview).

    value: int for varint, bytes-like for length-delimited, raw 4/8 bytes for fixed32/64.
    """
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = varint(buf, pos)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise WeightsError("protobuf field number 0 (not a protobuf message?)")
        if wt == 0:
            value, pos = varint(buf, pos)
        elif wt == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            size, pos = varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wt == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WeightsError(f"unsupported protobuf wire type {wt} (corrupt file?)")
        if pos > n:
            raise WeightsError("protobuf data ends inside a field (truncated file?)")
        yield field, wt, value


def packed_varints(buf):
    """The varints of a packed repeated field (at most len(buf) of them)."""
    out, pos = [], 0
    while pos < len(buf):
        v, pos = varint(buf, pos)
        out.append(v)
    return out


def repeated_ints(wt, value):
    """One occurrence of a repeated int64 field: packed (wire type 2) or a single varint."""
    return [signed64(v) for v in packed_varints(value)] if wt == 2 else [signed64(value)]


def float32(value):
    return struct.unpack("<f", value)[0]


def string(value):
    return bytes(value).decode("utf-8", "replace")
