"""The application layer above the library: the ``minigrad`` command's modules.

- ``minigrad/cli.py``: the argument parser and one small function per command;
- ``outputs.py``: loading a representation for a command, reading the input image, the files
  an inversion and a sweep write, the versions record, the sweep runner and its table;
- ``demo.py``: the main job (``minigrad demo``) and its page;
- ``progress.py``: the progress line.

Everything here may import the library (core, inversion, models, weights); nothing in the
library imports this package.
"""


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""
