"""The classic BPTT tasks (bptt.tasks) at small size: each one's learned behaviour, determinism,
the command line and the one-line errors on bad input."""

import json
import os

import numpy as np
import pytest

from bptt import cli
from bptt.tasks import (forecast, load_series, run_adding, run_binary_add, run_copy, run_echo,
                        run_next_prime, run_series)
from bptt.tasks.binary_add import add, split_pairs
from bptt.tasks.echo import REFERENCE_LOSS
from bptt.tasks.long_lag import adding_batch, copy_batch


# ----------------------------------------------------------------------------- binary addition
def test_binary_add_split_holds_pairs_out():
    (ha, hb), (ta, tb) = split_pairs(8, 0.25, seed=3)
    held = set(zip(ha.tolist(), hb.tolist()))
    train = set(zip(ta.tolist(), tb.tolist()))
    assert len(held) == 16384 and not held & train and len(held | train) == 65536


def test_binary_add_exact_on_held_out_pairs_and_on_16_and_32_bits():
    r = run_binary_add(samples=4000, batch=4, test_pairs=2000, seed=0, progress=False)
    assert r["samples"] <= 10_000
    assert r["held_out_exact"] == 1.0  # every one of the 16,384 held-out sums, all 9 bits
    assert r["exact_16bit"] == 1.0 and r["exact_32bit"] == 1.0
    assert add(r["model"], [2**32 - 1, 123456789], [1, 987654321], 32) == [2**32, 1111111110]


# ----------------------------------------------------------------------------- echo, next prime
def test_echo_reaches_the_reference_loss_in_100_steps():
    """Within 1.2x of the reference's loss at step 100 (2.6e-6), on every seed tried, with the
    improved setup (a Linear head, SGD lr 0.1 with momentum 0.5). The reference setup itself
    (readout h[0], plain SGD) does not get there reliably with PyTorch's LSTM (tanh on the cell
    output, which the reference lacks): 3.4e-6 at seed 0, a median of 5.5e-5 over 8 seeds
    (BENCHMARKS.md); it is checked here only to learn the targets."""
    for seed in (0, 1, 2):
        r = run_echo(readout="linear", momentum=0.5, seed=seed, progress=False)
        assert r["steps"] == 100
        assert r["loss_at_last_step"] <= 1.2 * REFERENCE_LOSS, (seed, r["loss_at_last_step"])
        assert np.allclose(r["predictions"], [-0.5, 0.2, 0.1, -0.5], atol=2e-3)
    r = run_echo(seed=0, progress=False)  # the reference setup
    assert r["steps"] == 100 and r["loss_at_last_step"] < 1e-5
    assert np.allclose(r["predictions"], [-0.5, 0.2, 0.1, -0.5], atol=2e-3)


def test_next_prime_predictions_round_to_the_true_primes():
    r = run_next_prime(steps=500, readout="linear", momentum=0.9, seed=0, progress=False)
    assert r["true_primes"] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert r["predicted_primes"] == r["true_primes"] and r["all_correct"]


# ----------------------------------------------------------------------------- long lags
def test_long_lag_data_layout():
    x, target, mask = adding_batch(np.random.default_rng(0), 20, 4)
    assert x.shape == (20, 4, 2) and np.all(x[:, :, 1].sum(0) == 2)
    assert np.all(x[:10, :, 1].sum(0) == 1)  # one marker in each half
    assert np.allclose(target[-1, :, 0], (x[:, :, 0] * x[:, :, 1]).sum(0)) and mask.sum() == 4
    x, target, mask = copy_batch(np.random.default_rng(0), 7, 3, length=3, alphabet=4)
    assert x.shape == (13, 3, 6) and np.all(x[10].argmax(-1) == 5)  # the marker after 3 + 7
    assert np.array_equal(target[10:], x[:3].argmax(-1)) and mask.sum() == 9


def test_lstm_solves_the_adding_problem_where_the_plain_rnn_does_not():
    kw = dict(lag=30, hidden=32, lr=1e-2, steps=800, batch=32, eval_every=100, eval_size=500,
              seed=0, progress=False)
    lstm = run_adding(cell="lstm", **kw)
    rnn = run_adding(cell="rnn", **kw)
    assert lstm["solved"] and lstm["held_out_mse"] < 0.01
    assert not rnn["solved"] and rnn["best_held_out_mse"] > 0.05


def test_copy_learns_at_a_short_lag():
    r = run_copy(lag=5, cell="gru", hidden=32, length=2, alphabet=4, lr=1e-2, steps=800,
                 eval_every=100, eval_size=300, seed=0, progress=False)
    assert r["solved"] and r["held_out_accuracy"] >= 0.99


# ----------------------------------------------------------------------------- series
def _noisy_sine(n=800, seed=0):
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 40) + 0.1 * np.random.default_rng(seed).standard_normal(n)


def test_series_beats_the_naive_forecast_and_forecasts_ahead():
    v = _noisy_sine()
    r = run_series(values=v, window=20, hidden=16, steps=250, seed=0, progress=False)
    assert r["test_mse"] < 0.7 * r["naive_mse"]
    ahead = forecast(r["model"], v[-20:], r["mean"], r["std"], 5)
    truth = np.sin(2 * np.pi * np.arange(800, 805) / 40)
    assert len(ahead) == 5 and np.max(np.abs(np.array(ahead) - truth)) < 0.3


# ----------------------------------------------------------------------------- determinism
def test_a_fixed_seed_gives_the_same_result_twice():
    a = run_echo(steps=20, seed=5, progress=False)
    b = run_echo(steps=20, seed=5, progress=False)
    assert a["curve"] == b["curve"] and a["predictions"] == b["predictions"]
    kw = dict(lag=12, hidden=8, steps=30, eval_every=10, eval_size=50, seed=1, progress=False)
    a, b = run_adding(**kw), run_adding(**kw)
    assert a["curve"] == b["curve"] and a["evals"] == b["evals"]
    c = run_adding(**{**kw, "seed": 2})
    assert c["curve"] != a["curve"]


# ----------------------------------------------------------------------------- command line
def _write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(c) for c in r) + "\n")
    return str(path)


def _main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [
    ["--task", "echo", "--steps", "3"],
    ["--task", "next-prime", "--steps", "3", "--readout", "linear"],
    ["--task", "binary-add", "--steps", "4", "--batch", "2", "--eval-every", "2"],
    ["--task", "adding", "--lag", "6", "--steps", "4", "--hidden", "4", "--eval-every", "2", "--cell", "gru"],
    ["--task", "copy", "--lag", "3", "--steps", "4", "--hidden", "4", "--symbols", "2", "--alphabet", "3"],
])
def test_cli_train_task_runs_and_saves(argv, tmp_path, capsys):
    """The command trains exactly what the library function trains with the same options (the
    same loss at every step) and saves that model's weights."""
    from bptt.tasks import TASKS, load_run
    from bptt.tasks_cli import task_kwargs

    out = str(tmp_path / "run")
    code, stdout, err = _main(["train", *argv, "--quiet", "--out", out], capsys)
    assert code == 0, err
    assert "reference" in stdout and "run saved" in stdout
    with open(os.path.join(out, "result.json")) as f:
        saved = json.load(f)
    assert saved["task"] == argv[1]
    want = TASKS[argv[1]](progress=False, **task_kwargs(cli.build_parser().parse_args(["train", *argv])))
    assert saved["steps"] == want["steps"] == int(argv[argv.index("--steps") + 1])
    assert [tuple(p) for p in saved["curve"]] == [tuple(p) for p in want["curve"]]
    assert all(np.isfinite(loss) for _, loss in saved["curve"])
    model, meta = load_run(out)
    assert meta["result"]["steps"] == saved["steps"]
    got, ref = model.state_dict(), want["model"].state_dict()
    assert sorted(got) == sorted(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def test_cli_series_train_and_forecast(tmp_path, capsys):
    v = _noisy_sine(300)
    csv = _write_csv(tmp_path / "s.csv", ["t", "y"], [(i, f"{x:.5f}") for i, x in enumerate(v)])
    out = str(tmp_path / "run")
    code, stdout, err = _main(["train", "--task", "series", "--data", csv, "--column", "y", "--window", "10",
                               "--hidden", "8", "--steps", "20", "--quiet", "--out", out], capsys)
    assert code == 0, err
    assert "naive" in stdout
    code, stdout, err = _main(["forecast", out, "--steps", "4"], capsys)
    assert code == 0, err
    values = [float(s) for s in stdout.split()]
    assert len(values) == 4 and all(np.isfinite(values))
    code, stdout2, err = _main(["forecast", out, "--steps", "4", "--data", csv], capsys)
    assert code == 0 and stdout2 == stdout  # the same tail


def _error(argv, capsys, code=1):
    got, stdout, err = _main(argv, capsys)
    assert got == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_bad_task_input_gets_a_one_line_error(tmp_path, capsys):
    assert "invalid choice" in _error(["train", "--task", "nope"], capsys, code=2)
    missing = str(tmp_path / "missing.csv")
    msg = _error(["train", "--task", "series", "--data", missing, "--column", "y"], capsys)
    assert "missing.csv" in msg and "no such file" in msg
    csv = _write_csv(tmp_path / "a.csv", ["t", "y"], [(i, i * 0.5) for i in range(50)])
    msg = _error(["train", "--task", "series", "--data", csv, "--column", "price"], capsys)
    assert "no column 'price'" in msg and "t, y" in msg
    msg = _error(["train", "--task", "series", "--data", csv], capsys)
    assert "choose one with --column" in msg
    bad = _write_csv(tmp_path / "b.csv", ["y"], [[1.0], [2.0], ["abc"], [4.0]])
    msg = _error(["train", "--task", "series", "--data", bad, "--column", "y"], capsys)
    assert "line 4" in msg and "'abc'" in msg and "not a number" in msg
    short = _write_csv(tmp_path / "c.csv", ["y"], [[float(i)] for i in range(12)])
    msg = _error(["train", "--task", "series", "--data", short, "--window", "16"], capsys)
    assert "has 12 values" in msg and "window of 16" in msg
    msg = _error(["train", "--task", "echo", "--lag", "5"], capsys)
    assert "--lag does not apply to --task echo" in msg
    msg = _error(["train", "--window", "5"], capsys)
    assert "--window needs a --task" in msg
    assert "no run or checkpoint" in _error(["forecast", str(tmp_path / "none")], capsys)


def test_forecast_refuses_a_run_of_another_task(tmp_path, capsys):
    out = str(tmp_path / "echo")
    assert _main(["train", "--task", "echo", "--steps", "2", "--quiet", "--out", out], capsys)[0] == 0
    assert "holds a 'echo' task run; forecasting needs a 'series' run" in _error(["forecast", out], capsys)


def test_load_series_reads_the_column(tmp_path):
    csv = _write_csv(tmp_path / "d.csv", ["date", "value"], [("2020-01-0%d" % i, i * 1.5) for i in range(1, 6)])
    assert load_series(csv, "value").tolist() == [1.5, 3.0, 4.5, 6.0, 7.5]
