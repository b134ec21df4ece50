"""bptt.optim against torch.optim / torch.nn.utils: 20 steps in float64 with changing random
gradients and a changing lr agree to 1e-10; checkpoints resume bit for bit; clipping, schedules,
and bad hyperparameters."""

import math

import numpy as np
import pytest
import torch

from bptt import optim

SHAPES = {
    "weight_ih_l0": (12, 5),
    "weight_hh_l0": (12, 3),
    "bias_ih_l0": (12,),
    "bias_hh_l0": (12,),
    "head.weight": (7, 3, 2),
    "scale": (1,),
}

# (bptt class, torch class, keyword arguments given to both)
CASES = {
    "sgd": (optim.SGD, torch.optim.SGD, {"lr": 0.1}),
    "sgd_momentum": (optim.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    "sgd_nesterov": (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    "sgd_wd_dampening": (optim.SGD, torch.optim.SGD,
                         {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.05}),
    "sgd_nesterov_wd": (optim.SGD, torch.optim.SGD,
                        {"lr": 0.1, "momentum": 0.5, "nesterov": True, "weight_decay": 0.1}),
    "adagrad": (optim.Adagrad, torch.optim.Adagrad, {"lr": 0.1}),
    "adagrad_decay": (optim.Adagrad, torch.optim.Adagrad,
                      {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.01,
                       "initial_accumulator_value": 0.1, "eps": 1e-8}),
    "rmsprop": (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01}),
    "rmsprop_centered_momentum": (optim.RMSprop, torch.optim.RMSprop,
                                  {"lr": 0.01, "alpha": 0.9, "centered": True, "momentum": 0.7,
                                   "weight_decay": 0.02}),
    "rmsprop_momentum": (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5}),
    "adam": (optim.Adam, torch.optim.Adam, {"lr": 0.01}),
    "adam_amsgrad_wd": (optim.Adam, torch.optim.Adam,
                        {"lr": 0.01, "betas": (0.8, 0.95), "amsgrad": True, "weight_decay": 0.1}),
    "adamw": (optim.AdamW, torch.optim.AdamW, {"lr": 0.01}),
    "adamw_amsgrad": (optim.AdamW, torch.optim.AdamW,
                      {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True, "eps": 1e-6}),
}


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = {k: np.zeros(s) for k, s in SHAPES.items()}
    return params, grads


def random_grads(rng):
    """A gradient sequence with changing scale so the adaptive optimizers see some variety."""
    return {k: rng.standard_normal(s) * rng.uniform(0.1, 3.0) for k, s in SHAPES.items()}


def lr_at(base_lr, step):
    """A changing learning rate, to check that setting ``opt.lr`` takes effect like torch's
    param_groups[0]['lr']."""
    return base_lr * (1.0 + 0.5 * math.sin(step))


@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case):
    cls, torch_cls, kw = CASES[case]
    params, grads = make_params()
    ids = {k: id(p) for k, p in params.items()}
    tparams = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params.values()]
    opt = cls(params, grads, **kw)
    topt = torch_cls(tparams, foreach=False, **kw)
    rng = np.random.default_rng(1)
    for step in range(20):
        new = random_grads(rng)
        for (k, g), tp in zip(grads.items(), tparams):
            g[...] = new[k]
            tp.grad = torch.tensor(new[k])
        opt.lr = topt.param_groups[0]["lr"] = lr_at(kw["lr"], step)
        opt.step()
        topt.step()
        # the gradients are read, never written
        assert all(np.array_equal(grads[k], new[k]) for k in grads)
    assert {k: id(p) for k, p in params.items()} == ids  # updated in place
    err = max(np.max(np.abs(p - tp.detach().numpy())) for p, tp in zip(params.values(), tparams))
    assert err <= 1e-10, f"{case}: max abs error {err:.3e}"
    # the parameters actually moved
    assert not np.allclose(params["weight_ih_l0"], make_params()[0]["weight_ih_l0"])


def test_updates_arrays_shared_with_layer():
    import bptt

    layer = bptt.RNN(3, 4, dtype="float64", seed=0)
    before = {k: v.copy() for k, v in layer.params.items()}
    for g in layer.grads.values():
        g.fill(1.0)
    opt = optim.SGD(layer.params, layer.grads, lr=0.5)
    opt.step()
    for k in before:
        np.testing.assert_array_equal(layer.params[k], before[k] - 0.5)
    opt.zero_grad()
    assert all(not g.any() for g in layer.grads.values())


def test_float32_params_stay_float32():
    params = {"w": np.ones((3, 2), np.float32)}
    grads = {"w": np.full((3, 2), 0.5, np.float32)}
    for name in optim.OPTIMIZERS:
        opt = optim.make_optimizer(name, params, grads, lr=0.01)
        opt.step()
        assert params["w"].dtype == np.float32
        assert all(a.dtype == np.float32 for b in opt.buffers.values() for a in b.values())


@pytest.mark.parametrize("case", CASES)
def test_state_dict_resumes_exactly(case):
    cls, _, kw = CASES[case]
    rng = np.random.default_rng(2)
    seq = [random_grads(rng) for _ in range(20)]

    params, grads = make_params()
    opt = cls(params, grads, **kw)
    for step in range(10):
        for k in grads:
            grads[k][...] = seq[step][k]
        opt.lr = lr_at(kw["lr"], step)
        opt.step()
    sd = opt.state_dict()
    assert sd["type"] == cls.name and sd["step"] == 10 and sd["hyper"]["lr"] == opt.lr

    params2 = {k: p.copy() for k, p in params.items()}
    grads2 = {k: np.zeros_like(g) for k, g in grads.items()}
    opt2 = cls(params2, grads2, lr=123.0)  # other hyperparameters: the state dict restores them
    opt2.load_state_dict(sd)
    assert opt2.hyper() == opt.hyper() and opt2.t == opt.t
    # the saved state is a copy both ways: writing into its arrays (in place) changes neither the
    # optimizer that saved it nor the one that loaded it
    for b in sd["buffers"]:
        for v in sd["buffers"][b].values():
            v[...] = np.nan
    for step in range(10, 20):
        for k in grads:
            grads[k][...] = grads2[k][...] = seq[step][k]
        opt.lr = opt2.lr = lr_at(kw["lr"], step)
        opt.step()
        opt2.step()
    for k in params:
        assert np.array_equal(params[k], params2[k]), k
    for b in opt.buffers:
        for k in params:
            assert np.array_equal(opt.buffers[b][k], opt2.buffers[b][k]), (b, k)


def test_state_dict_is_plain_data():
    params, grads = make_params()
    opt = optim.Adam(params, grads, amsgrad=True)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"type", "hyper", "step", "buffers"}
    assert isinstance(sd["step"], int)
    assert set(sd["buffers"]) == {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    for arrays in sd["buffers"].values():
        assert set(arrays) == set(params)
        assert all(type(a) is np.ndarray for a in arrays.values())
    # lists (as from JSON) load as well as tuples
    sd["hyper"]["betas"] = list(sd["hyper"]["betas"])
    optim.Adam(params, grads).load_state_dict(sd)


def bad_state(mutate):
    params, grads = make_params()
    opt = optim.SGD(params, grads, lr=0.1, momentum=0.9)
    opt.step()
    sd = opt.state_dict()
    mutate(sd)
    return params, grads, sd


@pytest.mark.parametrize("mutate, message", [
    (lambda sd: sd.update(type="adam"), "adam"),
    (lambda sd: sd["hyper"].pop("momentum"), "hyperparameters"),
    (lambda sd: sd["hyper"].update(momentum=-1.0), "momentum"),
    (lambda sd: sd.update(step=-3), "step"),
    (lambda sd: sd.pop("buffers"), "keys"),
    (lambda sd: sd["buffers"].update(extra={}), "buffers"),
    (lambda sd: sd["buffers"]["momentum_buffer"].pop("scale"), "parameter names"),
    (lambda sd: sd["buffers"]["momentum_buffer"].update(scale=np.zeros(2)), "shape"),
    (lambda sd: sd["hyper"].update(momentum=0.0), "buffers"),  # buffers of a momentum run
])
def test_load_state_dict_rejects_bad_state(mutate, message):
    params, grads, sd = bad_state(mutate)
    opt = optim.SGD(params, grads, lr=0.1, momentum=0.9)
    before = {k: v.copy() for k, v in opt.buffers["momentum_buffer"].items()}
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(sd)
    # nothing was half-loaded
    assert opt.t == 0 and opt.lr == 0.1
    for k, v in before.items():
        assert np.array_equal(opt.buffers["momentum_buffer"][k], v)


def set_torch_grads(grads):
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for tp, g in zip(tparams, grads.values()):
        tp.grad = torch.tensor(g)
    return tparams


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    grads = random_grads(np.random.default_rng(3))
    tparams = set_torch_grads(grads)
    norm = optim.clip_grad_norm(grads, max_norm)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, max_norm, foreach=False).item()
    assert isinstance(norm, float)
    assert abs(norm - tnorm) <= 1e-12 * tnorm
    for g, tp in zip(grads.values(), tparams):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-12, atol=0)
    if max_norm < norm:
        total = math.sqrt(sum(np.sum(g * g) for g in grads.values()))
        assert total == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_nonfinite_returns_norm_and_leaves_grads(bad):
    grads = random_grads(np.random.default_rng(4))
    grads["scale"][0] = bad
    before = {k: g.copy() for k, g in grads.items()}
    with np.errstate(all="raise"):  # no floating-point warnings either
        norm = optim.clip_grad_norm(grads, 1.0)
    assert math.isnan(norm) if np.isnan(bad) else norm == math.inf
    for k in grads:
        np.testing.assert_array_equal(grads[k], before[k])


def test_clip_grad_value_matches_torch():
    grads = random_grads(np.random.default_rng(5))
    grads["scale"][0] = np.inf
    grads["bias_ih_l0"][3] = -np.inf
    grads["bias_hh_l0"][0] = np.nan
    tparams = set_torch_grads(grads)
    assert optim.clip_grad_value(grads, 0.7) is None
    torch.nn.utils.clip_grad_value_(tparams, 0.7, foreach=False)
    for g, tp in zip(grads.values(), tparams):
        np.testing.assert_array_equal(g, tp.grad.numpy())  # NaN == NaN here
    assert grads["scale"][0] == 0.7 and grads["bias_ih_l0"][3] == -0.7


def test_constant_and_step_decay():
    c = optim.make_schedule("constant", 0.3, total_steps=100)
    assert [c(s) for s in (0, 50, 10**6)] == [0.3, 0.3, 0.3]
    s = optim.step_decay(1.0, step_size=3, gamma=0.5)
    assert [s(k) for k in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    # same as torch's StepLR after k scheduler steps
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=4, gamma=0.3)
    mine = optim.make_schedule("step", 0.2, total_steps=100, step_size=4, gamma=0.3)
    for k in range(15):
        assert mine(k) == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
        topt.step()
        sched.step()
    default = optim.make_schedule("step", 1.0, total_steps=30)  # step_size 10, gamma 0.1
    assert (default(9), default(10)) == (1.0, pytest.approx(0.1))


def test_cosine_with_warmup():
    f = optim.cosine_with_warmup(1.0, warmup_steps=4, total_steps=14, min_lr=0.1)
    assert [f(k) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear ramp from base/warmup
    assert f(4) == 1.0  # cosine starts at base_lr
    assert f(9) == pytest.approx(0.55)  # halfway: (base + min) / 2
    assert f(13) > 0.1
    assert f(14) == 0.1 and f(1000) == 0.1  # reaches min_lr at total_steps and stays
    values = [f(k) for k in range(4, 15)]
    assert all(a > b for a, b in zip(values, values[1:]))
    g = optim.make_schedule("cosine", 2.0, total_steps=10)  # no warm-up, min_lr 0
    assert g(0) == 2.0 and g(5) == pytest.approx(1.0) and g(10) == 0.0


def test_cosine_to_budget_follows_the_used_fraction_of_the_budget():
    f = optim.cosine_to_budget(1.0, warmup_steps=4, min_lr=0.1)
    assert [f(k, 0.0) for k in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]  # warm-up by steps
    assert f(10, 0.5) == pytest.approx(0.55)  # half the budget used: (base + min) / 2
    assert f(1, 0.5) == pytest.approx(0.55 / 2)  # still warming up: the ramp times the cosine
    assert f(10, 1.0) == pytest.approx(0.1) and f(10, 1.7) == pytest.approx(0.1)  # the end, and past it
    assert f(10, -0.2) == 1.0  # clamped below too
    values = [f(50, q) for q in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in zip(values, values[1:]))
    g = optim.cosine_to_budget(2.0)  # no warm-up, min_lr 0
    assert g(0, 0.0) == 2.0 and g(0, 0.25) == pytest.approx(1 + math.cos(math.pi / 4)) and g(7, 1.0) == 0.0
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.cosine_to_budget(1.0, warmup_steps=-1)
    with pytest.raises(ValueError, match="progress"):
        g(0, float("nan"))


def test_schedule_sets_optimizer_lr():
    params, grads = make_params()
    opt = optim.make_optimizer("sgd", params, grads, lr=1.0)
    schedule = optim.make_schedule("cosine", 1.0, total_steps=10, warmup_steps=2)
    opt.lr = schedule(0)
    assert opt.lr == 0.5


@pytest.mark.parametrize("cls, kw, message", [
    (optim.SGD, {"lr": -0.1}, r"^lr must be a finite number >= 0, got -0\.1$"),
    (optim.SGD, {"lr": float("nan")}, r"^lr must be a finite number >= 0, got nan$"),
    (optim.SGD, {"lr": float("inf")}, r"^lr must be a finite number >= 0, got inf$"),
    (optim.SGD, {"lr": 0.1, "momentum": -0.5}, r"^momentum must be a finite number >= 0, got -0\.5$"),
    (optim.SGD, {"lr": 0.1, "weight_decay": -1e-4}, r"^weight_decay must be a finite number >= 0, got -0\.0001$"),
    (optim.SGD, {"lr": 0.1, "nesterov": True}, r"^nesterov momentum requires momentum > 0 and dampening = 0$"),
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
     r"^nesterov momentum requires momentum > 0 and dampening = 0$"),
    (optim.Adagrad, {"lr": -1.0}, r"^lr must be a finite number >= 0, got -1\.0$"),
    (optim.Adagrad, {"lr_decay": -0.1}, r"^lr_decay must be a finite number >= 0, got -0\.1$"),
    (optim.Adagrad, {"initial_accumulator_value": -1.0},
     r"^initial_accumulator_value must be a finite number >= 0, got -1\.0$"),
    (optim.Adagrad, {"eps": -1e-10}, r"^eps must be a finite number >= 0, got -1e-10$"),
    (optim.RMSprop, {"alpha": 1.5}, r"^alpha must be in \[0, 1\], got 1\.5$"),
    (optim.RMSprop, {"alpha": -0.1}, r"^alpha must be a finite number >= 0, got -0\.1$"),
    (optim.RMSprop, {"momentum": -0.9}, r"^momentum must be a finite number >= 0, got -0\.9$"),
    (optim.RMSprop, {"eps": -1.0}, r"^eps must be a finite number >= 0, got -1\.0$"),
    (optim.Adam, {"betas": (1.0, 0.999)}, r"^beta1 must be in \[0, 1\), got 1\.0$"),
    (optim.Adam, {"betas": (0.9, -0.1)}, r"^beta2 must be a finite number >= 0, got -0\.1$"),
    (optim.Adam, {"betas": (0.9,)}, r"^betas must be a pair \(beta1, beta2\), got \(0\.9,\)$"),
    (optim.Adam, {"eps": -1e-8}, r"^eps must be a finite number >= 0, got -1e-08$"),
    (optim.Adam, {"weight_decay": -0.1}, r"^weight_decay must be a finite number >= 0, got -0\.1$"),
    (optim.AdamW, {"weight_decay": -0.1}, r"^weight_decay must be a finite number >= 0, got -0\.1$"),
    (optim.AdamW, {"lr": "0.1"}, r"^lr must be a finite number >= 0, got '0\.1'$"),
])
def test_bad_hyperparameters_raise(cls, kw, message):
    """Each bad value is refused by its own check, whose message names it and the value."""
    params, grads = make_params()
    with pytest.raises(ValueError, match=message):
        cls(params, grads, **kw)


def test_bad_arguments_raise():
    params, grads = make_params()
    opt = optim.Adam(params, grads)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1e-3
    with pytest.raises(ValueError, match="sgd, adagrad, rmsprop, adam, adamw"):
        optim.make_optimizer("lbfgs", params, grads, lr=0.1)
    with pytest.raises(ValueError, match="missing"):
        optim.SGD(params, {k: g for k, g in grads.items() if k != "scale"}, lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        optim.SGD(params, {**grads, "scale": np.zeros(2)}, lr=0.1)
    with pytest.raises(ValueError, match="constant, step, cosine"):
        optim.make_schedule("linear", 0.1, 100)
    with pytest.raises(ValueError, match="warmup"):
        optim.make_schedule("constant", 0.1, 100, warmup_steps=3)
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.cosine_with_warmup(0.1, warmup_steps=20, total_steps=10)
    with pytest.raises(ValueError, match="min_lr"):
        optim.cosine_with_warmup(0.1, warmup_steps=0, total_steps=10, min_lr=0.2)
    with pytest.raises(ValueError, match="step_size"):
        optim.step_decay(0.1, step_size=0, gamma=0.5)
    with pytest.raises(ValueError, match="gamma"):
        optim.step_decay(0.1, step_size=2, gamma=0.0)
    with pytest.raises(ValueError, match="step"):
        optim.constant(0.1)(-1)
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(grads, 0.0)
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value(grads, -1.0)
