"""NumPy's own BLAS, reached directly so that compiled code can call its matrix product.

The fast path splits a batch over threads and lets each thread multiply its own rows, one step
after another. NumPy's ``matmul`` cannot be called from compiled code, and through the
interpreter each of the thousands of small products of a sequence would pay for the dispatch.
So this module finds the ``cblas_?gemm`` that NumPy itself uses (the OpenBLAS that NumPy's
wheels ship, ILP64: 64-bit integer arguments) and hands its address to the compiled loops.

While our threads multiply, OpenBLAS must not start threads of its own for each product, and it
must not be left spinning from an earlier call: ``single_threaded`` sets its thread count to one
for the duration and restores it. (After a multi-threaded product an OpenBLAS worker spins for
about 0.1 s waiting for more work; two threads of ours would share the two cores with it.)

When the library is not found (NumPy built against another BLAS), ``find()`` returns None and
the fast path multiplies with ``np.matmul`` from the interpreter instead: slower, same results.
"""

import ctypes
import glob
import os
from contextlib import contextmanager

import numpy as np

# (sgemm, dgemm, set threads, get threads): NumPy >= 2 wheels first, then NumPy 1.x wheels
_SYMBOLS = (
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_",
     "scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("cblas_sgemm64_", "cblas_dgemm64_", "openblas_set_num_threads64_", "openblas_get_num_threads64_"),
)


class Blas:
    """The addresses of ``cblas_sgemm`` / ``cblas_dgemm`` and OpenBLAS's thread setting."""

    def __init__(self, path, lib, names):
        s, d, setn, getn = names
        self.path = path
        self.sgemm = ctypes.cast(getattr(lib, s), ctypes.c_void_p).value
        self.dgemm = ctypes.cast(getattr(lib, d), ctypes.c_void_p).value
        self._set = getattr(lib, setn)
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get = getattr(lib, getn)
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def gemm(self, dtype):
        """The address of the gemm for float32 or float64."""
        return self.sgemm if np.dtype(dtype) == np.float32 else self.dgemm

    def get_num_threads(self):
        return int(self._get())

    def set_num_threads(self, n):
        self._set(int(n))


def _library_paths():
    """NumPy's bundled OpenBLAS: numpy.libs (Linux, Windows) or numpy/.dylibs (macOS)."""
    base = os.path.dirname(np.__file__)
    pats = [os.path.join(base, os.pardir, "numpy.libs", "*openblas*"), os.path.join(base, ".dylibs", "*openblas*")]
    return sorted(p for pat in pats for p in glob.glob(pat))


_found = False
_blas = None


def find():
    """The ``Blas`` of this NumPy, or None when it is not an OpenBLAS that can be found."""
    global _found, _blas
    if not _found:
        _found = True
        for path in _library_paths():
            try:
                lib = ctypes.CDLL(path)  # already loaded by NumPy: the same handle
            except OSError:
                continue
            for names in _SYMBOLS:
                if all(hasattr(lib, n) for n in names):
                    _blas = Blas(path, lib, names)
                    return _blas
    return _blas


@contextmanager
def single_threaded(blas):
    """OpenBLAS on one thread inside the block (our threads call it in parallel), as before after.

    The setting is process-wide: NumPy products that other Python threads run meanwhile also
    run on one thread."""
    n = blas.get_num_threads()
    if n != 1:
        blas.set_num_threads(1)
    try:
        yield
    finally:
        if n != 1:
            blas.set_num_threads(n)
