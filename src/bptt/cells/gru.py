"""GRU cell exactly as PyTorch defines it, gate order r, z, n.

    r = sigmoid(W_ir x + b_ir + W_hr h_{t-1} + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h_{t-1} + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h_{t-1} + b_hn))      <- r multiplies the recurrent part
    h_t = (1 - z) * n + z * h_{t-1}                              incl. its bias, after the product

Backward, with dh the total gradient reaching h_t and ghn = W_hn h_{t-1} + b_hn:

    dan = dh * (1 - z) * (1 - n^2)          da_z = dh * (h_{t-1} - n) * z(1-z)
    da_r = dan * ghn * r(1-r)
    input side  dgx = [da_r, da_z, dan]      recurrent side dgh = [da_r, da_z, dan * r]
    dh_{t-1} = dh * z + dgh W_hh             dx_t = dgx W_ih

Dimensions: T time, B batch, D input, H hidden.
"""

import numpy as np

from . import _kernels
from ._common import last_state, sigmoid, step_grads

GATES = 3


def step_forward(x_t, h_prev, params):
    """x_t (B, D), h_prev (B, H) -> h (B, H), cache."""
    H = h_prev.shape[1]
    gx = x_t @ params["weight_ih"].T  # (B, 3H)
    gh = h_prev @ params["weight_hh"].T  # (B, 3H)
    if "bias_ih" in params:
        gx = gx + params["bias_ih"]
        gh = gh + params["bias_hh"]
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
    ghn = gh[:, 2 * H :]
    n = np.tanh(gx[:, 2 * H :] + r * ghn)
    h = (1.0 - z) * n + z * h_prev
    return h, (x_t, h_prev, r, z, n, ghn, params)


def step_backward(dh, cache):
    """dh (B, H) -> dx_t (B, D), dh_prev (B, H), dparams."""
    x_t, h_prev, r, z, n, ghn, params = cache
    dn = dh * (1.0 - z)
    dz = dh * (h_prev - n)
    dan = dn * (1.0 - n * n)
    dar = dan * ghn * r * (1.0 - r)
    daz = dz * z * (1.0 - z)
    dgx = np.concatenate([dar, daz, dan], axis=1)  # (B, 3H)
    dgh = np.concatenate([dar, daz, dan * r], axis=1)  # (B, 3H)
    dx_t, dparams = step_grads(x_t, h_prev, dgx, dgh, params)
    dh_prev = dh * z + dgh @ params["weight_hh"]
    return dx_t, dh_prev, dparams


def forward(x, h0, params, lengths=None):
    """x (T, B, D), h0 (B, H) -> out (T, B, H), h_T (B, H), cache.
    lengths (B,) or None: as in ``rnn.forward``."""
    xw = _kernels.input_projection(x, params, with_hh_bias=False)  # (T, B, 3H), b_hh stays inside
    hs, gates, ghn = _kernels.gru_forward_loop(xw, h0, params["weight_hh"], params.get("bias_hh"), lengths)
    # hs (T+1, B, H); gates (T, B, 3H) activated r, z, n; ghn (T, B, H)
    return hs[1:], last_state(hs, lengths), (x, hs, gates, ghn, params, lengths)


def backward(dout, dh_T, cache):
    """dout (T, B, H), dh_T (B, H) -> dx (T, B, D), dh0 (B, H), dparams."""
    x, hs, gates, ghn, params, lengths = cache
    dgx, dghn, dh0 = _kernels.gru_backward_loop(dout, dh_T, hs, gates, ghn, params["weight_hh"], lengths)
    # dgx (T, B, 3H); dghn (T, B, H): dgh's n part (its r, z parts are dgx's)
    dx, dparams = _kernels.sequence_grads(x, hs[:-1], dgx, dghn, params)
    return dx, dh0, dparams
