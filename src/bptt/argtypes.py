"""Argument types shared by the command-line modules (``cli``, ``tasks_cli``, ``viz_cli``).

Each takes the text of one option and returns its value, or raises
``argparse.ArgumentTypeError`` with a message that names what was expected; argparse turns
that into the one-line usage error the ``bptt`` command prints.
"""

import argparse


def _int_at_least(text, low, what):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return v


def positive_int(text):
    return _int_at_least(text, 1, "a positive integer")


def nonneg_int(text):
    return _int_at_least(text, 0, "a whole number >= 0")


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def nonneg_float(text):
    v = _number(text)
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return v


def positive_float(text):
    v = nonneg_float(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return v


def fraction(text):
    """A number in [0, 1)."""
    v = _number(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return v
