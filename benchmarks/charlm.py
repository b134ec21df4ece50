"""Character language model, bptt against PyTorch at equal training time, each in its own process.

The recipe is bptt's preset shakespeare-10min (`bptt train --preset shakespeare-10min`, see
bptt/presets.py): tiny-shakespeare, 90/10 split, Embedding 64 -> 2-layer GRU 512 (dropout 0.3)
-> Linear, batch 64, seq 64, Adam 3e-3 warmed up over 100 steps and decayed with a cosine to 0
at the end of the time budget, gradient norm clipped at 5. Every option below overrides it.

This script starts one fresh Python process per training run (`--worker bptt|torch`), one after
the other, never two at once: each loads the same initial weights (bptt's, written once to a
safetensors file), reads the same batches (bptt.data, the state carried between chunks), follows
the same schedule (the lr of a step from the training time used before it) and validates the
same way: every --eval-every steps and at the end of the budget, on the whole validation split,
off the clock. By default (--masks shared) both libraries also use the same dropout masks: each
step's masks come from one NumPy generator with the same seed in each process, drawn by
bptt.recurrent.dropout_mask — inside bptt's forward, on bptt's clock, as in any bptt run; and for
PyTorch before its step, off its clock, then applied between its layers (nn.GRU per layer, the
same products as one multi-layer nn.GRU). So two runs differ only in how many steps each library
fits into the budget (and float rounding): the comparison of losses is not drowned in the noise
of different masks (0.007-0.008 nats/char between two runs of one library with its own masks).
--masks own lets each library draw its own (torch's nn.GRU(dropout=...)). This shared machine's
speed drifts by 10-20 % within minutes, so by default the runs go in both orders, bptt, torch,
torch, bptt, and the report gives every run and each library's median and mean.

    python benchmarks/charlm.py                        # 4 runs of 10 minutes (the reported figures)
    python benchmarks/charlm.py --minutes 1 --order bptt-first  # a quick look: 2 runs of 1 minute
    python benchmarks/charlm.py --write                # ... and write its section of BENCHMARKS.md
    python benchmarks/charlm.py --order bptt --steps 5000   # bptt alone, a budget of steps: how the
                                                       # recipe was compared on a loaded machine
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt")
PRESET = "shakespeare-10min"
ORDERS = {"both": ["bptt", "torch", "torch", "bptt"], "bptt-first": ["bptt", "torch"],
          "torch-first": ["torch", "bptt"], "bptt": ["bptt"], "torch": ["torch"]}
NAMES = {"bptt": "bptt", "torch": "PyTorch"}
MASKS_TEXT = {
    "shared": "with the same dropout masks too (`--masks shared`: one NumPy stream of the same seed in "
              "each process, drawn by bptt inside its step, on its clock, and for PyTorch before each step, "
              "off its clock, then applied between its layers, one nn.GRU per layer), so runs differ only in "
              "how many steps fit in the budget and in float rounding",
    "own": "only the dropout masks differ (`--masks own`: each library draws its own)"}


# ----------------------------------------------------------------------------- the recipe
def parse_args(argv=None):
    from bptt.presets import preset

    p = preset(PRESET)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = ap.add_argument
    a("--minutes", type=float, default=p["minutes"], help="training time of each run (evaluations not counted)")
    a("--order", choices=list(ORDERS), default="both", help="both: bptt, torch, torch, bptt; bptt or torch: "
      "that library alone")
    a("--steps", type=int, help="a budget of this many steps instead of --minutes (the schedule decays over "
      "them): compares recipes by validation loss against steps, whatever the machine's load")
    a("--data", default=DATA)
    a("--cell", default=p["cell"], choices=["lstm", "gru", "rnn"])
    a("--hidden", type=int, default=p["hidden_size"])
    a("--layers", type=int, default=p["num_layers"])
    a("--embedding-dim", type=int, default=p["embedding_dim"])
    a("--dropout", type=float, default=p["dropout"])
    a("--batch", type=int, default=p["batch_size"])
    a("--seq-len", type=int, default=p["seq_len"])
    a("--lr", type=float, default=p["lr"])
    a("--schedule", choices=["constant", "cosine"], default=p["schedule"])
    a("--warmup", type=int, default=p["warmup"])
    a("--clip", type=float, default=p["clip"])
    a("--eval-every", type=int, default=p["eval_every"], help="validate every N steps (and at the end)")
    a("--seed", type=int, default=0)
    a("--masks", choices=["shared", "own"], default="shared", help="shared: both libraries apply the same "
      "dropout masks (one NumPy stream, drawn off PyTorch's clock); own: each draws its own")
    a("--write", action="store_true", help="write the result into BENCHMARKS.md")
    # the worker's own options (set by the orchestrating process)
    a("--worker", choices=list(NAMES), help=argparse.SUPPRESS)
    a("--init", help=argparse.SUPPRESS)
    a("--result", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def recipe_line(args):
    sched = (f"Adam {args.lr:g}, warm-up {args.warmup} steps then cosine to 0 at the end of the budget"
             if args.schedule == "cosine" else f"Adam {args.lr:g} constant")
    return (f"tiny-shakespeare (90/10 split), Embedding {args.embedding_dim} -> {args.layers}-layer "
            f"{args.cell.upper()} {args.hidden} (dropout {args.dropout:g}) -> Linear, batch {args.batch}, "
            f"seq {args.seq_len}, {sched}, clip {args.clip:g}")


def is_preset(args):
    """True when the recipe is the preset's own (no option changed it)."""
    from bptt.presets import preset

    p = preset(PRESET)
    mine = {"cell": args.cell, "hidden_size": args.hidden, "num_layers": args.layers,
            "embedding_dim": args.embedding_dim, "dropout": args.dropout, "batch_size": args.batch,
            "seq_len": args.seq_len, "lr": args.lr, "schedule": args.schedule, "warmup": args.warmup,
            "clip": args.clip, "minutes": None if args.steps else args.minutes}
    return all(p[k] == v for k, v in mine.items())


def lr_torch_side(args, step, progress):
    """The schedule as the PyTorch worker computes it (bptt's worker asks bptt.optim): linear
    warm-up over the first ``warmup`` updates times a cosine of the budget's used fraction."""
    if args.schedule == "constant":
        return args.lr
    warm = min(1.0, (step + 1) / args.warmup) if args.warmup else 1.0
    return warm * args.lr * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


# ----------------------------------------------------------------------------- the workers
class BpttSide:
    def __init__(self, args, vocab_size, weights):
        import bptt
        from bptt.optim import cosine_to_budget, make_optimizer
        from bptt.train import TrainConfig, prepare_kernels

        cfg = bptt.ModelConfig(vocab_size, args.cell, args.hidden, args.layers, args.embedding_dim, args.dropout)
        self.model = bptt.CharModel(cfg, dtype="float32", seed=args.seed)
        self.model.load_state_dict(weights)
        self.opt = make_optimizer("adam", self.model.params, self.model.grads, args.lr)
        self.cfg = TrainConfig(clip=args.clip, minutes=args.minutes)
        sched = cosine_to_budget(args.lr, args.warmup)
        self.lr_at = (lambda step, q: args.lr) if args.schedule == "constant" else sched
        if args.masks == "shared":
            self.model.rnn.rng = mask_generator(args)  # bptt draws each step's masks in its forward
        prepare_kernels(self.model)  # compiled or loaded from numba's cache, off the clock

    def before_step(self):
        pass  # bptt draws its masks inside the step, on its clock

    def step(self, x, y, state, lr):
        from bptt.train import train_step

        self.opt.lr = lr
        loss, _, state = train_step(self.model, x, y, state, self.opt, self.cfg)
        self.opt.step()
        return loss, state

    def evaluate(self, val_batches):
        from bptt.train import evaluate

        return evaluate(self.model, val_batches, 0)


class TorchSide:
    def __init__(self, args, vocab_size, weights):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self.torch, self.args = torch, args
        self.shared = args.masks == "shared" and args.dropout > 0 and args.layers > 1
        self.model = (torch_model_shared_masks if self.shared else torch_model)(args, vocab_size)
        self.model.load_state_dict({torch_name(k, self.shared): torch.from_numpy(v) for k, v in weights.items()})
        self.opt = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        self.lr_at = lambda step, q: lr_torch_side(args, step, q)
        self.rng, self.masks = mask_generator(args), None

    def before_step(self):
        """The next step's masks, drawn as bptt draws them, off the clock (PyTorch's own dropout
        would cost it time; this costs it none)."""
        if self.shared:
            from bptt.recurrent import dropout_mask

            a = self.args
            self.masks = [self.torch.from_numpy(dropout_mask(self.rng, (a.seq_len, a.batch, a.hidden),
                                                             a.dropout, np.float32))
                          for _ in range(a.layers - 1)]

    def step(self, x, y, state, lr):
        torch = self.torch
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        xt = torch.from_numpy(x.astype(np.int64))
        logits, state = self.model(xt, state, self.masks) if self.shared else self.model(xt, state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(y.astype(np.int64)).reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip)
        self.opt.step()
        return loss.item(), state

    def evaluate(self, val_batches):
        torch = self.torch
        self.model.eval()
        total, n, state = 0.0, 0, None
        with torch.no_grad():
            for x, y in val_batches.chunks():
                logits, state = self.model(torch.from_numpy(x.astype(np.int64)), state)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(),
                                                         torch.from_numpy(y.astype(np.int64)).reshape(-1))
                total += loss.item() * y.size
                n += y.size
        return total / n


def torch_rnn_class(cell):
    import torch

    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]


def torch_model(args, vocab_size):
    import torch

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab_size, args.embedding_dim)
            rnn = torch_rnn_class(args.cell)
            self.rnn = rnn(args.embedding_dim, args.hidden, args.layers, dropout=args.dropout)
            self.head = torch.nn.Linear(args.hidden, vocab_size)

        def forward(self, x, state=None):
            out, state = self.rnn(self.embedding(x), state)
            return self.head(out), state

    return CharLM()


def torch_model_shared_masks(args, vocab_size):
    """The same network with one single-layer torch RNN module per layer, so that given masks go
    between the layers (what nn.GRU(num_layers=L, dropout=p) does with masks of its own)."""
    import torch

    class CharLMMasks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab_size, args.embedding_dim)
            rnn = torch_rnn_class(args.cell)
            self.layers = torch.nn.ModuleList(
                rnn(args.embedding_dim if k == 0 else args.hidden, args.hidden) for k in range(args.layers))
            self.head = torch.nn.Linear(args.hidden, vocab_size)

        def forward(self, x, state=None, masks=None):
            out, finals = self.embedding(x), []
            for k, layer in enumerate(self.layers):
                s = None if state is None else (tuple(v[k:k + 1] for v in state) if isinstance(state, tuple)
                                                else state[k:k + 1])
                out, f = layer(out, s)
                finals.append(f)
                if masks is not None and k < len(self.layers) - 1:
                    out = out * masks[k]
            state = (tuple(torch.cat(v) for v in zip(*finals)) if isinstance(finals[0], tuple)
                     else torch.cat(finals))
            return self.head(out), state

    return CharLMMasks()


def torch_name(name, per_layer):
    """bptt's parameter name -> the torch model's (rnn.weight_ih_l1 -> layers.1.weight_ih_l0 when
    each layer is its own module)."""
    if not per_layer or not name.startswith("rnn."):
        return name
    base, layer = name[len("rnn."):].rsplit("_l", 1)
    return f"layers.{int(layer)}.{base}_l0"


def mask_generator(args):
    """The dropout masks' generator, the same in every worker process."""
    return np.random.default_rng([args.seed, 1])


def train(side, train_batches, val_batches, args):
    """Train for ``args.minutes`` of training time; validate every ``eval_every`` steps and at
    the end, off the clock. -> the run's record."""
    budget, steps, elapsed, state, loss = args.minutes * 60, 0, 0.0, None, float("nan")
    curve = []

    def progress():  # the used fraction of the budget
        return steps / args.steps if args.steps else elapsed / budget

    while progress() < 1:
        side.before_step()
        t = time.perf_counter()
        x, y, new_epoch = train_batches.next()
        if new_epoch:
            state = None
        loss, state = side.step(x, y, state, side.lr_at(steps, progress()))
        steps += 1
        elapsed += time.perf_counter() - t
        if steps % args.eval_every == 0:
            curve.append((steps, side.evaluate(val_batches)))
    if not curve or curve[-1][0] != steps:
        curve.append((steps, side.evaluate(val_batches)))
    best = min(curve, key=lambda sv: sv[1])
    return {"steps": steps, "seconds": elapsed, "chars_per_s": steps * args.batch * args.seq_len / elapsed,
            "train_loss": loss, "final_val": curve[-1][1], "best_val": best[1], "best_step": best[0],
            "curve": curve}


def worker(args):
    from safetensors.numpy import load_file

    from bptt.data import load_text, prepare

    text = load_text(args.data)
    vocab, train_batches, val_batches = prepare(text, 0.1, args.batch, args.seq_len)
    weights = load_file(args.init)
    side = (BpttSide if args.worker == "bptt" else TorchSide)(args, len(vocab), weights)
    initial_val = side.evaluate(val_batches)  # the same weights on the same data: the same loss
    load_before = os.getloadavg()[0]
    record = train(side, train_batches, val_batches, args)
    record.update(library=args.worker, load_before=load_before, load_after=os.getloadavg()[0],
                  initial_val=initial_val,
                  val_chars=len(val_batches) * val_batches.batch_size * val_batches.seq_len)
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return 0


# ----------------------------------------------------------------------------- orchestration
def forwarded(argv):
    """The command-line options a worker gets: the recipe's, not --write or --order."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--write":
            continue
        if a == "--order":
            skip = True
            continue
        if a.startswith("--order="):
            continue
        out.append(a)
    return out


def initial_weights(args, path):
    import bptt
    from bptt.data import load_text, prepare
    from safetensors.numpy import save_file

    vocab, _, _ = prepare(load_text(args.data), 0.1, args.batch, args.seq_len)
    cfg = bptt.ModelConfig(len(vocab), args.cell, args.hidden, args.layers, args.embedding_dim, args.dropout)
    model = bptt.CharModel(cfg, dtype="float32", seed=args.seed)
    save_file({k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}, path)


def run_all(args, argv):
    runs = []
    with tempfile.TemporaryDirectory(prefix="charlm-") as tmp:
        init = os.path.join(tmp, "init.safetensors")
        initial_weights(args, init)
        for k, lib in enumerate(ORDERS[args.order]):
            result = os.path.join(tmp, f"run{k}.json")
            what = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
            print(f"run {k + 1}/{len(ORDERS[args.order])}: {NAMES[lib]} for {what} "
                  f"(load average {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), *forwarded(argv), "--worker", lib,
                   "--init", init, "--result", result]
            subprocess.run(cmd, check=True)
            with open(result, encoding="utf-8") as f:
                runs.append(json.load(f))
            r = runs[-1]
            print(f"  {r['steps']:,} steps, {r['chars_per_s']:,.0f} chars/s, final val {r['final_val']:.4f}, "
                  f"best {r['best_val']:.4f} at step {r['best_step']:,}", file=sys.stderr, flush=True)
    return runs


def summary(runs, lib):
    mine = [r for r in runs if r["library"] == lib]
    cps = [r["chars_per_s"] for r in mine]
    best = [r["best_val"] for r in mine]
    return {"chars_per_s_median": statistics.median(cps), "chars_per_s_mean": statistics.fmean(cps),
            "best_val_median": statistics.median(best), "best_val_mean": statistics.fmean(best),
            "final_val_mean": statistics.fmean(r["final_val"] for r in mine),
            "steps_mean": statistics.fmean(r["steps"] for r in mine), "runs": len(mine)}


def report(args, runs, argv):
    from _report import machine_line

    threads = os.cpu_count() or 1
    order = " -> ".join(NAMES[r["library"]] for r in runs)
    cmd = " ".join(["python benchmarks/charlm.py", *[a for a in argv if a != "--write"], "--write"])
    drift = ("so the libraries run in turn in both orders" if args.order == "both" else
             f"so a single order ({args.order}) is only a quick look; the reported figures use both orders")
    which = (f"`bptt train --preset {PRESET}`" if is_preset(args) else
             f"(`bptt train --preset {PRESET}` with the options of the command below)")
    budget = (f"{args.steps:,} steps" if args.steps else
              f"{args.minutes:g} minute{'' if args.minutes == 1 else 's'} of training time")
    lines = [
        f"## Character language model at equal {'steps' if args.steps else 'time'} (`benchmarks/charlm.py`)",
        "",
        f"The recipe {which}: {recipe_line(args)}. Each run is a fresh "
        f"Python process that trains one library for {budget} "
        f"({threads} threads), one run after the other ({order}), all from the same initial weights "
        f"(bptt's, saved to a file) on the same batches with the same schedule; "
        f"{MASKS_TEXT[args.masks]}. Validation: every {args.eval_every} steps and at the end of the budget, over the whole "
        f"validation split ({runs[0]['val_chars']:,} characters), off the clock. The machine's speed "
        f"drifts by 10-20 % within minutes, {drift}; the load average (1 min, of the whole machine, "
        f"shared with other work) is read before and after each run.",
        "",
        "| run | library | steps | chars/s | final val loss (nats/char) | best val loss | at step | load before / after |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for k, r in enumerate(runs, 1):
        lines.append(f"| {k} | {NAMES[r['library']]} | {r['steps']:,} | {r['chars_per_s']:,.0f} | "
                     f"{r['final_val']:.4f} | {r['best_val']:.4f} | {r['best_step']:,} | "
                     f"{r['load_before']:.2f} / {r['load_after']:.2f} |")
    s = {lib: summary(runs, lib) for lib in NAMES if any(r["library"] == lib for r in runs)}
    lines += ["", "| library | runs | chars/s median | chars/s mean | steps mean | best val median | "
              "best val mean | final val mean |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for lib, v in s.items():
        lines.append(f"| {NAMES[lib]} | {v['runs']} | {v['chars_per_s_median']:,.0f} | {v['chars_per_s_mean']:,.0f} | "
                     f"{v['steps_mean']:,.0f} | {v['best_val_median']:.4f} | {v['best_val_mean']:.4f} | "
                     f"{v['final_val_mean']:.4f} |")
    if len(s) == 2:
        ratio = s["bptt"]["chars_per_s_median"] / s["torch"]["chars_per_s_median"]
        lines += ["", f"bptt trains **{ratio:.2f}x** PyTorch's characters per second (medians); best "
                  f"validation loss bptt {s['bptt']['best_val_median']:.4f}, PyTorch "
                  f"{s['torch']['best_val_median']:.4f} nats/char (medians; "
                  f"{s['bptt']['best_val_median'] / math.log(2):.3f} and "
                  f"{s['torch']['best_val_median'] / math.log(2):.3f} bits/char)."]
    lines += ["", "Validation loss curves (step: nats/char): " + "; ".join(
        f"run {k} {NAMES[r['library']]}: " + ", ".join(f"{st:,}: {v:.4f}" for st, v in r["curve"])
        for k, r in enumerate(runs, 1))]
    lines += ["", f"Validation loss of the initial weights, before training: "
              + ", ".join(f"{NAMES[r['library']]} {r['initial_val']:.6f}" for r in runs)
              + " (the same weights and data in each process).",
              "", f"Command: `{cmd}`. Machine: {machine_line()}."]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    runs = run_all(args, argv)
    text = report(args, runs, argv)
    print(text)
    if args.write:
        from _report import write_section

        print("written to", write_section("charlm", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
