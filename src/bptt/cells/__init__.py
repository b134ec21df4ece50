"""The recurrent cells as pure functions, one module per cell.

Each module has the same four functions:

- ``step_forward(x_t, state_prev, params) -> (state, cache)`` and
  ``step_backward(dstate, cache) -> (dx_t, dstate_prev, dparams)``: one time step,
  written to read like the derivation in ``docs/derivations.md``;
- ``forward(x, state0, params) -> (out, state_T, cache)`` and
  ``backward(dout, dstate_T, cache) -> (dx, dstate0, dparams)``: a whole sequence, done fast.

``params`` holds one direction of one layer under PyTorch's names without the suffix:
``weight_ih`` (G*H, D), ``weight_hh`` (G*H, H) and, when the layer has biases, ``bias_ih`` and
``bias_hh`` (G*H,). The state is ``h`` (B, H) for RNN and GRU and the pair ``(h, c)`` for LSTM;
``dstate_T`` may be None (zeros), for LSTM also either part of the pair. Row vectors throughout
(one sample per row, products ``x @ W.T``), as in ``docs/derivations.md``.

The sequential time loops run compiled with numba when it is installed (``"numba"``, the default)
or in plain NumPy (``"numpy"``, the reference); ``set_backend`` / ``get_backend`` switch and tell,
and the environment variable ``BPTT_BACKEND=numpy`` forces the NumPy loops. Results agree to
rounding; numba is imported, and its kernels compiled, on the first call only. The compiled loops
(LSTM, GRU) keep the buffers of their large arrays between steps and reuse those nothing refers to
any more (no page faults for the same arrays every step); ``release_buffers`` drops them.
"""

from . import gru, lstm, rnn
from ._kernels import get_backend, release_buffers, set_backend

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}

__all__ = ["rnn", "lstm", "gru", "CELLS", "set_backend", "get_backend", "release_buffers"]
