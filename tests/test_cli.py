"""The ``bptt`` command: Ctrl-C, NaN, sampling, evaluation, help, and bad input — each bad input a
one-line error naming the problem, a non-zero exit, and nothing already saved changed."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest

import bptt.train as train_mod
from bptt import checkpoint as ckpt_io
from bptt.cli import main
from bptt.sample import evaluate_text, load_model, sample
from bptt.train import TrainConfig
from fault_cases import edit_meta

from training_helpers import (REPO, SHAKESPEARE, TINY, ckpt_step, cli, digests, latest, make_text,
                              metrics, one_error_line, read_bytes, write_text)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 12-step run (checkpoints at 10 and 12), shared read-only by the tests here."""
    d = tmp_path_factory.mktemp("trained")
    text = make_text(400)
    data = write_text(d / "text.txt", text)
    run = str(d / "run")
    rc = main(["train", "--data", data, *TINY, "--dropout", "0.1", "--steps", "12",
               "--checkpoint-every", "5", "--eval-every", "6", "--lr", "0.01", "--out", run])
    assert rc == 0
    assert sorted(n for n in os.listdir(run) if n.startswith("ckpt-")) == ["ckpt-00000010", "ckpt-00000012"]
    return SimpleNamespace(dir=d, data=data, text=text, run=run)


# ----------------------------------------------------------------------------- Ctrl-C
def test_sigint_saves_checkpoint_and_resume_continues(tmp_path, capsys):
    data = write_text(tmp_path / "text.txt", make_text(400))
    out = str(tmp_path / "run")
    args = ["train", "--data", data, *TINY, "--dropout", "0.2", "--eval-every", "1000000",
            "--checkpoint-every", "5"]
    proc = subprocess.Popen([sys.executable, "-m", "bptt.cli", *args, "--steps", "1000000", "--out", out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(out, "latest")):  # the first checkpoint: in the loop
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"bptt train --resume {out}" in stdout
    assert "interrupted at step" in stdout

    _, meta, weights, _ = ckpt_io.load_checkpoint(out)  # readable, checksums verified
    step = meta["step"]
    assert step >= 5 and step == ckpt_step(latest(out))
    assert stdout.count(f"interrupted at step {step};") == 1
    assert [r["step"] for r in metrics(out)] == list(range(1, step + 1))
    assert all(np.isfinite(w).all() for w in weights.values())

    # the resumed run goes to the end, and ends where a run straight through ends
    end = step + 7
    rc, _, err = cli(capsys, "train", "--resume", out, "--steps", end)
    assert rc == 0, err
    assert ckpt_step(latest(out)) == end
    assert [r["step"] for r in metrics(out)] == list(range(1, end + 1))
    straight = str(tmp_path / "straight")
    rc, _, err = cli(capsys, *args, "--steps", end, "--out", straight)
    assert rc == 0, err
    for f in ("model.safetensors", "state.safetensors"):
        assert read_bytes(os.path.join(latest(out), f)) == read_bytes(os.path.join(latest(straight), f))
    assert ([r["loss"] for r in metrics(out)] == [r["loss"] for r in metrics(straight)])


# ----------------------------------------------------------------------------- NaN
def test_nan_loss_exits_nonzero_with_one_line_and_keeps_checkpoint(tmp_path, capsys, monkeypatch):
    data = write_text(tmp_path / "text.txt", make_text(300))
    run = str(tmp_path / "run")
    rc, _, err = cli(capsys, "train", "--data", data, *TINY, "--steps", 6, "--out", run)
    assert rc == 0, err
    good, before = latest(run), digests(run)

    real, calls = train_mod.cross_entropy_forward, []

    def poisoned(logits, targets, *a, **kw):
        loss, cache = real(logits, targets, *a, **kw)
        calls.append(1)
        return (float("inf") if len(calls) == 2 else loss), cache

    monkeypatch.setattr(train_mod, "cross_entropy_forward", poisoned)
    rc, out, err = cli(capsys, "train", "--resume", run, "--steps", 20)
    assert rc != 0
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("bptt:")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err
    assert re.search(r"bptt: error: the loss became inf at step 8; training stopped\. "
                     r"The last checkpoint is kept: .*ckpt-00000006$", errors[0]), errors[0]
    assert latest(run) == good
    after = digests(run)
    assert {k: v for k, v in after.items() if k.startswith("ckpt-")} == \
           {k: v for k, v in before.items() if k.startswith("ckpt-")}
    monkeypatch.undo()
    rc, out, err = cli(capsys, "sample", run, "--length", 20)  # still loadable
    assert rc == 0 and len(out) == 21, err


def test_real_overflow_exits_nonzero_and_last_checkpoint_loads(tmp_path, capsys):
    data = write_text(tmp_path / "text.txt", make_text(300))
    run = str(tmp_path / "run")
    with np.errstate(all="ignore"):
        rc, _, err = cli(capsys, "train", "--data", data, *TINY, "--optimizer", "sgd", "--lr", "1e38",
                         "--clip", "0", "--steps", 50, "--checkpoint-every", 1, "--out", run)
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("bptt:")]
    assert len(errors) == 1 and re.search(r"(?i)became (nan|inf|-inf) at step \d+", errors[0]), err
    assert "Traceback" not in err
    ckpt_dir, meta, _, _ = ckpt_io.load_checkpoint(run)
    assert meta["step"] >= 1 and os.path.basename(ckpt_dir) in errors[0]


# ----------------------------------------------------------------------------- sampling
def test_sample_is_reproducible(trained, capsys):
    run = trained.run
    s = lambda *a: cli(capsys, "sample", run, "--length", 60, *a)  # noqa: E731
    rc, a, err = s("--seed", 3)
    assert rc == 0, err
    assert len(a) == 61 and a.endswith("\n")
    assert s("--seed", 3)[1] == a
    assert s("--seed", 4)[1] != a
    # the library gives the same text
    model, vocab, _ = load_model(run)
    assert sample(model, vocab, 60, temperature=0.8, seed=3) + "\n" == a
    # and so does another process
    proc = subprocess.run([sys.executable, "-m", "bptt.cli", "sample", run, "--length", "60", "--seed", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == a, proc.stderr

    greedy = s("--temperature", 0, "--seed", 1)[1]
    assert s("--temperature", 0, "--seed", 2)[1] == greedy
    assert s("--top-k", 1, "--seed", 5)[1] == greedy
    ids = model.generate(vocab.encode("\n"), 60, temperature=0)
    assert greedy == vocab.decode(ids) + "\n"

    rc, primed, _ = s("--prime", "the dog", "--seed", 3)
    assert rc == 0 and primed.startswith("the dog") and len(primed) == len("the dog") + 61


# ----------------------------------------------------------------------------- eval, help
def test_eval_prints_consistent_nats_bits_perplexity(tmp_path, capsys):
    """Train a few steps on tiny-shakespeare (65 characters), evaluate on a small text."""
    run = str(tmp_path / "run")
    rc, out, err = cli(capsys, "train", "--data", SHAKESPEARE, *TINY, "--steps", 10, "--out", run)
    assert rc == 0, err
    assert "vocabulary 65 characters" in err and "finished 10 steps" in out
    text = make_text(200, seed=3)
    data = write_text(tmp_path / "eval.txt", text)
    rc, out, err = cli(capsys, "eval", run, "--data", data, "--batch", 4, "--seq-len", 32)
    assert rc == 0, err
    nats = float(re.search(r"([\d.]+) nats/char", out).group(1))
    bits = float(re.search(r"([\d.]+) bits/char", out).group(1))
    ppl = float(re.search(r"perplexity\s+([\d.]+)", out).group(1))
    assert abs(bits - nats / math.log(2)) < 2e-4
    assert abs(ppl - math.exp(nats)) < 1e-3 + 1e-4 * ppl
    assert 2.0 < nats < math.log(65) + 0.5
    model, vocab, _ = load_model(run)
    r = evaluate_text(model, vocab, text, 4, 32)
    assert abs(r["nats_per_char"] - nats) < 1e-4
    assert f"{r['characters']:,} characters" in out


def test_train_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    d = TrainConfig()
    flag = {"hidden_size": "--hidden", "num_layers": "--layers", "batch_size": "--batch"}
    opts = []
    for f in fields(TrainConfig):
        opt = flag.get(f.name, "--" + f.name.replace("_", "-"))
        assert opt in text, opt
        opts.append(opt)
    # each option's own help, up to the next option
    starts = sorted((m.start(), m.group(1)) for m in re.finditer(r" (--[a-z-]+) [A-Z{_]", text.split("options:")[1]))
    body = text.split("options:")[1]
    helps = {}
    for (s, name), nxt in zip(starts, starts[1:] + [(len(body), None)]):
        helps.setdefault(name, body[s:nxt[0]])
    for f in fields(TrainConfig):
        opt = flag.get(f.name, "--" + f.name.replace("_", "-"))
        if opt == "--steps":  # the alternative to --minutes, which has the default
            continue
        h = helps[opt]
        v = getattr(d, f.name)
        if v is None:
            assert "default" in h, (opt, h)
        else:
            shown = {str(v), f"{v:g}"} if isinstance(v, float) else {str(v)}
            assert any(re.search(rf"\(default:? {re.escape(x)}[);]", h) for x in shown), (opt, h)
    assert "--resume" in text and "--quiet" in text


# ----------------------------------------------------------------------------- bad input
def _train(tmp, data, *extra):
    return ["train", "--data", data, *TINY, "--steps", 3, "--out", tmp / "new", *extra]


def _file(tmp, name, content):
    p = tmp / name
    p.write_bytes(content)
    return p


BAD = {
    "missing data file": (lambda t, p: _train(p, p / "nope.txt"), r"data file not found: .*nope\.txt$"),
    "empty data file": (lambda t, p: _train(p, _file(p, "empty.txt", b"")), r"empty\.txt is empty$"),
    "non-UTF-8 data file": (lambda t, p: _train(p, _file(p, "latin.txt", "caf\xe9 ol\xe9\n".encode("latin-1"))),
                            r"latin\.txt is not UTF-8 text \(invalid byte 0xe9 at offset 3\)$"),
    "binary data file": (lambda t, p: _train(p, _file(p, "bin.dat", b"ab\x00cd" * 100)), r"bin\.dat .*binary"),
    "data is a directory": (lambda t, p: _train(p, p), r"is a directory, not a text file$"),
    "data too short for seq-len x batch": (lambda t, p: _train(p, t.data, "--seq-len", 200, "--batch", 8),
                                           r"sequence length 200 x batch 8 needs at least 8\*200\+1 = 1601 characters, the training data has \d+$"),
    "seq-len 0": (lambda t, p: _train(p, t.data, "--seq-len", 0), r"--seq-len: expected a positive integer, got 0"),
    "negative batch": (lambda t, p: _train(p, t.data, "--batch", -3), r"--batch: expected a positive integer, got -3"),
    "dropout 1": (lambda t, p: _train(p, t.data, "--dropout", 1), r"dropout must be in \[0, 1\), got 1"),
    "unknown cell": (lambda t, p: _train(p, t.data, "--cell", "transformer"), r"--cell: invalid choice: 'transformer'"),
    "unknown optimizer": (lambda t, p: _train(p, t.data, "--optimizer", "adamax"), r"--optimizer: invalid choice: 'adamax'"),
    "train into an existing run": (lambda t, p: ["train", "--data", t.data, *TINY, "--steps", 3, "--out", t.run],
                                   r"already holds a run; resume it with --resume"),
    "resume changing the model": (lambda t, p: ["train", "--resume", t.run, "--hidden", 32, "--steps", 20],
                                  r"--hidden cannot change when resuming"),
    "sample a non-run directory": (lambda t, p: ["sample", _file(p, "notes.txt", b"x").parent],
                                   r"holds no checkpoint \(not a bptt run directory\)$"),
    "sample a missing run": (lambda t, p: ["sample", p / "nowhere"], r"no run or checkpoint at .*nowhere$"),
    "sample a file": (lambda t, p: ["sample", t.data], r"text\.txt is not a run directory"),
    "eval a text with unseen characters": (lambda t, p: ["eval", t.run, "--data", _file(p, "u.txt", b"the Zebra ate QQ x")],
                                           r"3 characters not in the model's vocabulary: 'Z', 'Q', 'x'$"),
    "eval a missing file": (lambda t, p: ["eval", t.run, "--data", p / "nope.txt"], r"data file not found"),
    "eval without --data": (lambda t, p: ["eval", t.run], r"the following arguments are required: --data"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_error(case, trained, tmp_path, capsys):
    args, pattern = BAD[case]
    argv = args(trained, tmp_path)
    before = digests(trained.run)
    rc, out, err = cli(capsys, *argv)
    assert rc != 0
    line = one_error_line(err)
    assert line.startswith(("bptt: error: ", "error: bptt")), line
    assert re.search(pattern, line), line
    assert digests(trained.run) == before  # nothing already saved changed
    assert not (tmp_path / "new").exists()  # nothing half-made either


def _flip_byte(path):
    b = bytearray(read_bytes(path))
    b[len(b) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(b)


def _truncate(path, keep=100):
    with open(path, "r+b") as f:
        f.truncate(keep)


_edit_meta = edit_meta  # rewrite checkpoint.json through fn (shared with the fault tests)


# a damaged newest checkpoint points to the older one kept beside it
OLDER = r"; an older checkpoint is \S+ckpt-\d{8} \(give that path instead\)$"

CORRUPT = {
    "truncated weights": (lambda c: _truncate(os.path.join(c, "model.safetensors")),
                          r"model\.safetensors is damaged"),
    "flipped byte in weights": (lambda c: _flip_byte(os.path.join(c, "model.safetensors")),
                                r"model\.safetensors is damaged: its checksum does not match checkpoint\.json" + OLDER),
    "flipped byte in state": (lambda c: _flip_byte(os.path.join(c, "state.safetensors")),
                              r"state\.safetensors is damaged: its checksum does not match"),
    "truncated weights, no checksums": (lambda c: (_edit_meta(c, lambda m: m.pop("files")),
                                                   _truncate(os.path.join(c, "model.safetensors"))),
                                        r"model\.safetensors is damaged: \S"),
    "format version changed": (lambda c: _edit_meta(c, lambda m: m.update(format_version=2)),
                               r"checkpoint\.json has format version 2; this bptt reads version 1" + OLDER),
    "not a bptt checkpoint": (lambda c: _edit_meta(c, lambda m: m.update(format="other")),
                              r"checkpoint\.json is not a bptt checkpoint" + OLDER),
    "damaged checkpoint.json": (lambda c: _truncate(os.path.join(c, "checkpoint.json"), 40),
                                r"checkpoint\.json is damaged"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_bad_checkpoint_one_line_error(case, trained, tmp_path, capsys):
    damage, pattern = CORRUPT[case]
    run = str(tmp_path / "run")
    shutil.copytree(trained.run, run)
    damage(latest(run))
    before = digests(run)
    for argv in (["sample", run, "--length", 10],
                 ["eval", run, "--data", trained.data],
                 ["train", "--resume", run, "--steps", 20]):
        rc, _, err = cli(capsys, *argv)
        assert rc != 0, argv
        line = one_error_line(err)
        assert line.startswith("bptt: error: ") and re.search(pattern, line), (argv, line)
        assert digests(run) == before, argv


def test_resume_with_changed_data_is_refused(tmp_path, capsys):
    data = write_text(tmp_path / "text.txt", make_text(300))
    run = str(tmp_path / "run")
    assert cli(capsys, "train", "--data", data, *TINY, "--steps", 4, "--out", run)[0] == 0
    before = digests(run)
    write_text(data, make_text(300, seed=9))
    rc, _, err = cli(capsys, "train", "--resume", run, "--steps", 8)
    assert rc != 0
    assert re.search(r"the training data changed since the checkpoint", one_error_line(err))
    assert digests(run) == before


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "bptt.cli", "sample", "/nonexistent/run"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == "bptt: error: no run or checkpoint at /nonexistent/run\n"
