"""Run the same computation in bptt and in PyTorch and compare (the micrograd/tinygrad way)."""

import numpy as np
import torch

import bptt

TORCH_LAYERS = {bptt.RNN: torch.nn.RNN, bptt.LSTM: torch.nn.LSTM, bptt.GRU: torch.nn.GRU}
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def torch_twin(layer, seed=0):
    """A torch module with the same arguments as the bptt layer and torch's own random weights,
    loaded into the bptt layer through load_state_dict (torch -> bptt)."""
    torch.manual_seed(seed)
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
              dropout=layer.dropout, bidirectional=layer.bidirectional)
    kw.update(layer.cell_kwargs)
    if getattr(layer, "proj_size", 0):
        kw["proj_size"] = layer.proj_size
    t = TORCH_LAYERS[type(layer)](layer.input_size, layer.hidden_size, **kw)
    t = t.to(TORCH_DTYPES[layer.dtype])
    layer.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return t


def run_both(layer, tmod, x, state0, dout, dstate, lengths=None, input_grad=True):
    """Forward and backward in both; returns two dicts of numpy arrays with the same keys.
    With lengths, torch runs pack_padded_sequence(enforce_sorted=False) -> module ->
    pad_packed_sequence(total_length=T). ``input_grad=False``: x is data (torch: no
    requires_grad; bptt: backward(..., input_grad=False), whose dx must be None); no "dx" key."""
    is_lstm = isinstance(layer, bptt.LSTM)
    out, sT = layer.forward(x, state0) if lengths is None else layer.forward(x, state0, lengths=lengths)
    layer.zero_grad()
    dx, ds0 = layer.backward(dout, dstate, input_grad=input_grad)
    ours = {"out": out, "dx": dx, **{f"grad.{k}": v for k, v in layer.grads.items()}}
    if not input_grad:
        assert dx is None, "backward(input_grad=False) computed dx"
        del ours["dx"]
    states, dstates0 = (sT, ds0) if is_lstm else ((sT,), (ds0,))

    tt = lambda a: torch.tensor(a, requires_grad=True)  # noqa: E731
    xt = tt(x) if input_grad else torch.tensor(x)
    st0 = tuple(tt(s) for s in (state0 if is_lstm else (state0,)))
    if lengths is None:
        tout, tsT = tmod(xt, st0 if is_lstm else st0[0])
    else:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        T = x.shape[1] if layer.batch_first else x.shape[0]
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=layer.batch_first,
                                      enforce_sorted=False)
        pout, tsT = tmod(packed, st0 if is_lstm else st0[0])
        tout, _ = pad_packed_sequence(pout, batch_first=layer.batch_first, total_length=T)
    tsT = tsT if is_lstm else (tsT,)
    total = (tout * torch.tensor(dout)).sum()
    for s, g in zip(tsT, dstate if is_lstm else (dstate,)):
        total = total + (s * torch.tensor(g)).sum()
    total.backward()
    theirs = {"out": tout.detach().numpy(), **{f"grad.{k}": p.grad.numpy() for k, p in tmod.named_parameters()}}
    if input_grad:
        theirs["dx"] = xt.grad.numpy()
    for i, (a, b, da, db) in enumerate(zip(states, tsT, dstates0, st0)):
        ours[f"state_T[{i}]"], theirs[f"state_T[{i}]"] = a, b.detach().numpy()
        ours[f"dstate0[{i}]"], theirs[f"dstate0[{i}]"] = da, db.grad.numpy()
    return ours, theirs


def assert_all_close(ours, theirs, atol):
    assert set(ours) == set(theirs), (set(ours) ^ set(theirs))
    worst = {k: float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours}
    bad = {k: v for k, v in worst.items() if not v <= atol}
    assert not bad, f"max abs errors above {atol}: {bad}"
    return worst
