"""The benchmark scripts' report helpers live in the library (``bptt.report``); BENCHMARKS.md is
written at the repository root."""

import os

from bptt.report import machine_line  # noqa: F401
from bptt.report import write_section as _write_section

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")


def write_section(name, body, path=DEFAULT_PATH):
    return _write_section(name, body, path)
