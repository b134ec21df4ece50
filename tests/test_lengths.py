"""Variable lengths: exactly PyTorch's packed sequences (pack_padded_sequence with
enforce_sorted=False -> layer -> pad_packed_sequence), finite differences, and the compiled
loops against the NumPy reference loops with lengths."""

import numpy as np
import pytest

import bptt
from bptt.cells import _kernels, _numpy_loops as ref
from bptt.cells import _numba_loops as fast
from helpers import layer_loss_fn, make_layer, random_state, wrt_of
from test_fast_path import GATES, _assert_same, _loop_inputs, restore_backend, shards, strategy  # noqa: F401
from torch_twin import assert_all_close, run_both, torch_twin

KINDS = ["rnn", "rnn_relu", "lstm", "gru"]
LENGTHS = np.array([3, 6, 1, 4, 6, 2])  # unsorted, with 1 and T; T = 6


def _inputs(layer, rng, T, B, D, batch_first):
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
    out_shape = (B, T, layer.num_directions * layer.hidden_size)
    dout = rng.standard_normal(out_shape if batch_first else (T, B, out_shape[2]))
    return x, random_state(layer, B, rng), dout, random_state(layer, B, rng)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_agrees_with_torch_packed(kind, num_layers, bidirectional, batch_first):
    """Outputs, h_n (c_n), dx, the initial-state gradients and every weight gradient."""
    rng = np.random.default_rng(num_layers * 4 + bidirectional * 2 + batch_first)
    T, B, D, H = 6, 6, 3, 4
    layer = make_layer(kind, D, H, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first)
    tmod = torch_twin(layer, seed=num_layers)
    x, state0, dout, dstate = _inputs(layer, rng, T, B, D, batch_first)
    lengths = rng.permutation(LENGTHS)
    ours, theirs = run_both(layer, tmod, x, state0, dout, dstate, lengths=lengths)
    assert_all_close(ours, theirs, 1e-10)
    # and what packing means, stated directly: nothing past a length, in or out
    out, dx = ours["out"], ours["dx"]
    past = np.arange(T)[:, None] >= lengths  # (T, B)
    if batch_first:
        past = past.T
    assert np.all(out[past] == 0) and np.all(dx[past] == 0)
    if kind != "rnn_relu":  # (relu outputs may be zero anywhere)
        assert np.all(np.abs(out[~past]).max(axis=-1) > 0)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_agrees_with_torch_packed(kind):
    rng = np.random.default_rng(11)
    layer = make_layer(kind, 3, 4, dtype="float32", num_layers=2, bidirectional=True)
    tmod = torch_twin(layer)
    x, state0, dout, dstate = (np.asarray(a).astype(np.float32) if not isinstance(a, tuple)
                               else tuple(s.astype(np.float32) for s in a)
                               for a in _inputs(layer, rng, 6, 6, 3, False))
    ours, theirs = run_both(layer, tmod, x, state0, dout, dstate, lengths=LENGTHS)
    assert_all_close(ours, theirs, 1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_gradcheck_with_lengths(kind, batch_first):
    """Finite differences of every parameter, x and the initial state, lengths unsorted with
    1 and T, two layers, both directions."""
    rng = np.random.default_rng(3)
    T, B, D, H = 5, 4, 2, 3
    lengths = np.array([2, 5, 1, 4])
    layer = make_layer(kind, D, H, num_layers=2, bidirectional=True, batch_first=batch_first, seed=1)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
    state0 = random_state(layer, B, rng)
    fn = _with_lengths(layer, lengths, lambda: layer_loss_fn(layer, x, state0, rng))
    result = bptt.gradcheck(fn, wrt_of(layer, x, state0))
    assert result.passed(1e-6), "\n" + str(result)


def _with_lengths(layer, lengths, make_fn):
    """layer_loss_fn with every forward given the lengths."""
    plain = layer.forward
    layer.forward = lambda x, state=None: plain(x, state, lengths=lengths)
    return make_fn()


def test_full_lengths_are_no_lengths():
    rng = np.random.default_rng(4)
    layer = make_layer("lstm", 3, 4, num_layers=2, bidirectional=True)
    x = rng.standard_normal((5, 3, 3))
    a, (h, c) = layer.forward(x)
    b, (h2, c2) = layer.forward(x, lengths=[5, 5, 5])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(c, c2)


def test_each_sequence_alone_gives_the_same():
    """A batch with lengths gives, row by row, what each sequence cut to its length gives alone."""
    rng = np.random.default_rng(5)
    layer = make_layer("gru", 3, 4, num_layers=2, bidirectional=True)
    T, lengths = 6, np.array([4, 6, 1])
    x = rng.standard_normal((T, 3, 3))
    out, h_n = layer.forward(x, lengths=lengths)
    for b, n in enumerate(lengths):
        out_b, h_b = layer.forward(x[:n, b : b + 1])
        np.testing.assert_allclose(out[:n, b : b + 1], out_b, rtol=0, atol=1e-13)
        np.testing.assert_allclose(h_n[:, b : b + 1], h_b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("bad,err,match", [
    ([3, 0, 2], ValueError, r"lengths must be in 1\.\.5 \(the sequence length\), got 0 at index 1"),
    ([3, 6, 2], ValueError, r"got 6 at index 1"),
    ([3, 2], ValueError, r"lengths must have shape \(3\), got \(2,\)"),
    ([3.0, 2.0, 1.0], TypeError, "lengths must be integers"),
])
def test_bad_lengths(bad, err, match):
    layer = make_layer("rnn", 2, 3)
    with pytest.raises(err, match=match):
        layer.forward(np.zeros((5, 3, 2)), lengths=bad)


def test_lengths_need_batched_input():
    with pytest.raises(ValueError, match="batched"):
        make_layer("rnn", 2, 3).forward(np.zeros((5, 2)), lengths=[3])


# ----------------------------------------------------------------------------- loop level
def _run_loops_with_lengths(mod, cell, a, lengths):
    if cell.startswith("rnn"):
        relu = cell == "rnn_relu"
        hs = mod.rnn_forward_loop(a["xw"], a["h0"], a["W"], relu, lengths)
        return (hs,) + tuple(mod.rnn_backward_loop(a["dout"], a["dh_T"], hs, a["W"], relu, lengths))
    if cell == "lstm":
        fwd = mod.lstm_forward_loop(a["xw"], a["h0"], a["c0"], a["W"], lengths)
        _, cs, gates, tcs = fwd
        return tuple(fwd) + tuple(mod.lstm_backward_loop(a["dout"], a["dh_T"], a["dc_T"], cs, gates, tcs,
                                                         a["W"], lengths))
    fwd = mod.gru_forward_loop(a["xw"], a["h0"], a["W"], a["b_hh"], lengths)
    hs, gates, ghn = fwd
    return tuple(fwd) + tuple(mod.gru_backward_loop(a["dout"], a["dh_T"], hs, gates, ghn, a["W"], lengths))


@pytest.mark.parametrize("order", ["unsorted", "sorted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", list(GATES))
def test_loops_with_lengths_match_reference(cell, dtype, order, strategy, shards):
    """Every step product strategy and row split; unsorted lengths (ended rows inside a block's
    product) and sorted ones (the product over the running rows only)."""
    T, B = 7, 7
    a = _loop_inputs(cell, (T, B, 5, 6), dtype, bias=True)
    lengths = np.array([3, 7, 1, 5, 7, 2, 4])
    if order == "sorted":
        lengths = np.sort(lengths)[::-1].copy()
    got = _run_loops_with_lengths(fast, cell, a, lengths)
    want = _run_loops_with_lengths(ref, cell, a, lengths)
    _assert_same(got, want, {np.float64: 1e-12, np.float32: 2e-5}[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_layers_with_lengths_same_under_both_backends(kind, dtype, restore_backend):  # noqa: F811
    results = []
    for backend in ("numpy", "numba"):
        _kernels.set_backend(backend)
        layer = make_layer(kind, 3, 5, dtype=dtype, num_layers=2, bidirectional=True, seed=3)
        rng = np.random.default_rng(6)
        x, state0, dout, dstate = _inputs(layer, rng, 6, 6, 3, False)
        x, state0 = x.astype(layer.dtype), tuple(s.astype(layer.dtype) for s in state0) \
            if isinstance(state0, tuple) else state0.astype(layer.dtype)
        out, state_T = layer.forward(x, state0, lengths=LENGTHS)
        dx, dstate0 = layer.backward(dout, dstate)
        flat = [out, dx]
        for s in (state_T, dstate0):
            flat += list(s) if isinstance(s, tuple) else [s]
        results.append(flat + [layer.grads[k] for k in sorted(layer.grads)])
    _assert_same(results[1], results[0], 1e-12 if dtype == "float64" else 2e-5)
