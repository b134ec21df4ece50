"""Chooses the implementation of the time loops (and of the large products around them): ``_numba_loops`` (compiled, the default) or
``_numpy_loops`` (plain NumPy, the reference and the fallback); with the compiled loops, also the
compiled element-wise passes around them (``fused``: Adam's update, the classifier's patching
and pooling).

The choice is made on the first call, not at import: importing bptt neither imports numba nor
compiles anything. If numba cannot be imported the NumPy loops run, silently. The environment
variable ``BPTT_BACKEND=numpy`` forces the fallback; ``set_backend`` changes it at run time.
"""

import os
import warnings

from . import _numpy_loops

BACKENDS = ("numba", "numpy")

_env = os.environ.get("BPTT_BACKEND", "").strip().lower()
if _env and _env not in BACKENDS:
    warnings.warn(f"BPTT_BACKEND must be one of {BACKENDS}, got {_env!r}; using 'numba'", stacklevel=2)
    _env = ""
_requested = _env or "numba"
_impl = None  # the module in use, resolved on first use


def _load_numba():
    from . import _numba_loops  # imports numba; compiles nothing yet

    return _numba_loops


def _resolve():
    global _impl
    if _impl is None:
        if _requested == "numba":
            try:
                _impl = _load_numba()
            except Exception:  # numba missing or broken: the reference loops, silently
                _impl = _numpy_loops
        else:
            _impl = _numpy_loops
    return _impl


def set_backend(name):
    """Run the time loops with ``"numba"`` (compiled; the default) or ``"numpy"`` (reference).

    ``"numba"`` raises ImportError when numba cannot be imported. Results agree to rounding
    (1e-12 in float64); only the speed differs.
    """
    global _requested, _impl
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "numba":
        try:
            impl = _load_numba()
        except Exception as e:
            raise ImportError(f"the 'numba' backend needs numba, which failed to import: {e}") from e
    else:
        impl = _numpy_loops
    _requested, _impl = name, impl


def get_backend():
    """The backend the time loops run with: ``"numba"`` or ``"numpy"``."""
    return "numba" if _resolve() is not _numpy_loops else "numpy"


def fused():
    """``bptt._fused`` (compiled passes equal to the bit to their NumPy references) when the
    loops run compiled, else None (the callers then run the references)."""
    if _resolve() is _numpy_loops:
        return None
    from .. import _fused

    return _fused


def release_buffers():
    """Drop the buffers the compiled loops (LSTM, GRU) keep between training steps for reuse
    (``_numba_loops._pool``); the next step allocates afresh. Arrays in use are not touched.
    -> the bytes given back (0 when the compiled loops never ran)."""
    import sys

    loops = sys.modules.get(__name__.rsplit(".", 1)[0] + "._numba_loops")  # None: never loaded
    return 0 if loops is None else loops.release_buffers()


def matmul(a, b):
    return _resolve().matmul(a, b)


def input_projection(x, params, with_hh_bias):
    return _resolve().input_projection(x, params, with_hh_bias)


def sequence_grads(x, h_prev, dgx, dgh, params, input_grad=True):
    return _resolve().sequence_grads(x, h_prev, dgx, dgh, params, input_grad)


def rnn_forward_loop(xw, h0, W_hh, relu, lengths=None):
    return _resolve().rnn_forward_loop(xw, h0, W_hh, relu, lengths)


def rnn_backward_loop(dout, dh_T, hs, W_hh, relu, lengths=None):
    return _resolve().rnn_backward_loop(dout, dh_T, hs, W_hh, relu, lengths)


def lstm_forward_loop(xw, h0, c0, W_hh, lengths=None):
    return _resolve().lstm_forward_loop(xw, h0, c0, W_hh, lengths)


def lstm_forward_x(x, h0, c0, params, lengths=None):
    return _resolve().lstm_forward_x(x, h0, c0, params, lengths)


def lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, lengths=None):
    return _resolve().lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, lengths)


def lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths=None, input_grad=True):
    return _resolve().lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths, input_grad)


def lstmp_forward_loop(xw, h0, c0, W_hh, W_hr, lengths=None):
    return _resolve().lstmp_forward_loop(xw, h0, c0, W_hh, W_hr, lengths)


def lstmp_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr, lengths=None):
    return _resolve().lstmp_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr, lengths)


def gru_forward_loop(xw, h0, W_hh, b_hh, lengths=None):
    return _resolve().gru_forward_loop(xw, h0, W_hh, b_hh, lengths)


def gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh, lengths=None):
    return _resolve().gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh, lengths)


for _f in (matmul, input_projection, sequence_grads, rnn_forward_loop, rnn_backward_loop, lstm_forward_loop, lstm_forward_x,
           lstm_backward_loop, lstm_backward_x,
           lstmp_forward_loop, lstmp_backward_loop, gru_forward_loop, gru_backward_loop):
    _f.__doc__ = getattr(_numpy_loops, _f.__name__).__doc__
del _f
