"""The progress line of a long inversion, on stderr.

A hand-written line rather than tqdm: it shows the energy terms that a user watches for
divergence, rewrites one line on a terminal and prints a line every 10% otherwise (logs, CI),
and keeps the run-time dependencies at numpy, scipy and pillow.
"""
import sys
import time


class Progress:
    """Called as the inversion's ``callback(step, x, terms)``; ``close()`` ends the line."""

    width = 24

    def __init__(self, total, desc="", stream=None, enabled=True):
        self.total, self.desc, self.stream = max(int(total), 1), desc, stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0, self.last = time.perf_counter(), 0.0

    def _due(self, n, now):
        """On a terminal at most every 0.1 s; otherwise at the first step, every 10%, the end."""
        if self.tty:
            return now - self.last >= 0.1 or n >= self.total
        return n % max(self.total // 10, 1) == 0 or n == 1 or n >= self.total

    def __call__(self, step, x, terms):
        n, now = step + 1, time.perf_counter()
        if not self.enabled or not self._due(n, now):
            return
        self.last = now
        fill = int(self.width * n / self.total)
        rate = n / max(now - self.t0, 1e-9)
        text = (f"{self.desc} [{'#' * fill}{'.' * (self.width - fill)}] {n}/{self.total} "
                f"E={terms['energy']:.4g} loss={terms['loss']:.4g} tv={terms['tv']:.3g} "
                f"alpha={terms['alpha']:.3g} lr={terms['lr']:.3g}{_backoffs(terms)} "
                f"{rate:.1f} it/s")
        self.stream.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _backoffs(terms):
    """" (N back-offs)" once the loop's safeguard has lowered the rate (safeguard.py)."""
    n = terms.get("backoffs", 0)
    return f" ({n} back-off{'s' if n != 1 else ''})" if n else ""
