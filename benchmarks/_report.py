"""What the benchmark scripts share: the machine line of a report, and writing one benchmark's
section into BENCHMARKS.md (at the repository root) between markers, leaving the others alone."""

import os
import platform
import sys

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")


def threads_from_argv(default="1"):
    """``--threads N`` (default 1) into the thread variables of OpenMP, OpenBLAS, MKL and numba;
    call it before NumPy or numba is imported (this module imports neither at load)."""
    n = default
    if "--threads" in sys.argv:
        i = sys.argv.index("--threads")
        n = sys.argv[i + 1] if i + 1 < len(sys.argv) else n
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, n)


def machine_line():
    import numpy

    try:
        import torch

        tv = torch.__version__
    except ImportError:
        tv = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}, PyTorch {tv}")


def write_section(name, body, path=DEFAULT_PATH):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n\n"
    if start in text and end in text:
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + block.rstrip("\n") + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
