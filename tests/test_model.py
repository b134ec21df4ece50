"""CharModel (Embedding -> 2-layer RNN/LSTM/GRU with dropout -> Linear): finite differences of
the full forward/backward pass, torch-compatible parameter names, and sampling."""

import numpy as np
import pytest

import bptt
from bptt.loss import cross_entropy_backward, cross_entropy_forward
from bptt.model import CharModel, ModelConfig, sample_logits

from training_helpers import torch_char_model

CELLS = ["lstm", "gru", "rnn"]


def make_model(cell, dtype="float64", dropout=0.3, seed=1, V=7, E=4, H=6, L=2):
    return CharModel(ModelConfig(V, cell, hidden_size=H, num_layers=L, embedding_dim=E,
                                 dropout=dropout), dtype=dtype, seed=seed)


def random_state(model, B, rng):
    c = model.config
    mk = lambda: rng.standard_normal((c.num_layers, B, c.hidden_size)) * 0.5  # noqa: E731
    return (mk(), mk()) if model.is_lstm else mk()


def loss_fn(model, tokens, targets, state0, mask_seed):
    """fn() -> (loss, grads) for bptt.gradcheck: the same dropout mask on every call."""

    def fn():
        model.rnn.rng = np.random.default_rng(mask_seed)  # fixed dropout mask
        logits, _ = model.forward(tokens, state0)
        loss, cache = cross_entropy_forward(logits, targets)
        model.zero_grad()
        model.backward(cross_entropy_backward(cache))
        return loss, {k: g.copy() for k, g in model.grads.items()}

    return fn


@pytest.mark.parametrize("cell", CELLS)
def test_full_model_gradcheck_float64(cell):
    T, B = 5, 3
    model = make_model(cell)
    assert model.rnn.training and model.rnn.dropout == 0.3
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 7, (T, B))
    targets = rng.integers(0, 7, (T, B))
    state0 = random_state(model, B, rng)  # nonzero initial state
    fn = loss_fn(model, tokens, targets, state0, mask_seed=123)

    # the dropout mask really is applied: another mask gives another loss
    other = loss_fn(model, tokens, targets, state0, mask_seed=124)
    assert abs(fn()[0] - other()[0]) > 1e-6
    # and so is the initial state
    zero = loss_fn(model, tokens, targets, None, mask_seed=123)
    assert abs(fn()[0] - zero()[0]) > 1e-6

    result = bptt.gradcheck(fn, model.params)  # every entry of every parameter
    names = {c.name for c in result.checks}
    assert names == set(model.params)
    assert {"embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l1", "rnn.bias_ih_l1",
            "head.weight", "head.bias"} <= names
    assert result.max_rel_error < 1e-6, "\n" + result.table()
    for c in result.checks:  # the checks are not vacuous
        assert abs(c.analytic) > 0 or abs(c.numeric) > 0, c


@pytest.mark.parametrize("cell", CELLS)
def test_parameter_names_and_shapes_are_torch_ones(cell):
    model = make_model(cell, dtype="float32")
    tmod = torch_char_model(7, 4, 6, 2, cell)
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in tmod.state_dict().items()}
    assert ours == theirs
    assert all(v.dtype == np.float32 for v in model.state_dict().values())


def test_model_config_rejects_bad_values():
    with pytest.raises(ValueError, match="cell must be one of lstm, rnn, gru|cell must be one of"):
        ModelConfig(5, "transformer")
    with pytest.raises(ValueError, match="dropout must be in"):
        ModelConfig(5, dropout=1.0)
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        ModelConfig(5, hidden_size=0)


# ----------------------------------------------------------------------------- sampling
def argmax_decode(model, prime, length):
    """Greedy decoding written out: feed the prime, then always the most likely token."""
    model.eval()
    logits, state = model.forward(np.asarray(prime)[:, None])
    out = []
    for _ in range(length):
        nxt = int(np.argmax(logits[-1, 0]))
        out.append(nxt)
        logits, state = model.forward(np.array([[nxt]]), state)
    model.train()
    return out


@pytest.mark.parametrize("cell", CELLS)
def test_temperature_zero_is_argmax_decoding_and_top_k_1(cell):
    model = make_model(cell, dtype="float32", V=12, E=5, H=16)
    prime = [3, 1, 4, 1, 5]
    greedy = argmax_decode(model, prime, 40)
    assert model.generate(prime, 40, temperature=0) == greedy
    assert model.generate(prime, 40, temperature=0, rng=np.random.default_rng(9)) == greedy
    assert model.generate(prime, 40, temperature=0.7, top_k=1, rng=np.random.default_rng(5)) == greedy


def test_same_seed_same_sample_different_seed_different():
    model = make_model("lstm", dtype="float32", V=20, E=5, H=16, dropout=0.5)
    gen = lambda seed: model.generate([0, 1], 60, temperature=1.0,  # noqa: E731
                                      rng=np.random.default_rng(seed))
    a, b, c = gen(3), gen(3), gen(4)
    assert a == b
    assert a != c
    assert all(0 <= t < 20 for t in a)
    assert model.rnn.training  # dropout off while sampling, training mode restored after


def test_top_k_keeps_only_the_k_most_likely():
    logits = np.array([0.0, 3.0, 1.0, 2.5, -1.0])
    rng = np.random.default_rng(0)
    drawn = {sample_logits(logits, 1.0, 2, rng) for _ in range(300)}
    assert drawn == {1, 3}
    assert sample_logits(logits, 0, None, rng) == 1


def test_generate_rejects_bad_arguments():
    model = make_model("gru", dtype="float32")
    with pytest.raises(ValueError, match="at least one token"):
        model.generate([], 5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate([1], 5, temperature=-1)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        model.generate([1], 5, top_k=0)
