"""The one exception type of the ``weights`` package.

Every failure a user can cause (a missing file, a bad checksum, a wrong shape, a refused
pickle global, an unreachable server) raises :class:`WeightsError` with a one-line message;
the command line prints it without a traceback.
"""


class WeightsError(Exception):
    """A weight file could not be fetched, read, verified or converted."""


class UnsafePickleError(WeightsError):
    """A pickle asked for a global that the restricted unpickler does not admit."""


class ChecksumError(WeightsError):
    """A file's sha256 does not match the registered value."""
