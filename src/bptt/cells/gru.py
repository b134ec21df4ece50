"""GRU cell exactly as PyTorch defines it, gate order r, z, n. docs/derivations.md section 5.

Row vectors, as in the code and the doc: x_t (B, D), h_t (B, H), one sample per row;
W_ih (3H, D) = [W_ir; W_iz; W_in] and W_hh (3H, H) = [W_hr; W_hz; W_hn], so a product with a
weight is x W^T. ``z`` is the update gate; ``a_r``, ``a_z``, ``a_n`` are pre-activations.

    gx = x_t W_ih^T + b_ih       gh = h_{t-1} W_hh^T + b_hh      (B, 3H) each
    r = sigmoid(gx_r + gh_r)     z = sigmoid(gx_z + gh_z)
    ghn = gh_n = h_{t-1} W_hn^T + b_hn
    n = tanh(gx_n + r * ghn)             <- r multiplies the recurrent part, bias included
    h_t = (1 - z) * n + z * h_{t-1}

Backward, with dh the total gradient reaching h_t:

    dn = dh * (1 - z)      dz = dh * (h_{t-1} - n)
    dan = dn * (1 - n^2)   dar = dan * ghn * r(1-r)   daz = dz * z(1-z)
    input side  dgx = [dar, daz, dan]      recurrent side dgh = [dar, daz, dan * r]
    dh_{t-1} = dh * z + dgh W_hh             dx_t = dgx W_ih

``step_forward``/``step_backward`` are these lines one for one; ``forward``/``backward`` run the
same equations over a sequence through ``_kernels`` (the loops fuse dn, dz into dan, daz).
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


def backward(dout, dh_T, cache, input_grad=True):
    """dout (T, B, H), dh_T (B, H) or None (zeros) -> dx (T, B, D), dh0 (B, H), dparams; dx None
    without ``input_grad``, as in ``rnn.backward``."""
    x, hs, gates, ghn, params, lengths = cache
    dgx, dghn, dh0 = _kernels.gru_backward_loop(dout, dh_T, hs, gates, ghn, params["weight_hh"], lengths)
    # dgx (T, B, 3H); dghn (T, B, H): dgh's n part (its r, z parts are dgx's)
    dx, dparams = _kernels.sequence_grads(x, hs[:-1], dgx, dghn, params, input_grad)
    return dx, dh0, dparams
