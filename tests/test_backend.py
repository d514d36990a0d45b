"""minigrad.backend: process-level settings (the array functions are tested through the ops)."""
import os
import platform
import subprocess
import sys


def test_keep_freed_memory_tunes_glibc_once_and_can_be_switched_off():
    """invert() asks glibc to keep freed memory (no page faults per iteration); the switch
    MINIGRAD_KEEP_FREED=0 leaves malloc alone. Run in children: the setting is per process."""
    code = ("from minigrad import backend; a = backend.keep_freed_memory(); "
            "print(a, backend.keep_freed_memory() is a)")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "MINIGRAD_KEEP_FREED": "0"})
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert on.stdout.split() == [str(glibc), "True"]
    assert off.stdout.split() == ["False", "True"]
