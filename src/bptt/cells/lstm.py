"""LSTM cell, PyTorch's gate order i, f, g, o. docs/derivations.md section 4.

Row vectors, as in the code and the doc: x_t (B, D), h_t and c_t (B, H), one sample per row;
W_ih (4H, D) and W_hh (4H, H) under PyTorch's names, so a product with a weight is x W^T.
``a`` is the pre-activation (as in the RNN and GRU cells; in the GRU ``z`` is the update gate):

    a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          (B, 4H) = [a_i | a_f | a_g | a_o]
    i = sigmoid(a_i)   f = sigmoid(a_f)   g = tanh(a_g)   o = sigmoid(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

Backward, with dh the total gradient reaching h_t and dc_next the one reaching c_t from step t+1:

    do   = dh * tanh(c_t)
    dc   = dc_next + dh * o * (1 - tanh(c_t)^2)
    di   = dc * g     df = dc * c_{t-1}     dg = dc * i
    da_i = di * i(1-i)   da_f = df * f(1-f)   da_g = dg * (1-g^2)   da_o = do * o(1-o)
    dc_{t-1} = dc * f          (the additive path: scaled by the forget gate only)
    dh_{t-1} = da W_hh          dx_t = da W_ih

``step_forward``/``step_backward`` are these lines one for one; ``forward``/``backward`` run the
same equations over a sequence through ``_kernels``, whose loops fuse di, df, dg, do into the
lines of da.

With a projection (torch's ``proj_size`` P < H, parameter ``weight_hr`` (P, H)) the state h is
projected: m_t = o * tanh(c_t) (H), h_t = W_hr m_t (P), and W_hh is (4H, P). Backward:

    dm = dh W_hr       dW_hr += dh^T m       and the rest as above with dm in the place of dh
    (do = dm * tanh(c_t), dc = dc_next + dm * o * (1 - tanh(c_t)^2)), dh_{t-1} = da W_hh (P)

Dimensions: T time, B batch, D input, H hidden, P projection.
"""

import numpy as np

from . import _kernels
from ._common import last_state, sigmoid, step_grads

GATES = 4


def step_forward(x_t, state_prev, params):
    """x_t (B, D), state_prev (h, c) each (B, H) -> (h, c), cache."""
    h_prev, c_prev = state_prev
    H = c_prev.shape[1]
    a = x_t @ params["weight_ih"].T + h_prev @ params["weight_hh"].T  # (B, 4H) pre-activations
    if "bias_ih" in params:
        a = a + params["bias_ih"] + params["bias_hh"]
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H : 2 * H])
    g = np.tanh(a[:, 2 * H : 3 * H])
    o = sigmoid(a[:, 3 * H :])
    c = f * c_prev + i * g
    tc = np.tanh(c)
    h = o * tc
    if "weight_hr" in params:  # projection: h = W_hr (o * tanh(c)), (B, P)
        h = h @ params["weight_hr"].T
    return (h, c), (x_t, h_prev, c_prev, i, f, g, o, tc, params)


def step_backward(dstate, cache):
    """dstate (dh, dc) each (B, H) -> dx_t (B, D), (dh_prev, dc_prev), dparams."""
    dh, dc_next = dstate
    x_t, h_prev, c_prev, i, f, g, o, tc, params = cache
    dW_hr = None
    if "weight_hr" in params:  # through the projection: dh (B, P) -> dm (B, H)
        dW_hr = dh.T @ (o * tc)  # (P, H)
        dh = dh @ params["weight_hr"]
    do = dh * tc
    dc = dc_next + dh * o * (1.0 - tc * tc)
    di = dc * g
    df = dc * c_prev
    dg = dc * i
    da = np.concatenate(
        [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], axis=1
    )  # (B, 4H) = [da_i | da_f | da_g | da_o]
    dx_t, dparams = step_grads(x_t, h_prev, da, da, params)
    dh_prev = da @ params["weight_hh"]
    dc_prev = dc * f
    if dW_hr is not None:
        dparams["weight_hr"] = dW_hr
    return dx_t, (dh_prev, dc_prev), dparams


def forward(x, state0, params, lengths=None):
    """x (T, B, D), state0 (h0, c0) each (B, H) -> out (T, B, H), (h_T, c_T), cache.
    lengths (B,) or None: as in ``rnn.forward``."""
    h0, c0 = state0
    if "weight_hr" in params:  # projections: h = W_hr m, m = o * tanh(c)
        xw = _kernels.input_projection(x, params, with_hh_bias=True)  # (T, B, 4H)
        hs, cs, gates, tcs = _kernels.lstmp_forward_loop(
            xw, h0, c0, params["weight_hh"], params["weight_hr"], lengths
        )  # hs (T+1, B, P)
    else:  # x W_ih^T + b_ih + b_hh, then the loop (compiled: the projection inside the loop)
        hs, cs, gates, tcs = _kernels.lstm_forward_x(x, h0, c0, params, lengths)
    # hs, cs (T+1, B, H) with [0] the initial state; gates (T, B, 4H); tcs = tanh(cs[1:])
    state_T = (last_state(hs, lengths), last_state(cs, lengths))
    return hs[1:], state_T, (x, hs, cs, gates, tcs, params, lengths)


def backward(dout, dstate_T, cache, input_grad=True):
    """dout (T, B, H), dstate_T (dh_T, dc_T) -> dx (T, B, D), (dh0, dc0), dparams.

    dstate_T, or either of its parts, may be None: zeros. Without ``input_grad`` dx is None, not
    computed (as in ``rnn.backward``)."""
    x, hs, cs, gates, tcs, params, lengths = cache
    dh_T, dc_T = (None, None) if dstate_T is None else dstate_T
    if "weight_hr" in params:
        dh_T = np.zeros(hs.shape[1:], hs.dtype) if dh_T is None else dh_T
        dc_T = np.zeros(cs.shape[1:], cs.dtype) if dc_T is None else dc_T
        return _backward_proj(dout, dh_T, dc_T, cache, input_grad)
    # the loop (da (T, B, 4H) on the pre-activations, zero past each length), then dx = da W_ih
    # and the weight gradients from da (compiled: dx and the bias gradient inside the loop)
    dx, dh0, dc0, dparams = _kernels.lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths,
                                                     input_grad)
    return dx, (dh0, dc0), dparams


def _backward_proj(dout, dh_T, dc_T, cache, input_grad):
    """``backward`` with projections: dout (T, B, P), dh_T (B, P), dc_T (B, H)."""
    x, hs, cs, gates, tcs, params, lengths = cache
    T, B, H = tcs.shape
    da, dhs, dh0, dc0 = _kernels.lstmp_backward_loop(
        dout, dh_T, dc_T, cs, gates, tcs, params["weight_hh"], params["weight_hr"], lengths
    )  # da (T, B, 4H), dhs (T, B, P)
    dx, dparams = _kernels.sequence_grads(x, hs[:-1], da, da, params, input_grad)
    m = gates[:, :, 3 * H :] * tcs  # (T, B, H) the projected vector o * tanh(c)
    dparams["weight_hr"] = dhs.reshape(T * B, -1).T @ m.reshape(T * B, H)  # (P, H)
    return dx, (dh0, dc0), dparams
