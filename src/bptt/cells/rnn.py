"""Vanilla (Elman) RNN cell. docs/derivations.md section 3.

Row vectors, as in the code and the doc: x_t (B, D), h_t (B, H), one sample per row;
W_ih (H, D) and W_hh (H, H) under PyTorch's names, so a product with a weight is x W^T.

    a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (B, H) pre-activation
    h_t = tanh(a_t)            (or relu(a_t))

Backward, with dh the total gradient reaching h_t (from the output and from step t+1):

    da_t      = dh * (1 - h_t^2)        (relu: dh * [h_t > 0])
    dW_ih    += da_t^T x_t     dW_hh += da_t^T h_{t-1}     db_ih = db_hh += sum_b da_t
    dx_t      = da_t W_ih
    dh_{t-1}  = da_t W_hh       (the only path back in time: one matrix and one derivative per step)

``step_forward``/``step_backward`` are these lines one for one; ``forward``/``backward`` run the
same equations over a sequence through ``_kernels`` (the loops of ``_numpy_loops`` or, compiled,
``_numba_loops``). Dimensions: T time, B batch, D input, H hidden.
"""

import numpy as np

from . import _kernels
from ._common import last_state, step_grads

GATES = 1


def _activate(a, nonlinearity):
    if nonlinearity == "tanh":
        return np.tanh(a)
    if nonlinearity == "relu":
        return np.maximum(a, 0.0)
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def _activation_grad(dh, h, nonlinearity):
    """d(act)/da expressed through the output h: tanh' = 1 - h^2, relu' = [h > 0]."""
    if nonlinearity == "tanh":
        return dh * (1.0 - h * h)
    return dh * (h > 0)


def step_forward(x_t, h_prev, params, nonlinearity="tanh"):
    """x_t (B, D), h_prev (B, H) -> h (B, H), cache."""
    a = x_t @ params["weight_ih"].T + h_prev @ params["weight_hh"].T  # (B, H)
    if "bias_ih" in params:
        a = a + params["bias_ih"] + params["bias_hh"]
    h = _activate(a, nonlinearity)
    return h, (x_t, h_prev, h, params, nonlinearity)


def step_backward(dh, cache):
    """dh (B, H) -> dx_t (B, D), dh_prev (B, H), dparams."""
    x_t, h_prev, h, params, nonlinearity = cache
    da = _activation_grad(dh, h, nonlinearity)  # (B, H)
    dx_t, dparams = step_grads(x_t, h_prev, da, da, params)
    dh_prev = da @ params["weight_hh"]
    return dx_t, dh_prev, dparams


def forward(x, h0, params, nonlinearity="tanh", lengths=None):
    """x (T, B, D), h0 (B, H) -> out (T, B, H), h_T (B, H), cache.

    lengths (B,) ints in 1..T or None: row b runs its first lengths[b] steps only; its outputs
    after them are zero and h_T[b] is its state after its last step."""
    _activate(np.zeros(0), nonlinearity)  # validates the name
    xw = _kernels.input_projection(x, params, with_hh_bias=True)  # (T, B, H)
    hs = _kernels.rnn_forward_loop(xw, h0, params["weight_hh"], nonlinearity == "relu", lengths)
    # hs (T+1, B, H): hs[0] = h0, hs[t+1] = h_t
    return hs[1:], last_state(hs, lengths), (x, hs, params, nonlinearity, lengths)


def backward(dout, dh_T, cache, input_grad=True):
    """dout (T, B, H) gradient on every output, dh_T (B, H) on the final state or None (zeros)
    -> dx (T, B, D), dh0 (B, H), dparams. Without ``input_grad`` dx is None, not computed (the
    input is data: no gradient flows into it)."""
    x, hs, params, nonlinearity, lengths = cache
    da, dh0 = _kernels.rnn_backward_loop(
        dout, dh_T, hs, params["weight_hh"], nonlinearity == "relu", lengths
    )  # da (T, B, H), zero past each length
    dx, dparams = _kernels.sequence_grads(x, hs[:-1], da, da, params, input_grad)
    return dx, dh0, dparams
