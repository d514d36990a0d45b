"""``minigrad weights info``: provenance, shapes and checksums, as text."""
from pathlib import Path

from . import arch
from .cache import cache_dir, cache_names, sha256_file
from .convert import describe_file
from .errors import WeightsError
from .registry import FETCHABLE


def _fmt_shape(shape):
    return "x".join(str(s) for s in shape) if shape else "scalar"


def _preprocessing_line(pre):
    if not pre:
        return "unknown"
    return (f"{pre.get('colour_order')} scaled to [0, {pre.get('pixel_range', 0):g}], mean "
            f"{pre.get('mean')}, std {pre.get('std')}, input {pre.get('input_size')}")


def describe(path):
    path = Path(path)
    fmt, meta, shapes = describe_file(path)
    lines = [f"file:          {path}",
             f"sha256:        {sha256_file(path)}",
             f"size:          {path.stat().st_size:,} bytes",
             f"format:        {'minigrad .npz' if fmt == 'npz' else fmt}"]
    src = meta.get("source") if meta.get("verified", True) else meta.get("claimed_source")
    src = src if isinstance(src, dict) else {}
    lines.append(f"variant:       {meta.get('variant')}")
    if fmt == "npz":
        lines.append("checked:       " + ("matches the sha256 recorded when it was written"
                                          if meta.get("verified") else meta.get("source")))
        desc = src.get("name") or src.get("format", "")
        lines.append(f"source:        {src.get('file', '?')} ({desc})")
        if src.get("sha256"):
            lines.append(f"source sha256: {src['sha256']}")
        for key in ("url", "sdist", "sdist_sha256", "origin", "licence"):
            if src.get(key):
                lines.append(f"  {key}: {src[key]}")
        if meta.get("source_url"):
            lines.append(f"  url: {meta['source_url']}")
    else:
        lines.append(f"reads as:      {src.get('format')}")
    lines.append(f"layers:        {', '.join(meta.get('layers', []))}"
                 + ("" if meta.get("has_fc") else "  (conv layers only: no fc6-fc8)"))
    lines.append(f"preprocessing: {_preprocessing_line(meta.get('preprocessing'))}")
    if meta.get("groups"):
        lines.append(f"groups:        {meta['groups']}")
    if meta.get("lrn"):
        lrn = meta["lrn"]
        lines.append(f"lrn:           size {lrn.get('local_size')}, alpha {lrn.get('alpha')}, "
                     f"beta {lrn.get('beta')}, k {lrn.get('k')}")
    lines.append(f"fc flatten:    {meta.get('fc_flatten_order')}")
    total = 0
    lines.append("parameters:")
    width = max(len(k) for k in shapes)
    for key, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        total += n
        lines.append(f"  {key:<{width}}  {_fmt_shape(shape):>16}  {n:>12,}")
    lines.append(f"  {'total':<{width}}  {'':>16}  {total:>12,}")
    return "\n".join(lines)


def overview():
    root = cache_dir()
    lines = [f"cache: {root}"]
    for name in arch.VARIANTS:
        found = [f for f in cache_names(name) if (root / f).is_file()]
        if found:
            lines.append(f"  {name:<14} {', '.join(found)} (default: {found[0]})")
        else:
            how = (f"`minigrad weights fetch {name}`" if name in FETCHABLE
                   else "`minigrad weights convert FILE`")
            lines.append(f"  {name:<14} not cached; get it with {how}")
    return "\n".join(lines)


def info(spec=None):
    """Text describing a cached network (``spec`` a variant name) or any weight file."""
    if spec is None:
        return overview()
    if spec in arch.VARIANTS:
        for fname in cache_names(spec):
            p = cache_dir() / fname
            if p.is_file():
                return describe(p)
        how = (f"run `minigrad weights fetch {spec}`" if spec in FETCHABLE
               else "convert a file with `minigrad weights convert FILE`")
        raise WeightsError(f"{spec}: no weights cached in {cache_dir()}; {how}")
    p = Path(spec)
    if not p.exists():
        raise WeightsError(f"{spec!r} is neither a network name ({', '.join(arch.VARIANTS)}) "
                           "nor an existing file")
    return describe(p)
