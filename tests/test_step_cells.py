"""RNNCell, LSTMCell, GRUCell: a loop the user writes (here a decoder that feeds part of its own
output back, i.e. not a plain sequence) agrees with the same loop over torch.nn.*Cell, passes
finite differences, and the cache stack pairs each backward with its forward."""

import numpy as np
import pytest
import torch

import bptt

KINDS = {"rnn": (bptt.RNNCell, torch.nn.RNNCell, {}), "rnn_relu": (bptt.RNNCell, torch.nn.RNNCell,
                                                               {"nonlinearity": "relu"}),
         "lstm": (bptt.LSTMCell, torch.nn.LSTMCell, {}), "gru": (bptt.GRUCell, torch.nn.GRUCell, {})}
T, B, D, H = 5, 3, 4, 3


def _make(kind, bias=True, seed=0):
    ours_cls, torch_cls, kw = KINDS[kind]
    torch.manual_seed(seed)
    tcell = torch_cls(D, H, bias=bias, **kw).double()
    cell = ours_cls(D, H, bias=bias, dtype="float64", **kw)
    cell.load_state_dict({k: v.detach().numpy() for k, v in tcell.state_dict().items()})
    return cell, tcell


def _h(state):
    return state[0] if isinstance(state, tuple) else state


def _decode(cell, x, state, lib):
    """The step input is x[t] with its first H features replaced by the previous h (a decoder
    fed back its own state): returns the list of h_t and the final state."""
    hs = []
    for t in range(T):
        if lib == "torch":
            inp = torch.cat([_h(state), x[t][:, H:]], dim=1)
        else:
            inp = np.concatenate([_h(state), x[t][:, H:]], axis=1)
        state = cell.forward(inp, state) if lib == "ours" else cell(inp, state)
        hs.append(_h(state))
    return hs, state


def _backward(cell, dhs, dstate_T):
    """The reverse of _decode: one backward per forward, the latest first."""
    dstate = dstate_T
    dx = np.zeros((T, B, D))
    for t in range(T - 1, -1, -1):
        if isinstance(dstate, tuple):
            dstate = (dstate[0] + dhs[t], dstate[1])
        else:
            dstate = dstate + dhs[t]
        dinp, dstate = cell.backward(dstate)
        dx[t, :, H:] = dinp[:, H:]
        fed = dinp[:, :H]  # the part that came from the previous h
        dstate = (dstate[0] + fed, dstate[1]) if isinstance(dstate, tuple) else dstate + fed
    return dx, dstate


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(KINDS))
def test_decoder_loop_agrees_with_torch(kind, bias):
    rng = np.random.default_rng(1)
    cell, tcell = _make(kind, bias)
    lstm = kind == "lstm"
    x = rng.standard_normal((T, B, D))
    s0 = (rng.standard_normal((B, H)), rng.standard_normal((B, H))) if lstm else rng.standard_normal((B, H))
    dhs = rng.standard_normal((T, B, H))
    dsT = (rng.standard_normal((B, H)), rng.standard_normal((B, H))) if lstm else rng.standard_normal((B, H))

    hs, sT = _decode(cell, x, s0, "ours")
    cell.zero_grad()
    dx, ds0 = _backward(cell, dhs, dsT)

    xt = torch.tensor(x, requires_grad=True)
    st0 = tuple(torch.tensor(s, requires_grad=True) for s in s0) if lstm else torch.tensor(s0, requires_grad=True)
    ths, tsT = _decode(tcell, xt, st0, "torch")
    total = sum((h * torch.tensor(d)).sum() for h, d in zip(ths, dhs))
    for s, d in zip(tsT if lstm else (tsT,), dsT if lstm else (dsT,)):
        total = total + (s * torch.tensor(d)).sum()
    total.backward()

    pairs = [(np.stack(hs), torch.stack(ths).detach().numpy()), (dx, xt.grad.numpy())]
    pairs += [(a, b.detach().numpy()) for a, b in zip(sT if lstm else (sT,), tsT if lstm else (tsT,))]
    pairs += [(a, b.grad.numpy()) for a, b in zip(ds0 if lstm else (ds0,), st0 if lstm else (st0,))]
    pairs += [(cell.grads[k], p.grad.numpy()) for k, p in tcell.named_parameters()]
    assert sorted(cell.grads) == sorted(k for k, _ in tcell.named_parameters())
    for a, b in pairs:
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_decoder_loop_gradcheck(kind):
    rng = np.random.default_rng(2)
    cell, _ = _make(kind)
    lstm = kind == "lstm"
    x = rng.standard_normal((T, B, D))
    s0 = (rng.standard_normal((B, H)), rng.standard_normal((B, H))) if lstm else rng.standard_normal((B, H))
    dhs = rng.standard_normal((T, B, H))

    def fn():
        cell.zero_grad()
        hs, _ = _decode(cell, x, s0, "ours")
        loss = float(sum((h * d).sum() for h, d in zip(hs, dhs)))
        zero = (np.zeros((B, H)), np.zeros((B, H))) if lstm else np.zeros((B, H))
        dx, ds0 = _backward(cell, dhs, zero)
        grads = {"x": dx, **{k: v.copy() for k, v in cell.grads.items()}}
        for name, g in zip(("h0", "c0"), ds0 if lstm else (ds0,)):
            grads[name] = g
        return loss, grads

    wrt = {"x": x, **cell.params}
    for name, s in zip(("h0", "c0"), s0 if lstm else (s0,)):
        wrt[name] = s
    result = bptt.gradcheck(fn, wrt)
    assert result.passed(1e-6), "\n" + str(result)


def test_tape_pairs_backward_with_forward():
    cell = bptt.GRUCell(2, 3, dtype="float64", seed=0)
    with pytest.raises(RuntimeError, match="no forward to go with"):
        cell.backward(np.zeros((1, 3)))
    x = np.ones((1, 2))
    h1 = cell.forward(x)
    cell.forward(x, h1)
    cell.backward(np.ones((1, 3)))
    cell.backward(np.ones((1, 3)))
    with pytest.raises(RuntimeError, match="no forward to go with"):
        cell.backward(np.ones((1, 3)))
    cell.eval()
    cell.forward(x)  # records nothing
    with pytest.raises(RuntimeError, match="no forward to go with"):
        cell.backward(np.ones((1, 3)))
    cell.train()
    with bptt.no_grad():
        cell(x)  # callable; records nothing either
    with pytest.raises(RuntimeError, match="no forward to go with"):
        cell.backward(np.ones((1, 3)))
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def test_unbatched_and_defaults():
    cell = bptt.LSTMCell(3, 4, dtype="float64", seed=1)
    h, c = cell.forward(np.ones(3))
    assert h.shape == c.shape == (4,)
    hb, cb = cell.forward(np.ones((1, 3)))
    np.testing.assert_array_equal(h, hb[0])
    dx, (dh, dc) = cell.backward((np.ones((1, 4)), None))
    assert dx.shape == (1, 3) and dh.shape == dc.shape == (1, 4)
    dx, (dh, dc) = cell.backward((np.ones(4), np.ones(4)))
    assert dx.shape == (3,) and dh.shape == (4,)
    assert bptt.RNNCell(3, 4).params["weight_ih"].dtype == np.float32
    assert sorted(bptt.RNNCell(3, 4, bias=False).params) == ["weight_hh", "weight_ih"]


@pytest.mark.parametrize("call,err,match", [
    (lambda c: c.forward(np.ones((2, 5))), ValueError, r"input must have shape \(batch, 3\)"),
    (lambda c: c.forward(np.ones((2, 3)), (np.ones((3, 4)), None)), ValueError, r"state\[0\] must have shape \(2, 4\)"),
    (lambda c: c.forward(np.ones((2, 3)), np.ones((2, 4))), TypeError, r"tuple \(h, c\)"),
    (lambda c: c.forward(np.ones((2, 3), int)), TypeError, "floating-point"),
])
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call(bptt.LSTMCell(3, 4, dtype="float64"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="nonlinearity"):
        bptt.RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        bptt.GRUCell(3, 0)
