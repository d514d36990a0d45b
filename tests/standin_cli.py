"""``python tests/standin_cli.py ARGS`` = ``python -m minigrad.cli ARGS`` with the CuPy stand-in
(tests/fakecupy.py) as CuPy: the CLI's ``--device cuda`` tests in a subprocess on a machine
without a GPU. Test support only; nothing in minigrad can reach it."""
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fakecupy  # noqa: E402

from minigrad import backend  # noqa: E402

fakecupy.install(backend)
sys.argv[0] = "minigrad"
runpy.run_module("minigrad.cli", run_name="__main__", alter_sys=True)
