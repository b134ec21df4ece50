"""bptt and torch.nn give the same outputs, final states and every gradient, with torch's own
random weights loaded through load_state_dict and random initial states."""

import numpy as np
import pytest
import torch

import bptt
from helpers import make_layer, random_state
from torch_twin import assert_all_close, run_both, torch_twin

TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "lstm", "gru"])
def test_agrees_with_torch(kind, num_layers, bidirectional, batch_first, dtype):
    rng = np.random.default_rng(num_layers * 8 + bidirectional * 4 + batch_first)
    T, B, D, H = 6, 3, 5, 7
    layer = make_layer(kind, D, H, dtype=dtype, num_layers=num_layers,
                       bidirectional=bidirectional, batch_first=batch_first)
    tmod = torch_twin(layer, seed=num_layers)
    np_dtype = layer.dtype
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(np_dtype)
    state0 = random_state(layer, B, rng)
    cast = lambda s: tuple(a.astype(np_dtype) for a in s) if isinstance(s, tuple) else s.astype(np_dtype)  # noqa: E731
    state0 = cast(state0)
    out_shape = (B, T, layer.num_directions * H) if batch_first else (T, B, layer.num_directions * H)
    dout = rng.standard_normal(out_shape).astype(np_dtype)
    dstate = cast(random_state(layer, B, rng))
    ours, theirs = run_both(layer, tmod, x, state0, dout, dstate)
    assert_all_close(ours, theirs, TOL[dtype])


@pytest.mark.parametrize("memory", ["full", "sqrt"])
@pytest.mark.parametrize("lengths", [None, [6, 1, 4]], ids=["full-length", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_input_without_gradient_agrees_with_torch(kind, num_layers, bidirectional, lengths, memory):
    """An input that is data (torch: no requires_grad; bptt: backward(input_grad=False)): no dx
    (None), and the state gradients and every weight gradient as torch's."""
    rng = np.random.default_rng(num_layers * 4 + bidirectional * 2 + (lengths is None))
    T, B, D, H = 6, 3, 5, 7
    layer = make_layer(kind, D, H, num_layers=num_layers, bidirectional=bidirectional, memory=memory)
    tmod = torch_twin(layer, seed=num_layers)
    x = rng.standard_normal((T, B, D))
    state0, dstate = random_state(layer, B, rng), random_state(layer, B, rng)
    dout = rng.standard_normal((T, B, layer.num_directions * H))
    ours, theirs = run_both(layer, tmod, x, state0, dout, dstate, lengths=lengths, input_grad=False)
    assert "dx" not in ours
    assert_all_close(ours, theirs, 1e-10)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unbatched_agrees_with_torch(kind):
    rng = np.random.default_rng(5)
    layer = make_layer(kind, 4, 5, num_layers=2, bidirectional=True)
    tmod = torch_twin(layer)
    x = rng.standard_normal((7, 4))
    state0 = random_state(layer, 1, rng, batched=False)
    dstate = random_state(layer, 1, rng, batched=False)
    dout = rng.standard_normal((7, 10))
    ours, theirs = run_both(layer, tmod, x, state0, dout, dstate)
    assert_all_close(ours, theirs, 1e-10)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_state_dict_round_trips_into_torch(kind, dtype):
    """bptt -> torch: our own initial weights load into torch and reproduce our outputs;
    torch -> bptt gives back exactly the same arrays."""
    rng = np.random.default_rng(6)
    layer = make_layer(kind, 3, 4, dtype=dtype, num_layers=2, bidirectional=True, seed=11)
    sd = layer.state_dict()
    tmod = torch_twin(make_layer(kind, 3, 4, dtype=dtype, num_layers=2, bidirectional=True))
    assert list(sd) == list(tmod.state_dict())  # same keys in the same order
    tmod.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = rng.standard_normal((5, 2, 3)).astype(layer.dtype)
    out, _ = layer.forward(x)
    tout, _ = tmod(torch.from_numpy(x))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=0, atol=1e-12 if dtype == "float64" else 1e-6)
    back = make_layer(kind, 3, 4, dtype=dtype, num_layers=2, bidirectional=True, seed=99)
    back.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})
    for k, v in sd.items():
        np.testing.assert_array_equal(back.params[k], v)


def test_initialisation_matches_torch_distribution():
    """Every tensor is U(-1/sqrt(H), 1/sqrt(H)), like torch's reset_parameters."""
    H = 64
    layer = bptt.LSTM(10, H, num_layers=2, seed=0)
    bound = 1 / np.sqrt(H)
    for k, v in layer.params.items():
        assert v.dtype == np.float32
        assert np.abs(v).max() <= bound
        assert np.abs(v).max() > 0.95 * bound, k  # fills the interval
        assert abs(v.mean()) < 5 * bound / np.sqrt(3 * v.size)  # 5 standard errors
    a, b = bptt.GRU(3, 4, seed=1), bptt.GRU(3, 4, seed=2)
    assert not np.array_equal(a.params["weight_hh_l0"], b.params["weight_hh_l0"])
    # no two tensors share values (the "identical initial weights" bug): every pair of tensors of
    # the same shape, in full, in a two-layer bidirectional layer (directions, layers, biases)
    for layer in (bptt.LSTM(10, H, num_layers=2, seed=0), bptt.GRU(H, H, num_layers=2, bidirectional=True, seed=0)):
        names = sorted(layer.params)
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
                 if layer.params[a].shape == layer.params[b].shape]
        assert len(pairs) >= 6
        for a, b in pairs:
            same = np.mean(layer.params[a] == layer.params[b])
            assert same < 0.01, f"{a} and {b} share {same:.0%} of their values"


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_losses_agree_with_torch(dtype, tol):
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((5, 3, 11)) * 4).astype(dtype)
    targets = rng.integers(0, 11, (5, 3))
    targets[0, 1] = -100

    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt.reshape(-1, 11), torch.tensor(targets).reshape(-1), ignore_index=-100)
    ref.backward()
    crit = bptt.CrossEntropyLoss(ignore_index=-100)
    loss = crit.forward(logits, targets)
    assert abs(loss - ref.item()) <= tol
    np.testing.assert_allclose(crit.backward(), lt.grad.numpy(), rtol=0, atol=tol)

    pred = rng.standard_normal((4, 2, 3)).astype(dtype)
    target = rng.standard_normal((4, 2, 3)).astype(dtype)
    pt = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.mse_loss(pt, torch.tensor(target))
    ref.backward()
    mse = bptt.MSELoss()
    assert abs(mse.forward(pred, target) - ref.item()) <= tol
    np.testing.assert_allclose(mse.backward(), pt.grad.numpy(), rtol=0, atol=tol)

    z = (rng.standard_normal((4, 2, 3)) * 30).astype(dtype)  # large logits: stable form needed
    y = (rng.random((4, 2, 3)) > 0.5).astype(dtype)
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(y))
    ref.backward()
    bce = bptt.BCEWithLogitsLoss()
    assert abs(bce.forward(z, y) - ref.item()) <= tol
    np.testing.assert_allclose(bce.backward(), zt.grad.numpy(), rtol=0, atol=tol)


def test_embedding_and_linear_agree_with_torch():
    rng = np.random.default_rng(8)
    temb, tlin = torch.nn.Embedding(9, 4).double(), torch.nn.Linear(4, 6).double()
    emb, lin = bptt.Embedding(9, 4, dtype="float64"), bptt.Linear(4, 6, dtype="float64")
    emb.load_state_dict({k: v.detach().numpy() for k, v in temb.state_dict().items()})
    lin.load_state_dict({k: v.detach().numpy() for k, v in tlin.state_dict().items()})
    idx = rng.integers(0, 9, (5, 3))
    idx[0, 0] = idx[1, 1] = idx[2, 2] = 4  # repeats
    g = rng.standard_normal((5, 3, 6))
    y = lin.forward(emb.forward(idx))
    emb.backward(lin.backward(g))
    ty = tlin(temb(torch.tensor(idx)))
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(emb.grads["weight"], temb.weight.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lin.grads["weight"], tlin.weight.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lin.grads["bias"], tlin.bias.grad.numpy(), rtol=0, atol=1e-12)
