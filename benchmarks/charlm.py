"""Character language model, bptt against PyTorch at equal wall-clock time.

Both train the same architecture from the same initial weights with the same hyperparameters
and the same batches on tiny-shakespeare (Embedding -> 2-layer LSTM 256 -> Linear; batch 64,
seq 64, Adam 2e-3, clip 5, 90/10 split), each for the same time budget, one after the other on
the same threads. Both are then evaluated on the whole validation split the same way.

    python benchmarks/charlm.py                 # 10 minutes each (the reported figures)
    python benchmarks/charlm.py --minutes 0.5   # a quick look
"""

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bptt  # noqa: E402
from bptt.data import load_text, prepare  # noqa: E402
from bptt.loss import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from bptt.optim import Adam, clip_grad_norm  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt")


def torch_model(cfg):
    import torch

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
            rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.cell]
            self.rnn = rnn(cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, dropout=cfg.dropout)
            self.head = torch.nn.Linear(cfg.hidden_size, cfg.vocab_size)

        def forward(self, x, state=None):
            out, state = self.rnn(self.embedding(x), state)
            return self.head(out), state

    return CharLM()


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def train_bptt(model, batches, seconds, lr, clip):
    opt = Adam(model.params, model.grads, lr=lr)
    state, steps, t0 = None, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x, y, new_epoch = batches.next()
        if new_epoch:
            state = None
        logits, state = model.forward(x, state)
        loss, cache = cross_entropy_forward(logits, y)
        model.zero_grad()
        model.backward(cross_entropy_backward(cache))
        clip_grad_norm(model.grads, clip)
        opt.step()
        steps += 1
    return steps, time.perf_counter() - t0, loss


def train_torch(model, batches, seconds, lr, clip):
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    state, steps, t0 = None, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x, y, new_epoch = batches.next()
        if new_epoch:
            state = None
        logits, state = model(torch.from_numpy(x.astype(np.int64)), state)
        state = detach(state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(y.astype(np.int64)).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        steps += 1
    return steps, time.perf_counter() - t0, loss.item()


def eval_bptt(model, batches):
    model.eval()
    total, n, state = 0.0, 0, None
    for x, y in batches.chunks():
        logits, state = model.forward(x, state)
        total += cross_entropy_forward(logits.astype(np.float64), y)[0] * y.size
        n += y.size
    return total / n


def eval_torch(model, batches):
    import torch

    model.eval()
    total, n, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in batches.chunks():
            logits, state = model(torch.from_numpy(x.astype(np.int64)), state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(),
                                                     torch.from_numpy(y.astype(np.int64)).reshape(-1))
            total += loss.item() * y.size
            n += y.size
    return total / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget of each library")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embedding-dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write the result into BENCHMARKS.md")
    args = ap.parse_args(argv)

    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    text = load_text(args.data)
    vocab, _, _ = prepare(text, 0.1, args.batch, args.seq_len)
    cfg = bptt.ModelConfig(len(vocab), args.cell, args.hidden, args.layers, args.embedding_dim)
    ours = bptt.CharModel(cfg, dtype="float32", seed=args.seed)
    theirs = torch_model(cfg)
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    seconds = args.minutes * 60
    results = {}
    for name, model, trainer, evaluator in (("bptt", ours, train_bptt, eval_bptt),
                                            ("pytorch", theirs, train_torch, eval_torch)):
        _, train_b, val_b = prepare(text, 0.1, args.batch, args.seq_len, vocab=vocab)
        print(f"training {name} for {args.minutes:g} min ...", file=sys.stderr)
        steps, took, last = trainer(model, train_b, seconds, args.lr, args.clip)
        val = evaluator(model, val_b)
        results[name] = {"steps": steps, "seconds": took, "chars_per_s": steps * args.batch * args.seq_len / took,
                         "train_loss": last, "val_loss": val}
    cmd = "python benchmarks/charlm.py" + ("" if args.minutes == 10 else f" --minutes {args.minutes:g}")
    lines = [
        "## Character language model at equal time (`benchmarks/charlm.py`)",
        "",
        f"tiny-shakespeare, {args.cell.upper()} {args.layers}x{args.hidden}, embedding {args.embedding_dim}, "
        f"batch {args.batch}, seq {args.seq_len}, Adam {args.lr:g}, clip {args.clip:g}, 90/10 split, same initial "
        f"weights, {args.minutes:g} min of training each, {threads} threads. Validation loss over the whole "
        f"validation split ({len(val_b) * args.batch * args.seq_len:,} characters).",
        "",
        "| library | steps | chars/s | last train loss | val loss (nats/char) | val bits/char |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['steps']:,} | {r['chars_per_s']:,.0f} | {r['train_loss']:.4f} | "
                     f"{r['val_loss']:.4f} | {r['val_loss'] / math.log(2):.4f} |")
    from _report import machine_line, write_section

    lines += ["", f"Command: `{cmd}`. Machine: {machine_line()}."]
    report = "\n".join(lines)
    print(report)
    if args.write:
        print("written to", write_section("charlm", report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
