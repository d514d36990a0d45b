"""A structural check of MAT v5 files before ``scipy.io.loadmat`` reads them.

scipy's compiled MAT reader trusts the file: a data element of an unknown type, or an
array whose dimensions element is malformed, crashes the whole process (a segmentation
fault, found by ``tests/test_weights_fuzz.py``). :func:`check_mat5` walks every data element
first (tags, sizes, padding; ``miCOMPRESSED`` elements are inflated with a cap) and raises
WeightsError for anything scipy could mis-read, so only well-formed files reach it.

Layout (MathWorks' MAT-File Format, level 5): a 128-byte header whose last two bytes are
the endian indicator ``IM``; then data elements, each an 8-byte tag (type, byte count) and
its data padded to 8 bytes, or a *small* element (byte count < 5 in the tag's upper 16 bits,
data in the next 4 bytes). A matrix (``miMATRIX``) is itself a sequence of elements: array
flags (``miUINT32``, 8 bytes), dimensions (``miINT32``, at least 2), name (``miINT8``),
then its class's elements, which may be matrices again.
"""
import math
import struct
import zlib

from .errors import WeightsError
from .limits import MAX_BYTES

MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
VALID_TYPES = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 18}
MAX_DEPTH = 64
MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR = 1, 2, 3, 4
NUMERIC_CLASSES = set(range(6, 16))  # double, single, int8 ... uint64
ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}  # miINT8 ... miUINT64


def _tags(buf, where):
    """Yield (type, data memoryview) of the consecutive elements filling ``buf``."""
    pos, n = 0, len(buf)
    while pos < n:
        if pos + 8 > n:
            raise WeightsError(f"{where}: a data element tag is cut off (truncated file?)")
        first, second = struct.unpack_from("<II", buf, pos)
        if first >> 16:  # small element: count in the upper half, data in the next 4 bytes
            mdtype, size = first & 0xFFFF, first >> 16
            if size > 4:
                raise WeightsError(f"{where}: small data element of {size} bytes (max 4)")
            data, pos = buf[pos + 4:pos + 4 + size], pos + 8
        else:
            mdtype, size = first, second
            end = pos + 8 + size
            if end > n:
                raise WeightsError(f"{where}: a data element of {size:,} bytes runs past "
                                   "its container (truncated or corrupt file?)")
            data, pos = buf[pos + 8:end], end + (-size % 8 if mdtype != MI_COMPRESSED else 0)
        if mdtype not in VALID_TYPES:
            raise WeightsError(f"{where}: data element of unknown type {mdtype}")
        yield mdtype, data


def _inflate(data, where):
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_BYTES + 1)
    except zlib.error as exc:
        raise WeightsError(f"{where}: corrupt compressed element: {exc}") from None
    if len(out) > MAX_BYTES or d.unconsumed_tail:
        raise WeightsError(f"{where}: a compressed element inflates beyond {MAX_BYTES:,} "
                           "bytes; refused (zip bomb?)")
    return memoryview(out)


def _check_matrix(buf, where, depth):
    if depth > MAX_DEPTH:
        raise WeightsError(f"{where}: matrices nest more than {MAX_DEPTH} levels deep")
    if not len(buf):
        return  # an empty matrix (an empty cell)
    elements = list(_tags(buf, where))
    if len(elements) < 3:
        raise WeightsError(f"{where}: a matrix lacks its flags, dimensions or name")
    (t_flags, flags), (t_dims, dims), (t_name, _) = elements[:3]
    if t_flags != MI_UINT32 or len(flags) != 8:
        raise WeightsError(f"{where}: a matrix has malformed array flags")
    if t_dims != MI_INT32 or len(dims) < 8 or len(dims) % 4:
        raise WeightsError(f"{where}: a matrix has a malformed dimensions element")
    if any(d < 0 for d in struct.unpack(f"<{len(dims) // 4}i", dims)):
        raise WeightsError(f"{where}: a matrix has a negative dimension")
    if t_name != MI_INT8:
        raise WeightsError(f"{where}: a matrix has a malformed name element")
    count = math.prod(struct.unpack(f"<{len(dims) // 4}i", dims))
    if flags[1] & ~0x0E or flags[2] or flags[3]:
        raise WeightsError(f"{where}: a matrix has unknown array flags")
    _check_class(flags[0], count, elements[3:], where, complex_=bool(flags[1] & 0x08))
    for mdtype, data in elements[3:]:
        if mdtype == MI_MATRIX:
            _check_matrix(data, where, depth + 1)
        elif mdtype == MI_COMPRESSED:
            raise WeightsError(f"{where}: a compressed element inside a matrix")


def _check_class(mx_class, count, parts, where, complex_):
    """The elements after a matrix's name are what its class needs (scipy reads them
    blindly): numbers of the right total size, ``count`` cells, ``count`` × fields."""
    types = [t for t, _ in parts]
    if mx_class in NUMERIC_CLASSES or mx_class == MX_CHAR:
        if len(parts) != 1 + complex_ or MI_MATRIX in types:
            raise WeightsError(f"{where}: a {'complex' if complex_ else 'real'} matrix has "
                               f"{len(parts)} data elements")
        for mdtype, data in parts:
            size = ITEMSIZE.get(mdtype)
            if size is not None and len(data) != count * size:
                raise WeightsError(f"{where}: a matrix of {count} elements holds "
                                   f"{len(data)} bytes of type {mdtype}")
    elif mx_class == MX_CELL:
        if len(types) != count or set(types) - {MI_MATRIX}:
            raise WeightsError(f"{where}: a cell array of {count} cells holds other elements")
    elif mx_class in (MX_STRUCT, MX_OBJECT):
        head = 2 if mx_class == MX_STRUCT else 3
        if len(parts) < head or types[head - 2] != MI_INT32 or len(parts[head - 2][1]) != 4:
            raise WeightsError(f"{where}: a struct lacks its field name length")
        width = struct.unpack("<i", parts[head - 2][1])[0]
        names = parts[head - 1]
        if names[0] != MI_INT8 or width <= 0 or len(names[1]) % width:
            raise WeightsError(f"{where}: a struct has malformed field names")
        if len(types) - head != count * (len(names[1]) // width) or \
                set(types[head:]) - {MI_MATRIX}:
            raise WeightsError(f"{where}: a struct's fields do not match its size")
    else:
        raise WeightsError(f"{where}: a matrix of unsupported class {mx_class}")


def _check_stream(buf, where, depth=0):
    for mdtype, data in _tags(buf, where):
        if mdtype == MI_MATRIX:
            _check_matrix(data, where, depth + 1)
        elif mdtype == MI_COMPRESSED:
            if depth:
                raise WeightsError(f"{where}: a compressed element inside another")
            _check_stream(_inflate(data, where), where, depth + 1)
        else:
            raise WeightsError(f"{where}: top-level data element of type {mdtype}, not a "
                               "matrix")


def check_mat5(data, where="MAT file"):
    """Raise WeightsError unless ``data`` (the whole file) is a well-formed little-endian
    MAT v5 file down to every element's tag, size and matrix header."""
    buf = memoryview(data)
    if len(buf) < 128 or bytes(buf[:6]) != b"MATLAB":
        raise WeightsError(f"{where}: not a MAT file")
    if bytes(buf[126:128]) != b"IM":
        raise WeightsError(f"{where}: not a little-endian MAT v5 file (endian indicator "
                           f"{bytes(buf[126:128])!r})")
    _check_stream(buf[128:], where)
