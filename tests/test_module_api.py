"""PyTorch habits, typed as a PyTorch user would type them: each either works as in torch or fails
at once with a clear one-line error (issue: callable modules, parameters(), optimizers that take a
model, composable models, a gradcheck that fails loudly, no silent wrong gradients)."""

import numpy as np
import pytest
import torch

import bptt
from bptt.loss import bce_with_logits_backward, cross_entropy_backward, mse_backward

F64 = "float64"


# ----------------------------------------------------------------------------- gradcheck fails loudly
def _linear_check(double=False):
    rng = np.random.default_rng(0)
    lin = bptt.Linear(3, 2, dtype=F64, seed=1)
    x = rng.standard_normal((4, 3))
    R = rng.standard_normal((4, 2))

    def fn():
        lin.zero_grad()
        y = lin(x)
        dx = lin.backward(R)
        g = {"x": dx, **lin.grads}
        if double:
            g = {k: 2 * v for k, v in g.items()}
        return float((y * R).sum()), g

    return fn, {"x": x, **lin.params}


def test_gradcheck_result_is_false_when_a_gradient_is_wrong():
    fn, wrt = _linear_check(double=True)
    result = bptt.gradcheck(fn, wrt)
    assert not result  # the habit `assert gradcheck(...)` now fails
    with pytest.raises(AssertionError):
        assert bptt.gradcheck(fn, wrt)
    assert result.max_rel_error == pytest.approx(0.5, rel=1e-6)


def test_gradcheck_raise_on_failure_carries_the_table():
    fn, wrt = _linear_check(double=True)
    with pytest.raises(bptt.GradcheckError, match=r"largest relative error 5\.00e-01") as e:
        bptt.gradcheck(fn, wrt, raise_on_failure=True)
    assert "<-- FAIL" in str(e.value) and "weight" in str(e.value)
    fn, wrt = _linear_check(double=False)
    assert bptt.gradcheck(fn, wrt, raise_on_failure=True)


# ----------------------------------------------------------------------------- the tape
def test_validation_forward_between_forward_and_backward_leaves_the_gradients_right():
    rng = np.random.default_rng(1)
    xa, xb = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 3))
    d = rng.standard_normal((5, 2, 4))
    ref = bptt.LSTM(3, 4, dtype=F64, seed=0)
    ref(xa)
    ref.backward(d)
    for how in ("eval", "no_grad"):
        lstm = bptt.LSTM(3, 4, dtype=F64, seed=0)
        lstm(xa)
        if how == "eval":
            lstm.eval()
            lstm(xb)
            lstm.train()
        else:
            with bptt.no_grad():
                lstm(xb)
        lstm.backward(d)
        for k in ref.grads:
            np.testing.assert_array_equal(lstm.grads[k], ref.grads[k])


def test_second_backward_without_a_forward_is_an_error():
    rng = np.random.default_rng(2)
    for layer, x, d in [
        (bptt.GRU(3, 4, dtype=F64), rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))),
        (bptt.Linear(3, 2, dtype=F64), rng.standard_normal((4, 3)), rng.standard_normal((4, 2))),
        (bptt.Embedding(6, 2, dtype=F64), np.array([1, 2, 5]), rng.standard_normal((3, 2))),
    ]:
        layer(x)
        layer.backward(d)
        with pytest.raises(RuntimeError, match=f"{type(layer).__name__}.backward has no forward to go with"):
            layer.backward(d)
    loss = bptt.MSELoss()
    loss(np.ones(3), np.zeros(3))
    loss.backward()
    with pytest.raises(RuntimeError, match="MSELoss.backward has no forward"):
        loss.backward()


def test_backward_before_any_forward_and_after_an_eval_forward_is_an_error():
    lstm = bptt.LSTM(3, 4, dtype=F64)
    with pytest.raises(RuntimeError, match="no forward to go with"):
        lstm.backward(np.zeros((5, 2, 4)))
    lstm.eval()
    lstm(np.zeros((5, 2, 3)))
    with pytest.raises(RuntimeError, match="eval mode"):
        lstm.backward(np.zeros((5, 2, 4)))


def test_a_module_used_twice_gets_both_gradients_like_torch():
    """One Linear on two inputs: y = W a + W b; backward pops the caches in reverse order."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    ra, rb = rng.standard_normal((4, 2)), rng.standard_normal((2, 2))
    lin = bptt.Linear(3, 2, dtype=F64, seed=0)
    ya, yb = lin(a), lin(b)
    db = lin.backward(rb)  # the latest forward first
    da = lin.backward(ra)

    t = torch.nn.Linear(3, 2).double()
    t.load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ((t(ta) * torch.tensor(ra)).sum() + (t(tb) * torch.tensor(rb)).sum()).backward()
    np.testing.assert_allclose(da, ta.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), atol=1e-12)
    for k, p in t.named_parameters():
        np.testing.assert_allclose(lin.grads[k], p.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ya, t(torch.tensor(a)).detach().numpy(), atol=1e-12)


def test_a_mismatched_gradient_shape_is_refused():
    lin = bptt.Linear(3, 2, dtype=F64)
    lin(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2\), got \(5, 2\)"):
        lin.backward(np.zeros((5, 2)))


def test_optimizer_step_drops_caches_of_the_old_weights():
    model = bptt.Sequential(bptt.Linear(3, 3, dtype=F64), bptt.Linear(3, 1, dtype=F64))
    opt = bptt.SGD(model, lr=0.1)
    x = np.ones((2, 3))
    model(x)  # a forward that never gets a backward (say, a forgotten validation)
    model(x)
    model.backward(np.ones((2, 1)))
    opt.step()
    assert all(not m._tape for m in model.modules())
    with pytest.raises(RuntimeError, match="optimizer step drops older ones"):
        model.backward(np.ones((2, 1)))


# ----------------------------------------------------------------------------- callable modules
def test_every_module_is_callable():
    rng = np.random.default_rng(4)
    lstm = bptt.LSTM(3, 4, dtype=F64, seed=0)
    x = rng.standard_normal((5, 2, 3))
    out, (h, c) = lstm(x)
    lstm.eval()
    np.testing.assert_array_equal(out, lstm.forward(x)[0])
    y = bptt.Linear(4, 2, dtype=F64)(out)
    assert y.shape == (5, 2, 2)
    e = bptt.Embedding(10, 3)(np.array([[1, 2], [3, 9]]))
    assert e.shape == (2, 2, 3)
    assert bptt.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 2])) == pytest.approx(np.log(3))


# ----------------------------------------------------------------------------- parameters and optimizers
def _model():
    return bptt.Sequential(bptt.Embedding(7, 3, dtype=F64, seed=0), bptt.GRU(3, 4, dtype=F64, seed=1),
                           bptt.Linear(4, 7, dtype=F64, seed=2))


def test_parameters_and_named_parameters_walk_the_sub_modules():
    m = _model()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "1.weight_ih_l0", "1.weight_hh_l0", "1.bias_ih_l0", "1.bias_hh_l0",
                     "2.weight", "2.bias"]
    ps = m.parameters()
    assert len(ps) == 7 and all(p is q for p, (_, q) in zip(ps, m.named_parameters()))
    assert ps[0] is m[0].params["weight"]  # the very arrays the parts hold
    assert m.num_parameters() == sum(p.size for p in ps)


@pytest.mark.parametrize("how", ["model", "parameters", "params", "params_positional_lr", "dicts"])
def test_optimizers_take_a_model_or_its_parameters(how):
    rng = np.random.default_rng(5)
    ids, targets = rng.integers(0, 7, (6, 2)), rng.integers(0, 7, (6, 2))
    runs = {}
    for form in ("dicts", how):
        m = _model()
        args = {"model": (m,), "parameters": (m.parameters(),), "params": (m.params,),
                "params_positional_lr": (m.params, 0.01), "dicts": (m.params, m.grads)}[form]
        opt = bptt.Adam(*args) if form == "params_positional_lr" else bptt.Adam(*args, lr=0.01)
        for _ in range(3):
            opt.zero_grad()
            logits = m(ids)
            loss = bptt.CrossEntropyLoss()
            loss(logits, targets)
            m.backward(loss.backward())
            opt.step()
        runs[form] = m.state_dict()
    for k in runs["dicts"]:
        np.testing.assert_array_equal(runs[how][k], runs["dicts"][k])


def test_optimizer_without_gradients_says_how_to_call_it():
    with pytest.raises(ValueError, match=r"give the optimizer a model, model.parameters\(\)"):
        bptt.Adam({"w": np.zeros(3)}, lr=0.1)


def test_optimizer_zero_grad_param_groups_and_clip_grad_norm_():
    m = _model()
    opt = bptt.RMSprop(m.parameters(), lr=0.01)
    for g in m.grads.values():
        g.fill(3.0)
    norm = bptt.clip_grad_norm_(m.parameters(), 1.0)
    assert norm == pytest.approx(3.0 * np.sqrt(m.num_parameters()))
    total = np.sqrt(sum(float((g * g).sum()) for g in m.grads.values()))
    assert total == pytest.approx(1.0, rel=1e-5)
    bptt.clip_grad_value_(m, 0.001)
    assert max(float(np.abs(g).max()) for g in m.grads.values()) <= 0.001
    opt.zero_grad()
    assert all(not g.any() for g in m.grads.values())
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["alpha"] == 0.99
    opt.param_groups[0]["lr"] = 1e-4
    assert opt.lr == 1e-4
    for group in opt.param_groups:  # torch's idiom for a schedule
        group["lr"] *= 0.5
    assert opt.lr == 5e-5
    with pytest.raises(KeyError, match="no hyperparameter 'foo'"):
        opt.param_groups[0]["foo"] = 1


# ----------------------------------------------------------------------------- a custom model
class LastStepClassifier(bptt.Module):
    """Embedding -> GRU -> Linear on the last step: the README's custom model."""

    def __init__(self, vocab, emb, hidden, classes, dtype=F64, seed=0):
        super().__init__()
        self.embedding = bptt.Embedding(vocab, emb, dtype=dtype, seed=seed)
        self.rnn = bptt.GRU(emb, hidden, dtype=dtype, seed=seed + 1)
        self.head = bptt.Linear(hidden, classes, dtype=dtype, seed=seed + 2)

    def forward(self, ids):                      # ids (T, B)
        out, _ = self.rnn(self.embedding(ids))   # (T, B, H)
        self._save_for_backward(out.shape)
        return self.head(out[-1])                # (B, C)

    def backward(self, dlogits):
        dout = np.zeros(self._saved_for_backward())
        dout[-1] = self.head.backward(dlogits)
        dx, _ = self.rnn.backward(dout)
        self.embedding.backward(dx)


class TorchLastStep(torch.nn.Module):
    def __init__(self, vocab, emb, hidden, classes):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, emb)
        self.rnn = torch.nn.GRU(emb, hidden)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, ids):
        out, _ = self.rnn(self.embedding(ids))
        return self.head(out[-1])


def test_custom_model_trains_like_torch_and_passes_gradcheck():
    rng = np.random.default_rng(6)
    ids, y = rng.integers(0, 9, (7, 4)), rng.integers(0, 3, 4)
    model = LastStepClassifier(9, 5, 6, 3)
    tmodel = TorchLastStep(9, 5, 6, 3).double()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    opt, topt = bptt.Adam(model, lr=0.01), torch.optim.Adam(tmodel.parameters(), lr=0.01)
    loss_fn = bptt.CrossEntropyLoss()
    for _ in range(4):
        opt.zero_grad()
        loss = loss_fn(model(ids), y)
        model.backward(loss_fn.backward())
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(ids)), torch.tensor(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) <= 1e-10
    for k, p in tmodel.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], p.numpy(), rtol=0, atol=1e-10)

    def fn():
        model.zero_grad()
        loss = loss_fn(model(ids), y)
        model.backward(loss_fn.backward())
        return loss, {k: v.copy() for k, v in model.grads.items()}

    assert bptt.gradcheck(fn, model.params, raise_on_failure=True)


def test_sequential_backward_is_the_forward_in_reverse():
    rng = np.random.default_rng(7)
    m = bptt.Sequential(bptt.Linear(3, 5, dtype=F64, seed=0), bptt.LSTM(5, 4, dtype=F64, seed=1),
                        bptt.Linear(4, 2, dtype=F64, seed=2))
    x = rng.standard_normal((6, 2, 3))
    R = rng.standard_normal((6, 2, 2))

    def fn():
        m.zero_grad()
        y = m(x)
        dx = m.backward(R)
        return float((y * R).sum()), {"x": dx, **m.grads}

    assert bptt.gradcheck(fn, {"x": x, **m.params}, raise_on_failure=True)
    assert len(m) == 3 and isinstance(m[1], bptt.LSTM)
    with pytest.raises(TypeError, match="Sequential takes modules, got int at position 1"):
        bptt.Sequential(bptt.Linear(1, 1), 3)


def test_char_model_is_built_on_module():
    m = bptt.CharModel(bptt.ModelConfig(11, hidden_size=8, num_layers=2, embedding_dim=4), seed=0)
    assert [n for n, _ in m.named_modules()] == ["", "embedding", "rnn", "head"]
    m.eval()
    assert not any(sub.training for sub in m.modules())
    m.train()
    assert all(sub.training for sub in m.modules())
    ids = np.random.default_rng(0).integers(0, 11, (5, 3))
    logits, _ = m(ids)
    m.backward(np.ones_like(logits))
    with pytest.raises(RuntimeError, match="Linear.backward has no forward"):
        m.backward(np.ones_like(logits))


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("make", [
    lambda: bptt.LSTM(3, 4, batch_frist=True),
    lambda: bptt.GRU(3, 4, nonlinearity="relu"),
    lambda: bptt.RNN(3, 4, bias_hh=False),
    lambda: bptt.Linear(3, 4, biass=False),
    lambda: bptt.Embedding(3, 4, padding_idxx=0),
    lambda: bptt.CrossEntropyLoss(reduce=False),
    lambda: bptt.MSELoss(weight=None),
])
def test_unknown_constructor_arguments_are_refused_at_once(make):
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        make()


def test_device_cpu_is_accepted_and_others_refused():
    assert bptt.LSTM(3, 4, device="cpu").input_size == 3
    assert bptt.Linear(3, 4, device="cpu").in_features == 3
    with pytest.raises(ValueError, match="bptt runs on the CPU only"):
        bptt.GRU(3, 4, device="cuda")


def test_float64_input_to_a_float32_layer_raises_unless_asked_to_cast():
    lstm = bptt.LSTM(3, 4)  # float32
    x = np.random.default_rng(0).standard_normal((5, 2, 3))  # float64
    with pytest.raises(TypeError, match=r"LSTM input is float64 but the layer's weights are float32"):
        lstm(x)
    with pytest.raises(TypeError, match="Linear input is float32 but the layer's weights are float64"):
        bptt.Linear(3, 2, dtype=F64)(x.astype(np.float32))
    with bptt.cast_inputs():
        out, _ = lstm(x)
        dx, _ = lstm.backward(np.ones(out.shape))
    assert out.dtype == np.float32 and dx.dtype == np.float32
    out, _ = lstm(x.astype(np.float32))  # the user's own cast
    assert out.dtype == np.float32


def test_double_and_float_convert_every_part():
    m = bptt.CharModel(bptt.ModelConfig(5, hidden_size=4, num_layers=1, embedding_dim=3), seed=0)
    before = m.state_dict()
    m.double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert all(g.dtype == np.float64 for g in m.grads.values())
    logits, _ = m(np.array([[1, 2]]))
    assert logits.dtype == np.float64
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    for k, v in before.items():
        np.testing.assert_array_equal(m.state_dict()[k], v)


def test_load_state_dict_strict_and_not():
    m = _model()
    sd = m.state_dict()
    sd.pop("2.bias")
    sd["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['2.bias'\], unexpected \['extra'\]"):
        m.load_state_dict(sd)
    sd["0.weight"] = np.full((7, 3), 0.5)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["2.bias"] and unexpected == ["extra"]
    assert (m[0].params["weight"] == 0.5).all()


def test_reprs():
    assert repr(bptt.Linear(4, 2)) == "Linear(in_features=4, out_features=2, bias=True, dtype=float32)"
    assert repr(bptt.Embedding(10, 3)) == "Embedding(10, 3, dtype=float32)"
    assert repr(bptt.CrossEntropyLoss(ignore_index=0)) == (
        "CrossEntropyLoss(reduction='mean', ignore_index=0, label_smoothing=0.0)")
    assert repr(bptt.MSELoss(reduction="sum")) == "MSELoss(reduction='sum')"
    assert "(1): GRU(3, 4" in repr(_model())
    assert repr(bptt.Adam(_model(), lr=0.5)).startswith("Adam(lr=0.5")


# ----------------------------------------------------------------------------- losses against torch
def _t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


CE_CASES = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": True},
    {"weight": True, "reduction": "sum"},
    {"label_smoothing": 0.2},
    {"label_smoothing": 0.2, "weight": True},
    {"label_smoothing": 0.1, "weight": True, "reduction": "none"},
    {"ignore_index": 2},
    {"ignore_index": 2, "weight": True, "label_smoothing": 0.3},
    {"default_ignore": True},
    {"probs": True},
    {"probs": True, "weight": True, "label_smoothing": 0.25},
    {"probs": True, "reduction": "sum"},
    {"probs": True, "reduction": "none", "weight": True},
]


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_cross_entropy_options_agree_with_torch(case):
    rng = np.random.default_rng(8)
    N, V = 9, 5
    x = rng.standard_normal((N, V)) * 2
    if case.get("probs"):
        y = rng.random((N, V))
        y /= y.sum(1, keepdims=True)
    else:
        y = rng.integers(0, V, N)
        if case.get("default_ignore"):
            y[[1, 4]] = -100
    kw = {k: v for k, v in case.items() if k in ("reduction", "label_smoothing", "ignore_index")}
    w = rng.random(V) + 0.5 if case.get("weight") else None
    ours = bptt.CrossEntropyLoss(weight=w, **kw)
    loss = ours(x, y)
    R = rng.standard_normal(N) if case.get("reduction") == "none" else 1.0
    dx = ours.backward(R)
    tx = _t(x, True)
    tl = torch.nn.functional.cross_entropy(tx, _t(y), weight=None if w is None else _t(w), **kw)
    (tl * _t(R)).sum().backward() if case.get("reduction") == "none" else tl.backward()
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", [{}, {"reduction": "sum"}, {"reduction": "none"}, {"weight": True},
                                  {"pos_weight": True}, {"weight": True, "pos_weight": True, "reduction": "sum"},
                                  {"pos_weight": True, "reduction": "none"}])
def test_bce_with_logits_options_agree_with_torch(case):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 4)) * 3
    y = rng.random((6, 4))
    w = rng.random((6, 4)) + 0.5 if case.get("weight") else None
    pw = rng.random(4) * 3 if case.get("pos_weight") else None
    red = case.get("reduction", "mean")
    ours = bptt.BCEWithLogitsLoss(weight=w, pos_weight=pw, reduction=red)
    loss = ours(x, y)
    R = rng.standard_normal(x.shape) if red == "none" else 1.0
    dx = ours.backward(R)
    tx = _t(x, True)
    tl = torch.nn.functional.binary_cross_entropy_with_logits(
        tx, _t(y), weight=None if w is None else _t(w), pos_weight=None if pw is None else _t(pw), reduction=red)
    (tl * _t(R)).sum().backward() if red == "none" else tl.backward()
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_mse_reductions_agree_with_torch(red):
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    ours = bptt.MSELoss(reduction=red)
    loss = ours(x, y)
    R = rng.standard_normal(x.shape) if red == "none" else 1.0
    dx = ours.backward(R)
    tx = _t(x, True)
    tl = torch.nn.functional.mse_loss(tx, _t(y), reduction=red)
    (tl * _t(R)).sum().backward() if red == "none" else tl.backward()
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-10)


def test_loss_gradients_pass_gradcheck_with_every_option():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 3, 5))
    y = rng.integers(0, 5, (4, 3))
    y[0, 0] = -100
    p = rng.random((4, 3, 5))
    p /= p.sum(-1, keepdims=True)
    w = rng.random(5) + 0.5
    mask = rng.random((4, 3)) > 0.3
    checks = [
        lambda: bptt.loss.cross_entropy_forward(x, y, mask, weight=w, label_smoothing=0.2),
        lambda: bptt.loss.cross_entropy_forward(x, p, mask, weight=w, label_smoothing=0.1),
        lambda: bptt.loss.bce_with_logits_forward(x, rng_fixed, None, weight=w, pos_weight=w),
        lambda: bptt.loss.mse_forward(x, rng_fixed, mask[..., None] * np.ones(5), reduction="sum"),
    ]
    rng_fixed = np.random.default_rng(12).random(x.shape)
    backs = [cross_entropy_backward, cross_entropy_backward, bce_with_logits_backward, mse_backward]
    for f, b in zip(checks, backs):
        def fn():
            loss, cache = f()
            return loss, {"x": b(cache)}
        assert bptt.gradcheck(fn, {"x": x}, raise_on_failure=True)


def test_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction must be one of mean, sum, none, got 'avg'"):
        bptt.CrossEntropyLoss(reduction="avg")


# ----------------------------------------------------------------------------- the README's examples
def test_readme_python_examples_run():
    """The code blocks of the README's "Python in a minute" section, run as they are."""
    import os
    import re

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    section = readme[readme.index("## Python in a minute"):readme.index("## The command line")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    scope = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), scope)
    model, loss = scope["model"], scope["loss"]
    assert isinstance(model, bptt.Module) and np.isfinite(loss)
    assert loss < np.log(3)  # 100 Adam steps on one batch of 8 learn something
