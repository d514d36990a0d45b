"""Backend purity: only ``minigrad/backend.py`` imports NumPy or CuPy.

Ops, the functional API and the engine reach arrays through ``get_array_module`` so that one
code path serves NumPy and CuPy. The scan is on the AST, so comments and strings don't count.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"numpy", "cupy", "cupyx"}
# host-array constructors: inside an op they would put data on the CPU whatever the device
CREATION = {
    "array", "asarray", "zeros", "ones", "empty", "full", "arange", "linspace", "eye",
    "zeros_like", "ones_like", "empty_like", "full_like", "random", "concatenate", "stack",
}

STRICT = sorted((ROOT / "minigrad" / "ops").glob("*.py")) + [
    ROOT / "minigrad" / "functional.py",
    ROOT / "minigrad" / "tensor.py",
]


def imported_array_modules(path):
    """(line, module) for every import of numpy/cupy, including __import__/import_module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if fname in ("__import__", "import_module") and isinstance(arg, ast.Constant):
                names = [str(arg.value)]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def host_array_creation(path):
    """(line, text) for ``backend.np.<constructor>`` / ``np.<constructor>`` uses."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in CREATION:
            base = node.value
            if (isinstance(base, ast.Attribute) and base.attr == "np") or (
                isinstance(base, ast.Name) and base.id == "np"
            ):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_scan_covers_the_core():
    names = {p.name for p in STRICT}
    assert {"conv.py", "pool.py", "elementwise.py", "functional.py", "tensor.py"} <= names


@pytest.mark.parametrize("path", STRICT, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_modules_do_not_import_numpy_or_cupy(path):
    assert imported_array_modules(path) == []


@pytest.mark.parametrize("path", sorted((ROOT / "minigrad" / "ops").glob("*.py")),
                         ids=lambda p: p.name)
def test_ops_create_no_host_arrays(path):
    assert host_array_creation(path) == []


def test_functional_creates_host_arrays_only_for_seeded_randomness():
    uses = host_array_creation(ROOT / "minigrad" / "functional.py")
    assert all("random" in text for _, text in uses), uses


def test_backend_is_the_one_that_imports_numpy():
    found = imported_array_modules(ROOT / "minigrad" / "backend.py")
    assert {m for _, m in found} >= {"numpy", "cupy"}


MODELS = sorted((ROOT / "models").glob("*.py"))


@pytest.mark.skipif(not MODELS, reason="no models yet")
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_models_do_not_import_numpy_or_cupy(path):
    assert imported_array_modules(path) == []


def test_the_scanner_sees_imports(tmp_path):
    """The checker itself: every spelling of the import is caught."""
    src = tmp_path / "bad.py"
    src.write_text(
        "import numpy\nimport numpy as np\nfrom cupy import asarray\nimport cupyx.scipy\n"
        "import importlib\nx = importlib.import_module('numpy')\ny = __import__('cupy')\n"
        "from . import backend\nz = backend.np.zeros(3)\n# import numpy\ns = 'import cupy'\n"
    )
    assert [line for line, _ in imported_array_modules(src)] == [1, 2, 3, 4, 6, 7]
    assert host_array_creation(src) == [(9, "backend.np.zeros")]
