"""Training: a tiny text is learned by heart, a stopped and resumed run equals the run straight
through bit for bit, NaN stops training and keeps the last good checkpoint, checkpoints load
into torch, and sampling from a checkpoint is reproducible."""

import math
import os
import shutil

import numpy as np
import pytest

import bptt.train as train_mod
from bptt import checkpoint as ckpt_io
from bptt.sample import load_model, sample
from bptt.train import TrainConfig, TrainingError, build_run, evaluate, fit

from training_helpers import (TINY, ckpt_step, cli, cli_proc, digests, latest, make_text, metrics,
                              read_bytes, torch_char_model, write_text)

PHRASE = "the cat sat on the mat; a dog ran far to the big red barn.\n"  # 59 characters


def tiny_config(tmp_path, data, **kw):
    base = dict(data=str(data), cell="lstm", hidden_size=16, num_layers=2, embedding_dim=8,
                seq_len=8, batch_size=4, steps=10, eval_every=1000, eval_batches=2,
                sample_length=0, checkpoint_every=1000, out=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- learning
def test_tiny_text_overfits(tmp_path):
    """A repeated 59-character phrase: LSTM 32, Adam 1e-2 -> under 0.1 nats/char in 150 steps."""
    data = write_text(tmp_path / "phrase.txt", PHRASE * 20)
    bound = 150
    cfg = tiny_config(tmp_path, data, hidden_size=32, num_layers=1, embedding_dim=16, seq_len=30,
                      batch_size=4, steps=bound, lr=1e-2, optimizer="adam", val_fraction=0.0)
    run = build_run(cfg)
    result = fit(run, progress=False)
    assert result["status"] == "finished" and result["step"] == bound
    losses = [r["loss"] for r in metrics(cfg.out)]
    assert len(losses) == bound
    assert losses[0] > 2.0  # it started from chance (ln 19 = 2.9)
    assert max(losses[-10:]) < 0.1, losses[-10:]
    # the whole training text, state carried, dropout off
    assert evaluate(run.model, run.train_batches) < 0.1
    # greedy decoding reproduces the phrase
    ids = run.model.generate(run.vocab.encode("the cat sat"), 48, temperature=0)
    assert "the cat sat" + run.vocab.decode(ids) == PHRASE[:59]


# ----------------------------------------------------------------------------- exact resume
def tensor_files(ckpt_dir):
    return {f: read_bytes(os.path.join(ckpt_dir, f)) for f in ("model.safetensors", "state.safetensors")}


def comparable_metrics(run_dir):
    return [{k: v for k, v in r.items() if k != "time"} for r in metrics(run_dir)]


def assert_same_run(a, b):
    """Two run directories hold the same checkpoints byte for byte and the same log."""
    names = sorted(n for n in os.listdir(a) if n.startswith("ckpt-"))
    assert names == sorted(n for n in os.listdir(b) if n.startswith("ckpt-"))
    for n in names:
        assert tensor_files(os.path.join(a, n)) == tensor_files(os.path.join(b, n)), n
    assert comparable_metrics(a) == comparable_metrics(b)


def test_resume_equals_straight_run_bit_for_bit(tmp_path, capsys):
    """A straight in this process; B stopped at 12 and resumed to 20, each leg a new process."""
    data = write_text(tmp_path / "text.txt", make_text(400))
    common = ["train", "--data", data, *TINY, "--dropout", "0.25", "--eval-every", "5",
              "--checkpoint-every", "7"]
    a, b = tmp_path / "A", tmp_path / "B"
    rc, _, err = cli(capsys, *common, "--steps", 20, "--out", a)
    assert rc == 0, err
    # B: 12 steps (7 does not divide 12: the end-of-run checkpoint), then a new process to 20
    r = cli_proc(*common, "--steps", 12, "--out", b)
    assert r.returncode == 0, r.stderr
    assert ckpt_step(latest(b)) == 12 and len(metrics(b)) == 12
    r = cli_proc("train", "--resume", b, "--steps", 20, "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"resuming {b} at step 12" in r.stderr
    assert ckpt_step(latest(b)) == 20
    assert_same_run(a, b)
    log = metrics(a)
    assert [r["step"] for r in log] == list(range(1, 21))
    assert [r["step"] for r in log if "val_loss" in r] == [5, 10, 15, 20]
    assert all(math.isfinite(r["loss"]) for r in log)

    # resuming from the mid-run checkpoint at step 14 (a copy of A) reproduces A's step 20
    c = tmp_path / "C"
    shutil.copytree(a, c)
    mid = c / "ckpt-00000014"
    assert mid.is_dir()
    rc, _, err = cli(capsys, "train", "--resume", mid, "--steps", 20, "--quiet")
    assert rc == 0, err
    assert f"resuming {c} at step 14" in err
    assert_same_run(a, c)


def test_resume_in_process_with_dropout_rng_and_carried_state(tmp_path):
    """The library path: build_run(resume=...) continues exactly; the dropout RNG matters."""
    data = write_text(tmp_path / "text.txt", make_text(400, seed=5))
    straight = tiny_config(tmp_path, data, cell="gru", dropout=0.4, steps=15, checkpoint_every=4,
                           eval_every=6, out=str(tmp_path / "straight"))
    fit(build_run(straight), progress=False)

    cfg = tiny_config(tmp_path, data, cell="gru", dropout=0.4, steps=9, checkpoint_every=4,
                      eval_every=6, out=str(tmp_path / "split"))
    fit(build_run(cfg), progress=False)
    run = build_run(None, resume=cfg.out, overrides={"steps": 15})
    assert run.step == 9 and run.state is not None  # the carried hidden state came back
    rng_state = run.model.rnn.rng.bit_generator.state
    fit(run, progress=False)
    assert_same_run(straight.out, cfg.out)

    # a different dropout RNG state after the resume would have given different weights
    shutil.rmtree(tmp_path / "split")
    fit(build_run(tiny_config(tmp_path, data, cell="gru", dropout=0.4, steps=9, checkpoint_every=4,
                              eval_every=6, out=str(tmp_path / "split"))), progress=False)
    run = build_run(None, resume=str(tmp_path / "split"), overrides={"steps": 15})
    assert run.model.rnn.rng.bit_generator.state == rng_state
    run.model.rnn.rng = np.random.default_rng(12345)
    fit(run, progress=False)
    final = "ckpt-00000015"
    assert (tensor_files(os.path.join(straight.out, final))["model.safetensors"]
            != tensor_files(os.path.join(tmp_path, "split", final))["model.safetensors"])


# ----------------------------------------------------------------------------- NaN
def test_nan_loss_stops_with_training_error_and_keeps_checkpoint(tmp_path, monkeypatch):
    data = write_text(tmp_path / "text.txt", make_text(300))
    cfg = tiny_config(tmp_path, data, steps=6)
    fit(build_run(cfg), progress=False)
    good = latest(cfg.out)
    before = digests(cfg.out)

    real, calls = train_mod.cross_entropy_forward, []

    def poisoned(logits, targets, *a, **kw):  # the third training step from here gives NaN
        loss, cache = real(logits, targets, *a, **kw)
        calls.append(1)
        return (float("nan") if len(calls) == 3 else loss), cache

    monkeypatch.setattr(train_mod, "cross_entropy_forward", poisoned)
    run = build_run(None, resume=cfg.out, overrides={"steps": 20})
    with pytest.raises(TrainingError) as err:
        fit(run, progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "nan" in msg.lower() and "step 9" in msg and os.path.basename(good) in msg
    assert latest(cfg.out) == good
    after = digests(cfg.out)
    for name, digest in before.items():  # the checkpoint files are untouched
        if name.startswith("ckpt-"):
            assert after[name] == digest, name
    monkeypatch.undo()
    _, meta, _, _ = ckpt_io.load_checkpoint(cfg.out)
    assert meta["step"] == 6


def test_exploding_sgd_gives_training_error(tmp_path):
    """Real overflow, no patching: SGD with lr 1e38 and no clipping (float32 overflows)."""
    data = write_text(tmp_path / "text.txt", make_text(300))
    cfg = tiny_config(tmp_path, data, optimizer="sgd", lr=1e38, clip=0.0, steps=50,
                      checkpoint_every=1)
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match=r"(?i)became (nan|inf|-inf)"):
        fit(build_run(cfg), progress=False)
    ckpt_dir, meta, _, _ = ckpt_io.load_checkpoint(cfg.out)  # checksums verified
    assert meta["step"] >= 1
    assert len(metrics(cfg.out)) >= meta["step"]


# ----------------------------------------------------------------------------- torch
@pytest.mark.parametrize("cell,dtype,tol", [("lstm", "float32", 1e-5), ("gru", "float32", 1e-5),
                                            ("lstm", "float64", 1e-10), ("rnn", "float64", 1e-10),
                                            ("gru", "float64", 1e-10)])
def test_checkpoint_loads_into_torch_module(tmp_path, cell, dtype, tol):
    import torch
    from safetensors.torch import load_file

    text = make_text(300)
    data = write_text(tmp_path / "text.txt", text)
    cfg = tiny_config(tmp_path, data, cell=cell, dtype=dtype, dropout=0.2, steps=8)
    fit(build_run(cfg), progress=False)

    model, vocab, meta = load_model(cfg.out)
    c = model.config
    tmod = torch_char_model(c.vocab_size, c.embedding_dim, c.hidden_size, c.num_layers, cell, dtype)
    weights = load_file(os.path.join(latest(cfg.out), "model.safetensors"))
    assert all(w.dtype == {"float32": torch.float32, "float64": torch.float64}[dtype]
               for w in weights.values())
    tmod.load_state_dict(weights, strict=True)
    tmod.eval()

    tokens = vocab.encode(text[:120]).astype(np.int64).reshape(4, 30).T.copy()  # (T=30, B=4)
    ours, s1 = model.forward(tokens[:15])
    ours2, s2 = model.forward(tokens[15:], s1)  # carried state
    with torch.no_grad():
        theirs, t1 = tmod(torch.from_numpy(tokens[:15]))
        theirs2, t2 = tmod(torch.from_numpy(tokens[15:]), t1)
    scale = max(1.0, float(np.abs(ours).max()))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=tol * scale)
    np.testing.assert_allclose(ours2, theirs2.numpy(), rtol=0, atol=tol * scale)
    for a, b in zip(s2 if isinstance(s2, tuple) else (s2,), t2 if isinstance(t2, tuple) else (t2,)):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=tol)


# ----------------------------------------------------------------------------- sampling
def test_sampling_from_checkpoint_is_reproducible(tmp_path):
    data = write_text(tmp_path / "text.txt", make_text(300))
    cfg = tiny_config(tmp_path, data, steps=20, lr=1e-2)
    fit(build_run(cfg), progress=False)
    model, vocab, _ = load_model(cfg.out)
    a = sample(model, vocab, 80, temperature=1.0, seed=7)
    assert a == sample(model, vocab, 80, temperature=1.0, seed=7)
    assert a != sample(model, vocab, 80, temperature=1.0, seed=8)
    assert len(a) == 80
    greedy = sample(model, vocab, 80, temperature=0, seed=1)
    assert greedy == sample(model, vocab, 80, temperature=0, seed=2)
    assert greedy == sample(model, vocab, 80, temperature=0.8, top_k=1, seed=3)
    primed = sample(model, vocab, 30, temperature=0.8, prime="the dog", seed=7)
    assert primed.startswith("the dog") and len(primed) == len("the dog") + 30
    # a fresh load gives the same text (nothing in the model depends on the process)
    model2, _, _ = load_model(latest(cfg.out))
    assert sample(model2, vocab, 80, temperature=1.0, seed=7) == a


def test_prepare_kernels_leaves_the_model_as_it_was():
    """The warm-up before the clock starts changes nothing a run depends on."""
    from bptt import CharModel, ModelConfig

    model = CharModel(ModelConfig(7, "lstm", 8, 2, 4, dropout=0.5), seed=0)
    rng_state = model.rnn.rng.bit_generator.state
    params = {k: v.copy() for k, v in model.params.items()}
    said = []
    took = train_mod.prepare_kernels(model, said.append)
    assert model.rnn.training
    assert all(np.array_equal(model.params[k], v) for k, v in params.items())
    assert all(not g.any() for g in model.grads.values())
    assert model.rnn.rng.bit_generator.state == rng_state
    assert took >= 0 and (said == [] or said[-1].startswith("kernels ready"))
