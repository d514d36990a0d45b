"""SIGINT and SIGTERM for the command line: the run ends as Ctrl-C ends it, and writing
results is never cut short.

* The first SIGINT or SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) where the
  program is: the inversion loop returns its current result, which the command writes,
  marked ``interrupted``. The exit status is 128 + the signal's number (130, 143).
* Every later signal is only recorded: the outputs of the first are written completely.
* Inside :func:`deferred` (the writing of outputs) even the first signal is held until the
  block ends, then raised.
"""
import contextlib
import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by the first SIGINT/SIGTERM; ``signum`` says which."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    def __init__(self):
        self.received, self.raised, self.depth = [], False, 0

    def handle(self, signum, frame):
        self.received.append(signum)
        if not self.raised and self.depth == 0:
            self.raised = True
            raise Interrupted(signum)


_state = _State()


def received():
    """The signals received since :func:`installed` began, in order."""
    return list(_state.received)


def first_name():
    """"SIGINT" or "SIGTERM": the first signal received, or None."""
    return signal.Signals(_state.received[0]).name if _state.received else None


def exit_status(default=130):
    """128 + the first signal received (130 for SIGINT, 143 for SIGTERM), else ``default``."""
    return 128 + _state.received[0] if _state.received else default


@contextlib.contextmanager
def installed():
    """Handle SIGINT and SIGTERM as described above for the duration of the block (a no-op
    outside the main thread, where Python cannot install handlers)."""
    global _state
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer, _state = _state, _State()
    previous = {s: signal.signal(s, _state.handle) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            # ending on a signal: ignore later ones, or one arriving while the interpreter
            # shuts down (when Python drops its own handlers) would kill the exit status
            signal.signal(s, signal.SIG_IGN if _state.received else handler)
        _state = outer


@contextlib.contextmanager
def deferred():
    """Hold every signal until the block ends (writing files); then raise the first one
    if none has been raised yet."""
    state = _state
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
    if state.depth == 0 and state.received and not state.raised:
        state.raised = True
        raise Interrupted(state.received[0])
