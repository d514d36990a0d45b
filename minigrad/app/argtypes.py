"""argparse ``type=`` functions: a bad number is refused before any work, in one line that
argparse prefixes with the option (``argument --lr: must be a finite number > 0, got nan``)."""
import argparse
import math


def positive_float(text):
    """A finite float > 0 (``--lr``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def int_at_least(low):
    """An integer >= ``low`` (``--seed`` 0, ``--iters`` 1, ``--resize`` 8, ...)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse
