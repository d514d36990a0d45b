"""``minigrad invert ... --inspect``: the gradients of one inversion, made visible.

For the first iteration (the starting canvas) and the last iteration the loop reported, it
writes into ``OUT/inspect/``:

- ``grad-iter<N>.png``: ∂E/∂x of the data term, TV and the α-norm, side by side beside the
  iterate, on one shared colour scale with its legend (red positive, blue negative, a
  symmetric log scale so that terms decades apart all show; summed over colour channels);
- ``gradients-iter<N>.npz``: those gradients as arrays (C, H, W), pixel units;
- ``layer-norms.png``: ‖∂(data term)/∂(output of each layer)‖ at both iterations, log scale
  (a CNN's layers; for HOG and DSIFT every op of the network);
- ``graph-iter<N>.html`` (and ``.svg`` when Graphviz's ``dot`` is installed): the graph of one
  evaluation of the energy with the gradient norm at every node (``Graph.to_html``/``to_svg``);
- ``index.html`` linking all of them, ``inspect.json`` with the numbers.

It is driven by invert's ``callback``: ``Inspector`` only remembers the latest iterate, so the
optimisation itself is untouched. Afterwards ``write`` recomputes the energy at the recorded
iterates with the loop's own ``loop._energy`` on ``loop._setup``'s Problem, at the centre of
the canvas (jitter off): the gradients shown are those of the energy the loop minimises.
"""
import dataclasses
import html
import math
import os

from .. import backend
from .. import images as im
from ..backend import np
from ..graph_view import graph
from ..inversion import loop
from ..tensor import Tensor, _toposort

TERMS = (("loss", "data term"), ("tv", "TV"), ("alpha", "alpha-norm"))  # the pictures' order
SHEET_PAD, SHEET_HEAD = 8, 26  # gradient_sheet's layout: panel i starts at x = PAD + i·(cell+PAD)


class Inspector:
    """An ``invert`` callback that records the iterates to inspect; ``write()`` draws them.

    ``then`` is called with the same arguments (the progress bar)."""

    def __init__(self, out, rep, target, layer, preset="cvpr15", overrides=None, then=None):
        overrides = dict(overrides or {})
        pb = loop._setup(rep, target, None, layer, preset, overrides)
        start = loop._initial_x(pb, np.random.default_rng(pb.opts["seed"]))  # the loop's first
        self.out, self.then, self.rep = out, then, rep
        self.pb = dataclasses.replace(pb, jitter=1)  # the central H×W crop is the image
        self.first = (0, pb.central(start)[:1])  # pixel units, restart 0
        self.latest = None

    def __call__(self, step, x_input, terms):
        self.latest = (step, x_input[:1])  # input space (the callback's x); converted in write
        if self.then is not None:
            self.then(step, x_input, terms)

    def iterates(self):
        """[(step, x in pixel units (1, C, H, W))]: the first and the last one reported."""
        found = [self.first]
        if self.latest is not None and self.latest[0] != 0:
            found.append((self.latest[0], self.latest[1] / self.pb.scale))
        return found

    def write(self):
        """Write the pictures, the chart, the graphs and index.html; returns index.html's path."""
        os.makedirs(self.out, exist_ok=True)
        record, layer_rows = [], []
        for step, x in self.iterates():
            record.append(self._write_iteration(step, x))
            layer_rows.append((step, layer_norms(self.pb, x)))
        im.save_png(os.path.join(self.out, "layer-norms.png"), layer_chart(layer_rows))
        for entry, (_, rows) in zip(record, layer_rows):
            entry["layer_norms"] = dict(rows)
        im.save_json(os.path.join(self.out, "inspect.json"),
                     {"representation": self.rep.name, "layer": self.pb.layer,
                      "iterations": record})
        return _write_index(self.out, self.rep.name, self.pb.layer, record)

    def _write_iteration(self, step, x):
        grads = term_gradients(self.pb, x)
        with im.atomic_open(os.path.join(self.out, f"gradients-iter{step:04d}.npz")) as f:
            np.savez(f, **grads)
        image = self.rep.deprocess(backend.asnumpy(x * self.pb.scale))
        title = f"iteration {step}: gradient dE/dx of each energy term w.r.t. the image"
        im.save_png(os.path.join(self.out, f"grad-iter{step:04d}.png"),
                    gradient_sheet(grads, image, title))
        g = energy_graph(self.pb, x)
        stem = os.path.join(self.out, f"graph-iter{step:04d}")
        graphs = [os.path.basename(stem + ".html")]
        im.save_text(stem + ".html", g.to_html(f"the energy at iteration {step}"))
        try:
            im.save_text(stem + ".svg", g.to_svg())
            graphs.append(os.path.basename(stem + ".svg"))
        except RuntimeError:  # no Graphviz: the HTML table is the graph
            pass
        return {"step": step, "picture": f"grad-iter{step:04d}.png", "graphs": graphs,
                "grad_norm": {k: float(np.linalg.norm(v)) for k, v in grads.items()},
                "grad_max_abs": {k: float(np.abs(v).max()) for k, v in grads.items()}}


# --- the gradients ---------------------------------------------------------------------------
def term_gradients(pb, x):
    """{"loss", "tv", "alpha": host float64 (C, H, W)}: ∂term/∂x for x (1, C, H, W) in pixel
    units, each term weighted as in the energy (``loop._energy`` at offset (0, 0))."""
    xt = Tensor(x, requires_grad=True)
    loss, ra, tv, _ = loop._energy(pb, xt, 0, 0)
    grads = {}
    for name, term in (("loss", loss), ("tv", tv), ("alpha", ra)):  # disjoint graphs but x
        xt.grad = None
        term.sum().backward()
        grads[name] = backend.asnumpy(xt.grad[0]).astype(np.float64)
    return grads


def energy_graph(pb, x):
    """The ``Graph`` of one evaluation of the whole energy at x, after its backward."""
    xt = Tensor(x, requires_grad=True)
    xt.name = "x"
    total = loop._energy(pb, xt, 0, 0)[3].sum()
    g = graph(total)
    total.backward()
    return g


def layer_norms(pb, x):
    """[(name, ‖∂ data term / ∂ output‖)] from the image to the code: the image, then each
    layer up to ``pb.layer`` (CNNs, via ``forward_layers``) or every op (HOG, DSIFT)."""
    rep, layer = pb.rep, pb.layer
    xt = Tensor(x, requires_grad=True)
    inp = xt if pb.unit_scale else xt * pb.scale
    if hasattr(rep, "forward_layers"):
        acts = rep.forward_layers(inp, rep.layers[:rep.layers.index(layer) + 1])
    else:
        acts = {layer: rep.forward(inp, layer)}
    total = loop.FeatureLoss.apply(acts[layer], pb.phi0, pb.mask, scale=pb.loss_scale).sum()
    names = {id(t): name for name, t in acts.items()}
    by_op = not hasattr(rep, "forward_layers")
    order = [(n, type(n._ctx).__name__) for n in reversed(_toposort(total)) if n._ctx is not None]
    g = graph(total)
    total.backward()
    rows, seen = [("image", g.grad_norms.get(id(xt), 0.0))], {}
    for node, op in order[:-2]:  # the FeatureLoss and the sum are not layers
        if id(node) in names or by_op:
            name = names.get(id(node)) if not by_op else op
            seen[name] = seen.get(name, 0) + 1
            name = name if seen[name] == 1 else f"{name} #{seen[name]}"
            rows.append((name, g.grad_norms.get(id(node), 0.0)))
    if by_op and names and rows[-1][0] != layer:
        rows[-1] = (f"{rows[-1][0]} ({layer})", rows[-1][1])
    return rows


# --- the pictures ----------------------------------------------------------------------------
def shared_scale(grads):
    """(top, floor) of the symmetric log scale shared by all the terms: top = the largest
    |∂E/∂x| of any term, floor one decade below the smallest term's own largest value (at most
    8 decades below top), so that every term shows its structure on the common scale."""
    peaks = [float(np.abs(g.sum(axis=0)).max()) for g in grads.values()]
    top = max(peaks)
    if not top > 0 or not math.isfinite(top):
        return 1.0, 1e-8
    smallest = min([p for p in peaks if p > 0] or [top])
    return top, max(smallest / 10, top * 1e-8)


def symlog(values, top, floor):
    """values -> [-1, 1]: sign·log10(1 + |v|/floor) / log10(1 + top/floor)."""
    return np.sign(values) * np.log10(1 + np.abs(values) / floor) / math.log10(1 + top / floor)


def diverging(v):
    """[-1, 1] -> uint8 RGB: blue (negative), white (zero), red (positive)."""
    v = np.clip(np.nan_to_num(np.asarray(v, dtype=np.float64)), -1, 1)  # NaN: white
    fade = 255 * (1 - np.abs(v))
    rgb = np.stack([np.where(v < 0, fade, 255), fade, np.where(v > 0, fade, 255)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def gradient_tiles(grads, scale=None):
    """{term: uint8 (H, W, 3)}: each ∂term/∂x summed over colour channels, on one scale."""
    top, floor = scale or shared_scale(grads)
    return {k: diverging(symlog(g.sum(axis=0), top, floor)) for k, g in grads.items()}


def _colour_bar(width, top, floor, font):
    """The legend: the colour bar of ``symlog`` with ticks at 0 and at decades of ±top."""
    from PIL import Image, ImageDraw

    bar = diverging(np.linspace(-1, 1, width)[None].repeat(14, axis=0))
    img = Image.new("RGB", (width + 80, 52), (255, 255, 255))
    img.paste(Image.fromarray(bar), (40, 4))
    d = ImageDraw.Draw(img)
    e_top = math.floor(math.log10(top))
    ticks = [0.0] + [s * 10.0 ** e for e in range(e_top, e_top - 9, -1) for s in (1, -1)
                     if 10.0 ** e >= floor * 3]
    used = []
    for t in ticks:
        px = 40 + (width - 1) * (symlog(np.float64(t), top, floor) + 1) / 2
        if any(abs(px - u) < 34 for u in used):
            continue  # keep the labels apart
        used.append(px)
        d.line([px, 18, px, 23], fill=(0, 0, 0))
        label = "0" if t == 0 else f"{t:.0e}".replace("e+0", "e").replace("e-0", "e-")
        d.text((px - 3 * len(label), 25), label, fill=(0, 0, 0), font=font)
    d.text((40, 39), "dE/dx, pixels, sum over colours; one symmetric log scale",
           fill=(0, 0, 0), font=font)
    return img


def gradient_sheet(grads, image, title, cell=200):
    """uint8: the iterate, then the data term, TV and α-norm gradients, with the legend."""
    from PIL import Image, ImageDraw

    top, floor = shared_scale(grads)
    tiles = gradient_tiles(grads, (top, floor))
    font = im._font(12)
    panels = [("iterate", im._rgb(image))] + [
        (f"{label}  |grad| {np.linalg.norm(grads[k]):.3g}", tiles[k]) for k, label in TERMS]
    h, w = panels[0][1].shape[:2]
    s = cell / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    pad, head = SHEET_PAD, SHEET_HEAD
    sheet = Image.new("RGB", (pad + len(panels) * (cell + pad), head + size[1] + 22 + 56),
                      (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    d.text((pad, 6), title, fill=(0, 0, 0), font=im._font(14))
    for i, (label, tile) in enumerate(panels):
        x0 = pad + i * (cell + pad)
        sheet.paste(Image.fromarray(tile).resize(size, Image.NEAREST), (x0, head))
        d.text((x0, head + size[1] + 4), label, fill=(0, 0, 0), font=font)
    bar_width = 3 * (cell + pad) - pad - 80
    sheet.paste(_colour_bar(bar_width, top, floor, font),
                (pad + cell + pad - 40, head + size[1] + 22))
    return np.asarray(sheet)


def layer_chart(rows_by_step, width=560):
    """Horizontal bars, log scale: ‖∂(data term)/∂(layer output)‖ per layer, per iteration."""
    from PIL import Image, ImageDraw

    names = [name for name, _ in rows_by_step[0][1]]
    values = [v for _, rows in rows_by_step for _, v in rows if v > 0 and math.isfinite(v)]
    lo = math.floor(math.log10(min(values))) if values else 0
    hi = max(math.ceil(math.log10(max(values))), lo + 1) if values else 1
    font, left, bar, gap = im._font(12), 150, 9, 6
    row_h = bar * len(rows_by_step) + gap
    height = 40 + row_h * len(names) + 40
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((8, 6), "|d data term / d layer output| (gradient norm, log scale)", fill=(0, 0, 0),
           font=im._font(14))
    span = width - left - 20

    def px(v):
        return left + span * (math.log10(v) - lo) / (hi - lo)

    for e in range(lo, hi + 1):
        d.line([px(10.0 ** e), 32, px(10.0 ** e), height - 34], fill=(225, 225, 225))
        d.text((px(10.0 ** e) - 10, height - 32), f"1e{e}", fill=(0, 0, 0), font=font)
    for k, (step, rows) in enumerate(rows_by_step):
        colour = im._COLOURS[k % len(im._COLOURS)]
        for r, (name, v) in enumerate(rows):
            y = 36 + r * row_h + k * bar
            if k == 0:
                d.text((8, y), name[:22], fill=(0, 0, 0), font=font)
            if v > 0 and math.isfinite(v):
                d.rectangle([left, y, max(left + 1, px(v)), y + bar - 2], fill=colour)
        d.rectangle([left + 120 * k, height - 14, left + 120 * k + 14, height - 4], fill=colour)
        d.text((left + 120 * k + 18, height - 16), f"iteration {step}", fill=(0, 0, 0), font=font)
    return np.asarray(img)


def _write_index(out, net, layer, record):
    """index.html: every picture and graph of the inspection, linked from one page."""
    parts = [f"<h2>Gradients of the inversion of {html.escape(net)} {html.escape(layer)}</h2>",
             "<p>Per iteration: ∂E/∂x of each energy term on one colour scale, and the graph of "
             "the energy with the gradient norm at every node. Arrays: gradients-iter*.npz; "
             "numbers: <a href='inspect.json'>inspect.json</a>.</p>"]
    for entry in record:
        links = " · ".join(f"<a href='{g}'>graph ({g.rsplit('.', 1)[1].upper()})</a>"
                           for g in entry["graphs"])
        parts.append(f"<h3>iteration {entry['step']}</h3><img src='{entry['picture']}'>"
                     f"<p>{links}</p>")
    parts.append("<h3>per-layer gradient norms</h3><img src='layer-norms.png'>")
    path = os.path.join(out, "index.html")
    im.save_text(path, "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>minigrad "
                 "inspection</title></head><body style='font-family:sans-serif'>"
                 + "".join(parts) + "</body></html>\n")
    return path
