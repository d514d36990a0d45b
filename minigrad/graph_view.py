"""Print the graph behind a tensor, and the gradient that reaches every node.

    g = minigrad.graph(loss)   # records the graph now, and hooks every node
    loss.backward()
    print(g)                   # op, output shape and |grad| per node
    open("g.dot", "w").write(g.to_dot())
    g.render("g")              # g.svg when Graphviz's ``dot`` is installed, else g.html

``to_html`` is a self-contained page (one table, inline style, no scripts or links), so it
opens anywhere; ``to_svg`` asks ``dot`` to lay the graph out.
"""
import html
import math
import os
import shutil
import subprocess

from . import backend


class Graph:
    def __init__(self, root):
        self.nodes, self.edges = _collect(root)  # outputs first; edges: id -> input nodes
        self.grad_norms = {}
        for node in self.nodes:
            if node.requires_grad:
                node.register_hook(self._recorder(id(node)))

    def _recorder(self, key):
        def record(grad):
            norm = float(backend.get_array_module(grad).linalg.norm(grad.reshape(-1)))
            self.grad_norms[key] = self.grad_norms.get(key, 0.0) + norm
        return record

    @staticmethod
    def label(node):
        if node._ctx is not None or getattr(node, "_op_name", None):
            name = getattr(node, "_op_name", None) or type(node._ctx).__name__
        else:
            name = "input" if node.requires_grad else "constant"
        return f"{name} {node.name}" if node.name else name

    def __str__(self):
        lines = [f"{'#':>3}  {'node':<28} {'shape':<22} {'|grad|':>12}  inputs"]
        index = {id(n): i for i, n in enumerate(self.nodes)}
        for i, node in enumerate(self.nodes):
            grad = self.grad_norms.get(id(node))
            grad = f"{grad:12.5g}" if grad is not None and math.isfinite(grad) else f"{'-':>12}"
            inputs = ", ".join(f"#{index[id(p)]}" for p in self.edges[id(node)])
            lines.append(f"{i:>3}  {self.label(node):<28} {str(node.shape):<22} {grad}  {inputs}")
        return "\n".join(lines)

    def to_dot(self):
        """The graph in Graphviz DOT: ``dot -Tpng g.dot -o g.png``."""
        out = ["digraph minigrad {", "  rankdir=BT; node [shape=box, fontname=monospace];"]
        for node in self.nodes:
            grad = self.grad_norms.get(id(node))
            text = f"{self.label(node)}\\n{node.shape}" + (
                f"\\n|grad| {grad:.4g}" if grad is not None else "")
            out.append(f'  n{id(node)} [label="{text}"];')
            for parent in self.edges[id(node)]:
                out.append(f"  n{id(parent)} -> n{id(node)};")
        out.append("}")
        return "\n".join(out)

    def to_svg(self, timeout=60):
        """The graph laid out by Graphviz (``dot -Tsvg``), as SVG text.

        RuntimeError when ``dot`` is not on the PATH or fails (``to_html`` needs nothing)."""
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError("Graphviz's `dot` is not installed; use Graph.to_html() instead")
        done = subprocess.run([dot, "-Tsvg"], input=self.to_dot(), capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0 or "<svg" not in done.stdout:
            raise RuntimeError(f"dot -Tsvg failed: {done.stderr.strip() or 'no SVG output'}")
        return done.stdout

    def to_html(self, title="minigrad graph"):
        """A self-contained HTML page: one row per node (outputs first) with its op, shape,
        ‖grad‖ (and a bar on a log scale) and the rows of its inputs."""
        index = {id(n): i for i, n in enumerate(self.nodes)}
        norms = [v for v in self.grad_norms.values() if math.isfinite(v) and v > 0]
        top, bottom = (math.log10(max(norms)), math.log10(min(norms))) if norms else (0, 0)
        rows = []
        for i, node in enumerate(self.nodes):
            grad = self.grad_norms.get(id(node))
            width = 0
            if grad is not None and math.isfinite(grad) and grad > 0:
                width = 4 + 96 * (math.log10(grad) - bottom) / max(top - bottom, 1e-12)
            shown = f"{grad:.4g}" if grad is not None else "-"
            inputs = ", ".join(f"#{index[id(p)]}" for p in self.edges[id(node)])
            rows.append(f"<tr><td>{i}</td><td>{html.escape(self.label(node))}</td>"
                        f"<td>{html.escape(str(node.shape))}</td><td class=n>{shown}</td>"
                        f"<td><div class=bar style='width:{width:.0f}px'></div></td>"
                        f"<td>{inputs}</td></tr>")
        style = ("body{font-family:monospace;margin:1em}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
                 ".n{text-align:right}.bar{height:10px;background:#d62728}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
                f"{html.escape(title)}</title><style>{style}</style></head><body>"
                f"<h3>{html.escape(title)}</h3><p>{len(self.nodes)} nodes, outputs first; "
                f"|grad| is the norm of the gradient reaching the node (bar: log scale)</p>"
                "<table><tr><th>#</th><th>node</th><th>shape</th><th>|grad|</th><th></th>"
                "<th>inputs</th></tr>" + "".join(rows) + "</table></body></html>\n")

    def render(self, path_stem, title="minigrad graph"):
        """Write ``path_stem.svg`` when ``dot`` is installed, else ``path_stem.html``; returns
        the path written."""
        try:
            text, path = self.to_svg(), f"{os.fspath(path_stem)}.svg"
        except RuntimeError:
            text, path = self.to_html(title), f"{os.fspath(path_stem)}.html"
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


def _parents(node):
    ctx = node._ctx
    return [p for p in (ctx.inputs if ctx is not None else ()) if p is not None]


def _collect(root):
    # The engine frees the graph after backward, so the structure is copied now.
    nodes, edges, stack = [], {}, [root]
    while stack:
        node = stack.pop()
        if id(node) in edges:
            continue
        edges[id(node)] = _parents(node)
        nodes.append(node)
        node._op_name = type(node._ctx).__name__ if node._ctx is not None else None
        stack.extend(reversed(edges[id(node)]))
    return nodes, edges


def graph(root):
    """A ``Graph`` view of everything ``root`` depends on (see the module docstring)."""
    return Graph(root)
