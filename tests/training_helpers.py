"""Small shared helpers for the training, checkpoint and command-line tests: tiny texts, tiny
training options, running ``bptt`` in this process or in a child process, and file digests."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAKESPEARE = os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt")

WORDS = "the cat sat on a mat and dog ran far to big red barn with sun over hill".split()

# a model small enough that a step takes about a millisecond
TINY = ["--hidden", "16", "--layers", "2", "--embedding-dim", "8", "--seq-len", "8",
        "--batch", "4", "--eval-batches", "2", "--sample-length", "10", "--quiet"]


def make_text(n_words=400, seed=0):
    """Deterministic pseudo-English from a small word list, a newline every 12 words."""
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, n_words)
    lines = [" ".join(words[i:i + 12]) + "." for i in range(0, n_words, 12)]
    return "\n".join(lines) + "\n"


def write_text(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return str(path)


def cli(capsys, *args):
    """Run ``bptt ARGS`` in this process -> (exit code, stdout, stderr)."""
    from bptt.cli import main

    capsys.readouterr()  # drop what came before
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def cli_proc(*args, timeout=120):
    """Run ``python -m bptt.cli ARGS`` in a child process -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "bptt.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def digests(run_dir):
    """relative path -> SHA-256 of every file under run_dir."""
    out = {}
    for root, _, files in os.walk(run_dir):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, run_dir)] = hashlib.sha256(f.read()).hexdigest()
    return out


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def latest(run_dir):
    with open(os.path.join(run_dir, "latest"), encoding="utf-8") as f:
        return os.path.join(run_dir, f.read().strip())


def ckpt_step(ckpt_dir):
    with open(os.path.join(ckpt_dir, "checkpoint.json"), encoding="utf-8") as f:
        return json.load(f)["step"]


def one_error_line(err):
    """stderr of a failed command -> its single line (asserting there is exactly one)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines[0]


def torch_char_model(vocab_size, embedding_dim, hidden_size, num_layers, cell, dtype="float32"):
    """The torch module whose state dict a bptt CharModel checkpoint loads into."""
    import torch
    from torch import nn

    class TorchCharModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embedding_dim)
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](
                embedding_dim, hidden_size, num_layers)
            self.head = nn.Linear(hidden_size, vocab_size)

        def forward(self, tokens, state=None):  # tokens (T, B) -> logits (T, B, V), state
            out, state = self.rnn(self.embedding(tokens), state)
            return self.head(out), state

    return TorchCharModel().to({"float32": torch.float32, "float64": torch.float64}[dtype])
