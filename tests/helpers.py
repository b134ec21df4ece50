"""Shared test helpers: random data, a scalar loss over a layer's outputs, and the torch twin."""

import numpy as np

import bptt

LAYERS = {"rnn": bptt.RNN, "lstm": bptt.LSTM, "gru": bptt.GRU}


def make_layer(kind, D, H, dtype="float64", seed=0, **kw):
    """kind: 'rnn' | 'rnn_relu' | 'lstm' | 'gru'. Biases are random (nonzero) by construction."""
    if kind == "rnn_relu":
        return bptt.RNN(D, H, nonlinearity="relu", dtype=dtype, seed=seed, **kw)
    return LAYERS[kind](D, H, dtype=dtype, seed=seed, **kw)


def state_arrays(state):
    """h or (h, c) -> list."""
    return list(state) if isinstance(state, tuple) else [state]


def random_state(layer, B, rng, batched=True):
    """h (and c) (L*K, B, H); h (L*K, B, P) for an LSTM with projections."""
    def mk(size):
        shape = (layer.num_layers * layer.num_directions, B, size)
        return rng.standard_normal(shape if batched else (shape[0], shape[2])) * 0.5

    if isinstance(layer, bptt.LSTM):
        return (mk(layer.proj_size or layer.hidden_size), mk(layer.hidden_size))
    return mk(layer.hidden_size)


def layer_loss_fn(layer, x, state0, rng, reseed_dropout=None):
    """A scalar loss L = sum(out * R) + sum(state_T * S) so that gradients arrive on every
    output and on the final state. Returns fn() -> (loss, grads) for bptt.gradcheck, with grads
    keyed 'x', 'h0' ('c0') and the layer's parameter names."""
    out0, sT0 = layer.forward(x, state0)
    R = rng.standard_normal(out0.shape)
    S = [rng.standard_normal(s.shape) for s in state_arrays(sT0)]

    def fn():
        if reseed_dropout is not None:
            layer.rng = np.random.default_rng(reseed_dropout)
        out, sT = layer.forward(x, state0)
        loss = float((out * R).sum() + sum((s * w).sum() for s, w in zip(state_arrays(sT), S)))
        layer.zero_grad()
        dS = tuple(S) if len(S) == 2 else S[0]
        dx, ds0 = layer.backward(R, dS)
        grads = {"x": dx, **{k: v.copy() for k, v in layer.grads.items()}}
        for name, g in zip(("h0", "c0"), state_arrays(ds0)):
            grads[name] = g
        return loss, grads

    return fn


def wrt_of(layer, x, state0):
    wrt = {"x": x, **layer.params}
    for name, s in zip(("h0", "c0"), state_arrays(state0)):
        wrt[name] = s
    return wrt
