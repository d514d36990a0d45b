"""Print the graph behind a tensor, and the gradient that reaches every node.

    g = minigrad.graph(loss)   # records the graph now, and hooks every node
    loss.backward()
    print(g)                   # op, output shape and |grad| per node
    open("g.dot", "w").write(g.to_dot())
"""
import math

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
