"""Output directories: checked up front, created only when there is something to write.

``check_out_dir`` validates ``--out`` before any work (the name lengths, that it is or can
be a directory, that its nearest existing ancestor is writable) and creates nothing.
``make_out_dir`` creates it when the first file is written; if that fails half-way (an
over-long name, a full disk) it removes the directories it made, so a failure leaves nothing.
"""
import os

from . import CLIError


def _limits(existing):
    try:
        return os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def _split_missing(path):
    """(nearest existing ancestor, [missing components, outermost first])."""
    head, missing = os.path.abspath(path), []
    while not os.path.exists(head):
        head, tail = os.path.split(head)
        missing.insert(0, tail)
    return head, missing


def check_out_dir(path):
    """``path`` if it is, or can be created as, a writable directory; else a CLIError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"output directory {path} exists and is not a directory")
    existing, missing = _split_missing(path)
    if not os.path.isdir(existing):
        raise CLIError(f"output directory {path} is not writable: {existing} is not a "
                       "directory")
    name_max, path_max = _limits(existing)
    for name in missing:
        if len(os.fsencode(name)) > name_max:
            raise CLIError(f"output directory {path}: the name {name[:24]}... is "
                           f"{len(os.fsencode(name))} bytes long, above the limit of {name_max}")
    if len(os.fsencode(os.path.abspath(path))) >= path_max:
        raise CLIError(f"output directory {path}: the path is longer than {path_max - 1} bytes")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"output directory {path} is not writable: {existing} does not allow "
                       "writing")
    return path


def make_out_dir(path):
    """Create ``path`` (checked first); on failure remove what was created and raise."""
    check_out_dir(path)
    existing, missing = _split_missing(path)
    created = []
    try:
        for name in missing:
            existing = os.path.join(existing, name)
            os.mkdir(existing)
            created.append(existing)
    except OSError as e:
        for d in reversed(created):
            try:
                os.rmdir(d)
            except OSError:
                break
        raise CLIError(f"output directory {path} cannot be created: {e.strerror or e}") from None
    return path
