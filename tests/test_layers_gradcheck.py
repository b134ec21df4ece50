"""Finite differences for whole layers: every parameter, the input and the initial states, with
a gradient arriving on every output and on the final state."""

import numpy as np
import pytest

import bptt
from helpers import layer_loss_fn, make_layer, random_state, wrt_of

KINDS = ["rnn", "rnn_relu", "lstm", "gru"]


def run_check(layer, x, state0, rng, reseed_dropout=None):
    fn = layer_loss_fn(layer, x, state0, rng, reseed_dropout)
    return bptt.gradcheck(fn, wrt_of(layer, x, state0), tol=1e-6, raise_on_failure=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_layer_gradcheck(kind, num_layers, bidirectional, batch_first):
    rng = np.random.default_rng(num_layers * 4 + bidirectional * 2 + batch_first)
    T, B, D, H = 4, 2, 3, 3
    layer = make_layer(kind, D, H, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first, seed=1)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
    run_check(layer, x, random_state(layer, B, rng), rng)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T,B", [(1, 1), (1, 3), (5, 1)])
def test_layer_gradcheck_edge_sizes(kind, T, B):
    rng = np.random.default_rng(10 + T + B)
    layer = make_layer(kind, 2, 3, num_layers=2, bidirectional=True, seed=2)
    x = rng.standard_normal((T, B, 2))
    run_check(layer, x, random_state(layer, B, rng), rng)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_gradcheck_unbatched(kind):
    rng = np.random.default_rng(20)
    layer = make_layer(kind, 3, 4, num_layers=2, seed=3)
    x = rng.standard_normal((5, 3))
    run_check(layer, x, random_state(layer, 1, rng, batched=False), rng)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_gradcheck_no_bias(kind):
    rng = np.random.default_rng(21)
    layer = make_layer(kind, 3, 4, num_layers=2, bias=False, seed=4)
    assert not any(k.startswith("bias") for k in layer.params)
    x = rng.standard_normal((4, 2, 3))
    run_check(layer, x, random_state(layer, 2, rng), rng)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_gradcheck_with_dropout_fixed_mask(kind):
    rng = np.random.default_rng(22)
    layer = make_layer(kind, 3, 4, num_layers=3, bidirectional=True, dropout=0.4, seed=5)
    x = rng.standard_normal((4, 2, 3))
    run_check(layer, x, random_state(layer, 2, rng), rng, reseed_dropout=7)


def test_dropout_is_applied_between_layers_only_and_reproducible():
    rng = np.random.default_rng(23)
    x = rng.standard_normal((6, 4, 3))
    a = bptt.LSTM(3, 5, num_layers=2, dropout=0.5, dtype="float64", seed=9)
    b = bptt.LSTM(3, 5, num_layers=2, dropout=0.5, dtype="float64", seed=9)
    out_a, _ = a.forward(x)
    out_b, _ = b.forward(x)
    np.testing.assert_array_equal(out_a, out_b)  # same seed, same masks
    out_a2, _ = a.forward(x)
    assert not np.allclose(out_a, out_a2)  # a fresh mask on the next call
    no_dropout = bptt.LSTM(3, 5, num_layers=2, dropout=0.0, dtype="float64", seed=9)  # same weights
    want, _ = no_dropout.forward(x)
    assert not np.allclose(out_a, want)  # training mode drops
    # one layer: no dropout at all (not after the last layer)
    c = bptt.LSTM(3, 5, num_layers=1, dropout=0.5, dtype="float64", seed=9)
    c1 = bptt.LSTM(3, 5, num_layers=1, dropout=0.0, dtype="float64", seed=9)
    np.testing.assert_array_equal(c.forward(x)[0], c1.forward(x)[0])
    # eval mode switches it off: the output of the same layer without dropout, every time
    a.eval()
    np.testing.assert_array_equal(a.forward(x)[0], want)
    np.testing.assert_array_equal(a.forward(x)[0], want)
    a.train()
    assert not np.allclose(a.forward(x)[0], want)


def test_backward_adds_into_grads_and_zero_grad_clears():
    rng = np.random.default_rng(24)
    layer = bptt.GRU(3, 4, dtype="float64", seed=0)
    x = rng.standard_normal((5, 2, 3))
    out, _ = layer.forward(x)
    g = rng.standard_normal(out.shape)
    layer.backward(g)
    once = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)  # each backward belongs to one forward
    layer.backward(g)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 2 * once[k], rtol=1e-14, atol=1e-14)
    layer.zero_grad()
    assert all(not v.any() for v in layer.grads.values())


def test_embedding_linear_and_losses_gradcheck():
    rng = np.random.default_rng(25)
    emb = bptt.Embedding(7, 4, dtype="float64", seed=0)
    lin = bptt.Linear(4, 5, dtype="float64", seed=1)
    idx = np.array([[1, 3, 3], [0, 6, 1]])  # repeated indices must accumulate
    targets = rng.integers(0, 5, (2, 3))
    mask = np.array([[1, 1, 0], [1, 0, 1]])
    crit = bptt.CrossEntropyLoss(ignore_index=4)

    def fn():
        emb.zero_grad(), lin.zero_grad()
        logits = lin.forward(emb.forward(idx))
        loss = crit.forward(logits, targets, mask)
        emb.backward(lin.backward(crit.backward()))
        return loss, {"emb": emb.grads["weight"].copy(), "W": lin.grads["weight"].copy(),
                      "b": lin.grads["bias"].copy()}

    r = bptt.gradcheck(fn, {"emb": emb.params["weight"], "W": lin.params["weight"], "b": lin.params["bias"]})
    assert r.passed(1e-6), str(r)


@pytest.mark.parametrize("loss", ["ce", "mse", "bce"])
def test_loss_gradcheck(loss):
    rng = np.random.default_rng(26)
    x = rng.standard_normal((4, 3, 6)) * 3
    mask = rng.random((4, 3)) > 0.3
    if loss == "ce":
        t = rng.integers(0, 6, (4, 3))
        f, b = bptt.cross_entropy_forward, bptt.cross_entropy_backward
        m = mask
    elif loss == "mse":
        t = rng.standard_normal(x.shape)
        f, b = bptt.mse_forward, bptt.mse_backward
        m = mask[..., None]
    else:
        t = (rng.random(x.shape) > 0.5).astype(float)
        f, b = bptt.bce_with_logits_forward, bptt.bce_with_logits_backward
        m = mask[..., None]

    def fn():
        value, cache = f(x, t, m)
        return value, {"x": b(cache)}

    r = bptt.gradcheck(fn, {"x": x})
    assert r.passed(1e-6), str(r)


def test_full_stack_embedding_lstm_linear_cross_entropy():
    """Embedding -> 2-layer LSTM -> Linear -> cross-entropy, end to end."""
    rng = np.random.default_rng(27)
    V, E, H, T, B = 6, 3, 4, 5, 2
    emb = bptt.Embedding(V, E, dtype="float64", seed=0)
    rnn = bptt.LSTM(E, H, num_layers=2, dtype="float64", seed=1)
    head = bptt.Linear(H, V, dtype="float64", seed=2)
    crit = bptt.CrossEntropyLoss()
    tokens = rng.integers(0, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    h0 = rng.standard_normal((2, B, H)) * 0.5
    c0 = rng.standard_normal((2, B, H)) * 0.5
    parts = {"embedding": emb, "rnn": rnn, "head": head}

    def fn():
        for m in parts.values():
            m.zero_grad()
        out, _ = rnn.forward(emb.forward(tokens), (h0, c0))
        loss = crit.forward(head.forward(out), targets)
        dx, (dh0, dc0) = rnn.backward(head.backward(crit.backward()))
        emb.backward(dx)
        grads = {f"{p}.{k}": g.copy() for p, m in parts.items() for k, g in m.grads.items()}
        return loss, {**grads, "h0": dh0, "c0": dc0}

    wrt = {f"{p}.{k}": v for p, m in parts.items() for k, v in m.params.items()}
    wrt.update(h0=h0, c0=c0)
    r = bptt.gradcheck(fn, wrt)
    assert r.passed(1e-6), str(r)
