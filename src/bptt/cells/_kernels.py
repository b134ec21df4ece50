"""Chooses the implementation of the time loops (see ``_numpy_loops``)."""

from ._numpy_loops import (  # noqa: F401
    gru_backward_loop,
    gru_forward_loop,
    lstm_backward_loop,
    lstm_forward_loop,
    rnn_backward_loop,
    rnn_forward_loop,
)
