"""The time loops of the three cells in plain NumPy: the reference the fast path is checked against.

Only what must be sequential lives here: the recurrent matrix product and the element-wise gate
math of each step. The input projection before the loop and the weight gradients after it are
single large matrix products (``_common``, re-exported here as this backend's).

Dimensions: T time, B batch, H hidden. Gate order: LSTM i, f, g, o; GRU r, z, n.
"""

import numpy as np

from ._common import input_projection, sequence_grads, sigmoid  # noqa: F401 - the backend's products


def matmul(a, b):
    """a @ b for 2-D arrays (the large products of the layers around the cells, e.g. the head)."""
    return a @ b


# ----------------------------------------------------------------------------- RNN
def rnn_forward_loop(xw, h0, W_hh, relu):
    """xw (T, B, H) input projection with both biases, h0 (B, H) -> hs (T+1, B, H)."""
    T, B, H = xw.shape
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    hs[0] = h0
    for t in range(T):
        a = xw[t] + hs[t] @ W_hh.T
        hs[t + 1] = np.maximum(a, 0.0) if relu else np.tanh(a)
    return hs


def _zeros_if_none(ds_T, dout):
    """A final-state gradient, or zeros (B, H) of dout's dtype for None."""
    return np.zeros(dout.shape[1:], dout.dtype) if ds_T is None else ds_T


def rnn_backward_loop(dout, dh_T, hs, W_hh, relu):
    """dh_T (B, H) or None (zeros) -> da (T, B, H) gradient on the pre-activations, dh0 (B, H)."""
    T = dout.shape[0]
    da = np.empty_like(dout)
    dh_next = _zeros_if_none(dh_T, dout)
    for t in range(T - 1, -1, -1):
        dh = dout[t] + dh_next
        h = hs[t + 1]
        da[t] = dh * (h > 0) if relu else dh * (1.0 - h * h)
        dh_next = da[t] @ W_hh
    return da, dh_next


# ----------------------------------------------------------------------------- LSTM
def lstm_forward_loop(xw, h0, c0, W_hh):
    """xw (T, B, 4H) -> hs, cs (T+1, B, H), gates (T, B, 4H) activated i, f, g, o, tcs (T, B, H)."""
    T, B, H4 = xw.shape
    H = H4 // 4
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    cs = np.empty((T + 1, B, H), dtype=xw.dtype)
    gates = np.empty_like(xw)
    tcs = np.empty((T, B, H), dtype=xw.dtype)
    hs[0], cs[0] = h0, c0
    for t in range(T):
        a = xw[t] + hs[t] @ W_hh.T  # (B, 4H) pre-activations a_i, a_f, a_g, a_o
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        o = sigmoid(a[:, 3 * H :])
        cs[t + 1] = f * cs[t] + i * g
        tcs[t] = np.tanh(cs[t + 1])
        hs[t + 1] = o * tcs[t]
        gates[t] = np.concatenate([i, f, g, o], axis=1)
    return hs, cs, gates, tcs


def lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh):
    """dh_T, dc_T (B, H) or None (zeros) -> da (T, B, 4H) gradient on the pre-activations
    a = [a_i, a_f, a_g, a_o], dh0, dc0 (B, H).

    The step of ``lstm.step_backward`` with di, df, dg, do fused into the lines of da."""
    T, B, H = dout.shape
    da = np.empty_like(gates)
    dh_next, dc_next = _zeros_if_none(dh_T, dout), _zeros_if_none(dc_T, dout)
    for t in range(T - 1, -1, -1):
        i, f, g, o = (gates[t][:, k * H : (k + 1) * H] for k in range(4))
        dh = dout[t] + dh_next
        dc = dc_next + dh * o * (1.0 - tcs[t] * tcs[t])
        da[t, :, :H] = dc * g * i * (1.0 - i)  # di * sigma'
        da[t, :, H : 2 * H] = dc * cs[t] * f * (1.0 - f)  # df * sigma'
        da[t, :, 2 * H : 3 * H] = dc * i * (1.0 - g * g)  # dg * tanh'
        da[t, :, 3 * H :] = dh * tcs[t] * o * (1.0 - o)  # do * sigma'
        dh_next = da[t] @ W_hh
        dc_next = dc * f
    return da, dh_next, dc_next


# ----------------------------------------------------------------------------- GRU
def gru_forward_loop(xw, h0, W_hh, b_hh):
    """xw (T, B, 3H) = x W_ih^T + b_ih; b_hh (3H,) or None
    -> hs (T+1, B, H), gates (T, B, 3H) activated r, z, n, ghn (T, B, H) = W_hn h + b_hn."""
    T, B, H3 = xw.shape
    H = H3 // 3
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    gates = np.empty_like(xw)
    ghn = np.empty((T, B, H), dtype=xw.dtype)
    hs[0] = h0
    for t in range(T):
        gh = hs[t] @ W_hh.T  # (B, 3H)
        if b_hh is not None:
            gh = gh + b_hh
        r = sigmoid(xw[t, :, :H] + gh[:, :H])
        z = sigmoid(xw[t, :, H : 2 * H] + gh[:, H : 2 * H])
        ghn[t] = gh[:, 2 * H :]
        n = np.tanh(xw[t, :, 2 * H :] + r * ghn[t])
        hs[t + 1] = (1.0 - z) * n + z * hs[t]
        gates[t] = np.concatenate([r, z, n], axis=1)
    return hs, gates, ghn


def gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh):
    """dh_T (B, H) or None (zeros) -> dgx (T, B, 3H) on the input-side pre-activations, dghn (T, B, H) on ghn, dh0 (B, H).

    The gradient on the recurrent side, dgh = [da_r, da_z, dan * r], equals dgx but in its n
    part, so only that part (dghn = dan * r) is stored: a third of the memory of a full dgh."""
    T, B, H = dout.shape
    dgx = np.empty_like(gates)
    dghn = np.empty_like(ghn)
    dh_next = _zeros_if_none(dh_T, dout)
    for t in range(T - 1, -1, -1):
        r, z, n = (gates[t][:, k * H : (k + 1) * H] for k in range(3))
        h_prev = hs[t]
        dh = dout[t] + dh_next
        dan = dh * (1.0 - z) * (1.0 - n * n)  # through n = tanh(a_n)
        dar = dan * ghn[t] * r * (1.0 - r)  # a_n contains r * ghn
        daz = dh * (h_prev - n) * z * (1.0 - z)
        dgx[t, :, :H] = dar
        dgx[t, :, H : 2 * H] = daz
        dgx[t, :, 2 * H :] = dan
        dghn[t] = dan * r  # the reset gate scales the recurrent part only
        dgh = np.concatenate([dar, daz, dghn[t]], axis=1)  # (B, 3H)
        dh_next = dh * z + dgh @ W_hh
    return dgx, dghn, dh_next
