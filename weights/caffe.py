"""A reader for Caffe ``.caffemodel`` files on the wire-format reader of ``weights.protobuf``.

Only what the converter needs (field numbers from BVLC ``caffe.proto``):

* ``NetParameter``: ``layers`` = 2 (V1LayerParameter, 2014-era files such as
  bvlc_alexnet), ``layer`` = 100 (LayerParameter);
* V1 layer: name 4, type 5 (enum), blobs 6, convolution_param 10, lrn_param 18;
  V2 layer: name 1, type 2 (string), blobs 7, convolution_param 106, lrn_param 118;
* ``BlobProto``: num/channels/height/width 1-4, data 5 (packed or unpacked float),
  shape 7 (``BlobShape.dim`` = 1), double_data 8; ``diff`` is ignored;
* ``ConvolutionParameter.group`` = 5; ``LRNParameter``: local_size 1, alpha 2, beta 3, k 5.
"""
import math
import struct

import numpy as np

from .errors import WeightsError
from .protobuf import fields, float32, packed_varints

V1_TYPES = {4: "Convolution", 5: "Data", 6: "Dropout", 14: "InnerProduct", 15: "LRN",
            17: "Pooling", 18: "ReLU", 20: "Softmax", 21: "SoftmaxWithLoss", 1: "Accuracy"}


def _packed(value, dtype):
    if len(value) % np.dtype(dtype).itemsize:
        raise WeightsError(f"caffe blob holds {len(value)} bytes of packed {dtype} data, not a "
                           "whole number of values (corrupt file?)")
    return np.frombuffer(value, dtype=dtype)


def parse_blob(buf):
    legacy = [0, 0, 0, 0]
    have_legacy = False
    shape = None
    chunks, dchunks, singles, dsingles = [], [], [], []
    for field, wt, value in fields(buf):
        if field in (1, 2, 3, 4) and wt == 0:
            legacy[field - 1] = value
            have_legacy = True
        elif field == 5:
            if wt == 2:
                chunks.append(_packed(value, "<f4"))
            elif wt == 5:
                singles.append(struct.unpack("<f", value)[0])
        elif field == 8:
            if wt == 2:
                dchunks.append(_packed(value, "<f8"))
            elif wt == 1:
                dsingles.append(struct.unpack("<d", value)[0])
        elif field == 7 and wt == 2:
            shape = []
            for f2, wt2, v2 in fields(value):
                if f2 == 1:
                    shape.extend(packed_varints(v2) if wt2 == 2 else [v2])
    if chunks or singles:
        data = np.concatenate(chunks + [np.asarray(singles, dtype="<f4")])
    else:
        data = np.concatenate(dchunks + [np.asarray(dsingles, dtype="<f8")])
    if shape is None:
        shape = legacy if have_legacy else [data.size]
    shape = tuple(int(s) for s in shape)
    if len(shape) > 32 or math.prod(shape) != data.size:
        raise WeightsError(f"caffe blob of shape {shape} holds {data.size} values (truncated?)")
    return data.astype(np.float32).reshape(shape)


def parse_layer(buf, v1):
    names = (4, 5, 6, 10, 18, 19) if v1 else (1, 2, 7, 106, 118, 121)
    f_name, f_type, f_blobs, f_conv, f_lrn, f_pool = names
    layer = {"name": "", "type": "", "blobs": [], "group": 1, "lrn": None}
    for field, wt, value in fields(buf):
        if field == f_name and wt == 2:
            layer["name"] = bytes(value).decode("utf-8", "replace")
        elif field == f_type:
            if v1 and wt == 0:
                layer["type"] = V1_TYPES.get(value, f"V1 type {value}")
            elif wt == 2:
                layer["type"] = bytes(value).decode("utf-8", "replace")
        elif field == f_blobs and wt == 2:
            layer["blobs"].append(parse_blob(value))
        elif field == f_conv and wt == 2:
            for f2, wt2, v2 in fields(value):
                if f2 == 5 and wt2 == 0:
                    layer["group"] = v2
        elif field == f_lrn and wt == 2:
            lrn = {"local_size": 5, "alpha": 1.0, "beta": 0.75, "k": 1.0}
            for f2, wt2, v2 in fields(value):
                if f2 == 1 and wt2 == 0:
                    lrn["local_size"] = v2
                elif f2 in (2, 3, 5) and wt2 == 5:
                    lrn[{2: "alpha", 3: "beta", 5: "k"}[f2]] = float32(v2)
            layer["lrn"] = lrn
        elif v1 and field == 1 and wt == 2:
            raise WeightsError("V0 caffe layers (pre-2014 format) are not supported; upgrade "
                               "the net with caffe's upgrade_net_proto_binary")
    return layer


def read_caffemodel(path):
    """The ordered list of layers of a .caffemodel: dicts name, type, blobs, group, lrn."""
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    layers = []
    try:
        for field, wt, value in fields(buf):
            if field in (2, 100) and wt == 2:
                layers.append(parse_layer(value, v1=(field == 2)))
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    if not layers:
        raise WeightsError(f"{path}: no layers found (not a Caffe NetParameter file?)")
    return layers
