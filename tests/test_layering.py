"""The layers of the project and their import rules (docs/design.md), checked on the AST.

    core       minigrad/{__init__,backend,tensor,functional,gradcheck,gradcheck_all,graph_view}.py,
               minigrad/ops/
    inversion  minigrad/inversion/          may import: core
    weights    weights/                     may import: weights
    models     models/                      may import: core, weights
    app        minigrad/cli.py, minigrad/app/, minigrad/images.py, minigrad/samples.py
                                            may import: everything but benchmarks
    benchmarks benchmarks/                  (nothing in the library may import it)

Every import counts, including those inside functions (a late import is still an arrow), and
the graph of modules has no cycle. ``minigrad/__init__`` offers ``invert`` by a lazy attribute
(PEP 562), checked separately: importing the core or the models never loads the inversion.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("minigrad", "models", "weights", "benchmarks")
CORE = {"minigrad", "minigrad.backend", "minigrad.tensor", "minigrad.functional",
        "minigrad.gradcheck", "minigrad.gradcheck_all", "minigrad.graph_view"}
APP = {"minigrad.cli", "minigrad.images", "minigrad.samples"}
ALLOWED = {
    "core": {"core"},
    "inversion": {"core", "inversion"},
    "weights": {"weights"},
    "models": {"core", "weights", "models"},
    "app": {"core", "inversion", "weights", "models", "app"},
    "benchmarks": {"core", "inversion", "weights", "models", "app", "benchmarks"},
}


def layer_of(module):
    top = module.split(".")[0]
    if top in ("models", "weights", "benchmarks"):
        return top
    if module in CORE or module.startswith("minigrad.ops"):
        return "core"
    if module.startswith("minigrad.inversion"):
        return "inversion"
    if module in APP or module.startswith("minigrad.app"):
        return "app"
    raise AssertionError(f"{module} belongs to no layer: add it to tests/test_layering.py")


def module_files():
    """{module name: path} of every Python file of the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(name, modules):
    """The longest prefix of a dotted name that is one of the project's modules, or None."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def imports_of(module, path, modules):
    """[(line, imported project module)] for every import in the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = base[:len(base) - (node.level - 1)] if node.level else []
            root = ".".join(prefix + ([node.module] if node.module else []))
            names = [f"{root}.{a.name}" for a in node.names] or [root]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            if getattr(fn, "attr", getattr(fn, "id", None)) in ("import_module", "__import__"):
                names = [str(node.args[0].value)]
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.append((node.lineno, target))
    return found


MODULES = module_files()
GRAPH = {m: imports_of(m, p, MODULES) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) != "benchmarks"))
def test_imports_go_only_down_the_layers(module):
    allowed = ALLOWED[layer_of(module)]
    bad = [f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} "
           f"({layer_of(target)} layer)" for line, target in GRAPH[module]
           if layer_of(target) not in allowed]
    assert not bad, "upward import: " + "; ".join(bad)


def strongly_connected(graph):
    """Tarjan's components of size > 1 (iterative), each a sorted list of modules."""
    index, low, on_stack, stack, comps, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted({t for _, t in graph[start]})))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted({t for _, t in graph[child]}))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return comps


def test_no_import_cycles():
    assert strongly_connected(GRAPH) == []


def test_the_checker_sees_upward_and_circular_imports(tmp_path):
    """The checker itself: a late relative import and a cycle are both found."""
    fake = {"minigrad.tensor": tmp_path / "tensor.py", "minigrad.functional": tmp_path / "f.py",
            "minigrad.inversion.loop": tmp_path / "loop.py"}
    fake["minigrad.tensor"].write_text("def f():\n    from .functional import add\n")
    fake["minigrad.functional"].write_text("from . import tensor\nimport minigrad.inversion.loop\n")
    fake["minigrad.inversion.loop"].write_text("x = 1\n")
    graph = {m: imports_of(m, p, fake) for m, p in fake.items()}
    assert graph["minigrad.tensor"] == [(2, "minigrad.functional")]
    assert (2, "minigrad.inversion.loop") in graph["minigrad.functional"]
    assert layer_of("minigrad.inversion.loop") not in ALLOWED[layer_of("minigrad.functional")]
    assert strongly_connected(graph) == [["minigrad.functional", "minigrad.tensor"]]


def test_core_and_models_load_no_inversion_app_or_benchmarks():
    code = ("import sys, minigrad, models; models.get('hog'); "
            "print(sorted(m for m in sys.modules if m.startswith(('minigrad.inversion', "
            "'minigrad.app', 'minigrad.cli', 'benchmarks'))))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    r = subprocess.run([sys.executable, "-c", "import minigrad; print(minigrad.invert.__module__)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "minigrad.inversion.loop", r.stderr
