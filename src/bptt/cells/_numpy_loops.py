"""The time loops of the three cells in plain NumPy: the reference the fast path is checked against.

Only what must be sequential lives here: the recurrent matrix product and the element-wise gate
math of each step. The input projection before the loop and the weight gradients after it are
single large matrix products (``_common``, re-exported here as this backend's).

Variable lengths: every loop takes ``lengths`` (B,) ints in 1..T, or None (every row runs all T
steps). Row b then runs its first lengths[b] steps only: past them its states, gates and
gradients are zero, and the backward starts it at its own last step (dh_T enters there, the
``dout`` past it is ignored); the final state of row b is ``hs[lengths[b], b]``.

Dimensions: T time, B batch, H hidden. Gate order: LSTM i, f, g, o; GRU r, z, n.
"""

import numpy as np

from ._common import input_projection, sequence_grads, sigmoid  # noqa: F401 - the backend's products


def _active(t, lengths):
    """(B, 1) bool: the rows still running at step t, or None when every row runs."""
    return None if lengths is None else (t < lengths)[:, None]


def _keep(active, new, old):
    """new on the running rows, old on the others (everything when active is None)."""
    return new if active is None else np.where(active, new, old)


def matmul(a, b):
    """a @ b for 2-D arrays (the large products of the layers around the cells, e.g. the head)."""
    return a @ b


# ----------------------------------------------------------------------------- RNN
def rnn_forward_loop(xw, h0, W_hh, relu, lengths=None):
    """xw (T, B, H) input projection with both biases, h0 (B, H) -> hs (T+1, B, H)."""
    T, B, H = xw.shape
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    hs[0] = h0
    for t in range(T):
        a = xw[t] + hs[t] @ W_hh.T
        hs[t + 1] = _keep(_active(t, lengths), np.maximum(a, 0.0) if relu else np.tanh(a), 0.0)
    return hs


def _zeros_if_none(ds_T, dout):
    """A final-state gradient, or zeros (B, H) of dout's dtype for None."""
    return np.zeros(dout.shape[1:], dout.dtype) if ds_T is None else ds_T


def rnn_backward_loop(dout, dh_T, hs, W_hh, relu, lengths=None):
    """dh_T (B, H) or None (zeros) -> da (T, B, H) gradient on the pre-activations, dh0 (B, H)."""
    T = dout.shape[0]
    da = np.empty_like(dout)
    dh_next = _zeros_if_none(dh_T, dout)
    for t in range(T - 1, -1, -1):
        run = _active(t, lengths)
        dh = dout[t] + dh_next
        h = hs[t + 1]
        da[t] = _keep(run, dh * (h > 0) if relu else dh * (1.0 - h * h), 0.0)
        dh_next = _keep(run, da[t] @ W_hh, dh_next)
    return da, dh_next


# ----------------------------------------------------------------------------- LSTM
def lstm_forward_loop(xw, h0, c0, W_hh, lengths=None):
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
        run = _active(t, lengths)
        cs[t + 1] = _keep(run, f * cs[t] + i * g, 0.0)
        tcs[t] = np.tanh(cs[t + 1])
        hs[t + 1] = o * tcs[t]
        gates[t] = _keep(run, np.concatenate([i, f, g, o], axis=1), 0.0)
    return hs, cs, gates, tcs


def lstm_forward_x(x, h0, c0, params, lengths=None):
    """The input projection and the forward loop in one: x (T, B, D) -> as ``lstm_forward_loop``.
    Here the two calls one after the other; the compiled loops may do the projection step by
    step inside the loop instead."""
    xw = input_projection(x, params, with_hh_bias=True)  # (T, B, 4H)
    return lstm_forward_loop(xw, h0, c0, params["weight_hh"], lengths)


def lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, lengths=None):
    """dh_T, dc_T (B, H) or None (zeros) -> da (T, B, 4H) gradient on the pre-activations
    a = [a_i, a_f, a_g, a_o], dh0, dc0 (B, H).

    The step of ``lstm.step_backward`` with di, df, dg, do fused into the lines of da."""
    T, B, H = dout.shape
    da = np.empty_like(gates)
    dh_next, dc_next = _zeros_if_none(dh_T, dout), _zeros_if_none(dc_T, dout)
    for t in range(T - 1, -1, -1):
        run = _active(t, lengths)
        i, f, g, o = (gates[t][:, k * H : (k + 1) * H] for k in range(4))
        dh = dout[t] + dh_next
        dc = dc_next + dh * o * (1.0 - tcs[t] * tcs[t])
        da[t, :, :H] = dc * g * i * (1.0 - i)  # di * sigma'
        da[t, :, H : 2 * H] = dc * cs[t] * f * (1.0 - f)  # df * sigma'
        da[t, :, 2 * H : 3 * H] = dc * i * (1.0 - g * g)  # dg * tanh'
        da[t, :, 3 * H :] = dh * tcs[t] * o * (1.0 - o)  # do * sigma'
        da[t] = _keep(run, da[t], 0.0)
        dh_next = _keep(run, da[t] @ W_hh, dh_next)
        dc_next = _keep(run, dc * f, dc_next)
    return da, dh_next, dc_next


# ----------------------------------------------------------------------------- GRU
def lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths=None, input_grad=True):
    """The backward loop and the products after it in one: ``lstm_backward_loop``, then
    ``sequence_grads`` -> dx (T, B, D) (None when not ``input_grad``), dh0, dc0 (B, H), dparams.
    The compiled loops may take dx and the bias gradient step by step inside the loop instead."""
    da, dh0, dc0 = lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, params["weight_hh"], lengths)
    dx, dparams = sequence_grads(x, hs[:-1], da, da, params, input_grad)
    return dx, dh0, dc0, dparams


def gru_forward_loop(xw, h0, W_hh, b_hh, lengths=None):
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
        run = _active(t, lengths)
        ghn[t] = _keep(run, gh[:, 2 * H :], 0.0)
        n = np.tanh(xw[t, :, 2 * H :] + r * gh[:, 2 * H :])
        hs[t + 1] = _keep(run, (1.0 - z) * n + z * hs[t], 0.0)
        gates[t] = _keep(run, np.concatenate([r, z, n], axis=1), 0.0)
    return hs, gates, ghn


def gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh, lengths=None):
    """dh_T (B, H) or None (zeros) -> dgx (T, B, 3H) on the input-side pre-activations, dghn (T, B, H) on ghn, dh0 (B, H).

    The gradient on the recurrent side, dgh = [da_r, da_z, dan * r], equals dgx but in its n
    part, so only that part (dghn = dan * r) is stored: a third of the memory of a full dgh."""
    T, B, H = dout.shape
    dgx = np.empty_like(gates)
    dghn = np.empty_like(ghn)
    dh_next = _zeros_if_none(dh_T, dout)
    for t in range(T - 1, -1, -1):
        run = _active(t, lengths)
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
        dgx[t] = _keep(run, dgx[t], 0.0)
        dghn[t] = _keep(run, dghn[t], 0.0)
        dgh = np.concatenate([dgx[t, :, : 2 * H], dghn[t]], axis=1)  # (B, 3H)
        dh_next = _keep(run, dh * z + dgh @ W_hh, dh_next)
    return dgx, dghn, dh_next


# ----------------------------------------------------------------------------- LSTM with projections
def lstmp_forward_loop(xw, h0, c0, W_hh, W_hr, lengths=None):
    """LSTM whose output is projected, h_t = W_hr (o * tanh(c_t)) (torch's proj_size P < H).
    xw (T, B, 4H), h0 (B, P), c0 (B, H), W_hh (4H, P), W_hr (P, H)
    -> hs (T+1, B, P), cs (T+1, B, H), gates (T, B, 4H) activated i, f, g, o, tcs (T, B, H)."""
    T, B, H4 = xw.shape
    H, P = H4 // 4, W_hr.shape[0]
    hs = np.empty((T + 1, B, P), dtype=xw.dtype)
    cs = np.empty((T + 1, B, H), dtype=xw.dtype)
    gates = np.empty_like(xw)
    tcs = np.empty((T, B, H), dtype=xw.dtype)
    hs[0], cs[0] = h0, c0
    for t in range(T):
        run = _active(t, lengths)
        a = xw[t] + hs[t] @ W_hh.T  # (B, 4H) pre-activations
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H]), sigmoid(a[:, 3 * H :])
        g = np.tanh(a[:, 2 * H : 3 * H])
        cs[t + 1] = _keep(run, f * cs[t] + i * g, 0.0)
        tcs[t] = np.tanh(cs[t + 1])
        gates[t] = _keep(run, np.concatenate([i, f, g, o], axis=1), 0.0)
        hs[t + 1] = (gates[t, :, 3 * H :] * tcs[t]) @ W_hr.T  # (B, P); zero past a length
    return hs, cs, gates, tcs


def lstmp_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr, lengths=None):
    """dout (T, B, P), dh_T (B, P) and dc_T (B, H) or None (zeros) -> da (T, B, 4H) on the
    pre-activations, dhs (T, B, P) the total gradient reaching each h_t (for dW_hr), dh0 (B, P),
    dc0 (B, H)."""
    T, B, P = dout.shape
    H = cs.shape[2]
    da = np.empty_like(gates)
    dhs = np.empty_like(dout)
    dh_next = _zeros_if_none(dh_T, dout)  # (B, P)
    dc_next = np.zeros((B, H), dout.dtype) if dc_T is None else dc_T
    for t in range(T - 1, -1, -1):
        run = _active(t, lengths)
        i, f, g, o = (gates[t][:, k * H : (k + 1) * H] for k in range(4))
        dh = dout[t] + dh_next  # (B, P)
        dm = dh @ W_hr  # (B, H): the gradient on o * tanh(c), through the projection
        dc = dc_next + dm * o * (1.0 - tcs[t] * tcs[t])
        da[t, :, :H] = dc * g * i * (1.0 - i)
        da[t, :, H : 2 * H] = dc * cs[t] * f * (1.0 - f)
        da[t, :, 2 * H : 3 * H] = dc * i * (1.0 - g * g)
        da[t, :, 3 * H :] = dm * tcs[t] * o * (1.0 - o)
        da[t] = _keep(run, da[t], 0.0)
        dhs[t] = _keep(run, dh, 0.0)
        dh_next = _keep(run, da[t] @ W_hh, dh_next)
        dc_next = _keep(run, dc * f, dc_next)
    return da, dhs, dh_next, dc_next
