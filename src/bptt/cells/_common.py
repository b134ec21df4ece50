"""Pieces the three cells share: activations and the two big matrix products of a sequence.

Dimensions: T time, B batch, D input, H hidden, G gates (1 RNN, 4 LSTM, 3 GRU).
"""

import numpy as np


def sigmoid(x):
    """Logistic function in the form that cannot overflow: 1/(1+e^-x) = (1 + tanh(x/2)) / 2."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def last_state(hs, lengths):
    """hs (T+1, B, H) with hs[0] the initial state -> each row's state after its last step
    (B, H): hs[T] when lengths is None, else hs[lengths[b], b] (a copy)."""
    if lengths is None:
        return hs[-1]
    return hs[lengths, np.arange(hs.shape[1])]


def input_projection(x, params, with_hh_bias):
    """x @ W_ih^T + b_ih (+ b_hh) for all T steps at once: (T, B, D) -> (T, B, G*H)."""
    T, B, D = x.shape
    xw = (x.reshape(T * B, D) @ params["weight_ih"].T).reshape(T, B, -1)
    if "bias_ih" in params:
        xw += params["bias_ih"]
        if with_hh_bias:
            xw += params["bias_hh"]
    return xw


def sequence_grads(x, h_prev, dgx, dgh, params, input_grad=True):
    """The weight gradients of a whole sequence as matrix products after the time loop.

    x (T, B, D) inputs; h_prev (T, B, H) the state entering each step; dgx (T, B, G*H) the
    gradient on the input-side pre-activations, dgh on the recurrent side: the same array for RNN
    and LSTM; for GRU, where the two differ only in the n gate, dgh is that last part alone
    (T, B, H) and the rest is taken from dgx. Returns (dx, dparams); dx is None when not
    ``input_grad`` (its product, dgx W_ih, is skipped).
    """
    T, B, D = x.shape
    GH = dgx.shape[-1]
    if dgh.shape[-1] != GH:  # GRU: dgh = [dgx's r and z parts | dghn]
        dgh = np.concatenate([dgx[..., : GH - dgh.shape[-1]], dgh], axis=-1)
    dgx2 = dgx.reshape(T * B, GH)
    dgh2 = dgh.reshape(T * B, GH)
    dparams = {
        "weight_ih": dgx2.T @ x.reshape(T * B, D),  # (G*H, D)
        "weight_hh": dgh2.T @ h_prev.reshape(T * B, -1),  # (G*H, H)
    }
    if "bias_ih" in params:
        dparams["bias_ih"] = dgx2.sum(axis=0)
        # RNN and LSTM pass the same array twice: sum it once (one pass less over (T, B, G*H))
        dparams["bias_hh"] = dparams["bias_ih"].copy() if dgh is dgx else dgh2.sum(axis=0)
    dx = (dgx2 @ params["weight_ih"]).reshape(T, B, D) if input_grad else None
    return dx, dparams


def step_grads(x_t, h_prev, dgx, dgh, params):
    """The same as ``sequence_grads`` for one step: x_t (B, D), h_prev (B, H), dg* (B, G*H)."""
    dx, dparams = sequence_grads(x_t[None], h_prev[None], dgx[None], dgh[None], params)
    return dx[0], dparams
