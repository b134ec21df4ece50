"""Speed of the bptt layers against PyTorch's on the CPU: ``python benchmarks/cells.py --help``
(``main(argv)`` from Python).

For each cell and size (T, B, D, H) one training step of one layer, float32: forward, then
backward of sum(out * g) for a fixed random g, for ``bptt.RNN/LSTM/GRU`` and
``torch.nn.RNN/LSTM/GRU`` in the same process. Two pairs of steps: the layer on data (the input
takes no gradient: torch's x without requires_grad, bptt's backward(input_grad=False)), the
table's main columns; and the input gradient too (x.requires_grad, input_grad=True), as for a
layer above an embedding or another layer. All four are timed as in training: runs of consecutive
steps, in alternating blocks (N bptt steps, N torch steps, then the order turned: N torch
steps, N bptt steps, ...; each block led in by one untimed step of its own library, so every timed
step follows one of its own, as in training), no pause between them, warm-up steps only at the start of a row; the median over the blocks. Both use the same
number of threads. ``--rows``/``--cells``/``--sizes`` pick a subset; ``--baseline GITREF`` times
bptt at another commit in the same blocks (before/after). The limit is the machine's
float32 matrix-multiply rate, measured in the same run: a step does 3 * 2*T*B*G*H*(D+H) flops
of matrix products (forward; backward twice that), and the table says what fraction of that
rate each reaches. Peak memory of one step: NumPy's allocations through ``tracemalloc`` for
bptt, the allocation events of torch's CPU allocator through ``torch.profiler`` for torch.
The first-call compile time of the numba kernels (and the load from numba's cache) is measured
in child processes with an empty numba cache directory.

Dimensions: T time, B batch, D input, H hidden, G gates (1 RNN, 4 LSTM, 3 GRU).
"""

import argparse
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _report, next to this file

GRID = [(25, 1, 65, 100), (100, 16, 32, 32), (100, 32, 64, 128), (64, 32, 128, 192), (100, 64, 256, 256),
        (50, 128, 512, 512)]
QUICK_GRID = [(5, 1, 3, 4), (8, 4, 6, 16)]
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# ----------------------------------------------------------------------------- machine
def blas_threads():
    """(threads NumPy's BLAS uses, how that was found)."""
    try:
        from threadpoolctl import threadpool_info

        n = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if n:
            return max(n), "threadpoolctl"
    except ImportError:
        pass
    return os.cpu_count() or 1, "os.cpu_count() (threadpoolctl not installed)"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name', '?')} {b.get('version', '')}".strip()
    except Exception:
        return "unknown"


_MATMUL_OPERANDS = {}


def matmul_rate(n, repeats):
    """Median GFLOP/s of an n x n float32 np.matmul (the machine's matrix-multiply rate)."""
    if n not in _MATMUL_OPERANDS:
        rng = np.random.default_rng(0)
        _MATMUL_OPERANDS[n] = (rng.standard_normal((n, n), dtype=np.float32),
                               rng.standard_normal((n, n), dtype=np.float32), np.empty((n, n), np.float32))
    a, b, out = _MATMUL_OPERANDS[n]
    np.matmul(a, b, out=out)  # wakes the BLAS threads
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        ts.append(time.perf_counter() - t)
    return 2.0 * n**3 / float(np.median(ts)) / 1e9


def recurrent_rate(cell, T, B, H, repeats=3):
    """GFLOP/s of the per-step recurrent product as the float32 fast path does it: each of the n
    threads multiplies its block of ceil(B/n) rows, (B/n, H) @ (H, G*H), by the micro-kernel on
    W_hh packed once, T times in a row. Measured on one thread (the others do the same at the
    same time); the median of ``repeats`` sequences."""
    import numba

    from bptt.cells import _numba_loops

    n = max(1, min(numba.get_num_threads(), B))
    rows = -(-B // n)
    GH = GATES[cell] * H
    rng = np.random.default_rng(0)
    h = rng.standard_normal((T, rows, H), dtype=np.float32)
    Wp = _numba_loops._pack(rng.standard_normal((H, GH), dtype=np.float32))
    out = np.empty((rows, GH), np.float32)
    scratch = np.empty((6, 16), np.float32)
    ts = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        for i in range(T):
            _numba_loops._uk_mm(h[i], Wp, out, 0, scratch)
        ts.append(time.perf_counter() - t)
    return 2.0 * T * rows * GH * H / float(np.median(ts[1:])) / 1e9


def step_flops(cell, T, B, D, H, input_grad=True):
    """Matrix-product flops of forward + backward: 3 * 2*T*B*G*H*(D+H); without the input
    gradient's product dx = da W_ih, 2*T*B*G*H*D less."""
    G = GATES[cell]
    return 3 * 2 * T * B * G * H * (D + H) - (0 if input_grad else 2 * T * B * G * H * D)


# ----------------------------------------------------------------------------- the two steps
def make_pair(cell, T, B, D, H, seed=0, lib=None, input_grad=False):
    """-> (bptt step, torch step, bptt layer, torch layer): closures doing one forward + backward
    each; the input is data (no gradient) unless ``input_grad``. lib: the bptt package to use
    (default ``bptt``; e.g. a baseline's: one from before ``input_grad`` existed computes dx)."""
    import inspect

    import torch

    bptt = lib
    if bptt is None:
        import bptt

    bl = {"rnn": bptt.RNN, "lstm": bptt.LSTM, "gru": bptt.GRU}[cell](D, H, dtype="float32", seed=seed)
    tl = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](D, H)
    with torch.no_grad():
        for name, p in tl.named_parameters():
            p.copy_(torch.from_numpy(bl.params[name]))
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, D), dtype=np.float32)
    g = rng.standard_normal((T, B, H), dtype=np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(input_grad)
    gt = torch.from_numpy(g.copy())
    kw = {"input_grad": input_grad} if "input_grad" in inspect.signature(bl.backward).parameters else {}

    def bptt_step():
        bl.forward(x)
        bl.backward(g, **kw)

    def torch_step():
        out, _ = tl(xt)
        (out * gt).sum().backward()

    return bptt_step, torch_step, bl, tl


CHAR = dict(T=64, B=64, E=64, H=256, V=65, layers=2)  # the char model's training step
CHAR_QUICK = dict(T=5, B=4, E=3, H=8, V=7, layers=2)


def charmodel_flops(T, B, E, H, V, layers):
    """Matrix-product flops of one training step: the LSTM layers and the head, forward +
    backward (3x the forward)."""
    lstm = sum(3 * 2 * T * B * 4 * H * ((E if k == 0 else H) + H) for k in range(layers))
    return lstm + 3 * 2 * T * B * H * V


def make_charmodel_pair(T, B, E, H, V, layers, seed=0):
    """-> (bptt step, torch step): one whole training step of the character model each -
    embedding -> LSTM layers -> Linear head -> cross-entropy -> backward -> clip 5 -> Adam,
    the state carried from step to step (truncated BPTT), the same weights and batch."""
    import torch

    import bptt
    from bptt.loss import cross_entropy_backward, cross_entropy_forward
    from bptt.optim import Adam, clip_grad_norm

    cfg = bptt.ModelConfig(V, "lstm", H, layers, E)
    ours = bptt.CharModel(cfg, dtype="float32", seed=seed)
    theirs = _torch_charmodel(cfg)
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(seed + 1)
    x = rng.integers(0, V, (T, B))
    y = rng.integers(0, V, (T, B))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).reshape(-1)
    opt_b = Adam(ours.params, ours.grads, lr=2e-3)
    opt_t = torch.optim.Adam(theirs.parameters(), lr=2e-3)
    carry = {"bptt": None, "torch": None}

    def bptt_step():
        logits, carry["bptt"] = ours.forward(x, carry["bptt"])
        _, cache = cross_entropy_forward(logits, y)
        ours.zero_grad()
        ours.backward(cross_entropy_backward(cache))
        clip_grad_norm(ours.grads, 5.0)
        opt_b.step()

    def torch_step():
        logits, state = theirs(xt, carry["torch"])
        carry["torch"] = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), yt)
        opt_t.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 5.0)
        opt_t.step()

    return bptt_step, torch_step


def _torch_charmodel(cfg):
    import torch

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
            self.rnn = torch.nn.LSTM(cfg.embedding_dim, cfg.hidden_size, cfg.num_layers)
            self.head = torch.nn.Linear(cfg.hidden_size, cfg.vocab_size)

        def forward(self, x, state=None):
            out, state = self.rnn(self.embedding(x), state)
            return self.head(out), state

    return CharLM()


class OtherLoad:
    """CPU time other processes take on this machine, from /proc/stat and /proc/self/stat
    (Linux; elsewhere it reports nothing). Only observed, never waited on: a timing taken while
    something else runs measures that something too, and the report says how much there was."""

    def __init__(self):
        self.ok = os.path.exists("/proc/stat") and os.path.exists("/proc/self/stat")

    def sample(self):
        if not self.ok:
            return None
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            mine = f.read().rsplit(")", 1)[1].split()
        return sum(v) - v[3] - v[4], sum(v), int(mine[11]) + int(mine[12])

    @staticmethod
    def share(a, b):
        """Fraction of all the machine's CPU time others used between samples a and b."""
        if a is None or b is None or b[1] <= a[1]:
            return 0.0
        return max(0.0, ((b[0] - a[0]) - (b[2] - a[2])) / (b[1] - a[1]))


def loadavg():
    """The 1-minute load average (None where the OS does not give one)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def steps_per_block(fns, block_seconds, lo=3, hi=200):
    """Steps per block so that the slowest library's block lasts about block_seconds: one untimed
    step of each measures them (this is part of the warm-up)."""
    worst = 0.0
    for f in fns.values():
        t = time.perf_counter()
        f()
        worst = max(worst, time.perf_counter() - t)
    return int(min(hi, max(lo, round(block_seconds / max(worst, 1e-6)))))


def time_blocks(fns, blocks, steps, warmup, load=None):
    """Runs of consecutive training steps, as in training, in alternating blocks.

    fns {name: step} in the order they alternate (e.g. bptt, torch), turned by one each round.
    After ``warmup`` untimed steps of each (at the start only), ``blocks`` rounds, each one block
    of every library in turn: one lead-in step, then ``steps`` consecutive steps timed as a whole,
    so that every timed step follows a step of its own library, as in a training loop; no sleep. -> ({name: [seconds per step of each block]}, share of the CPUs other processes
    used during the blocks). The garbage collector is off while the blocks run."""
    load = load or OtherLoad()
    for _ in range(warmup):
        for f in fns.values():
            f()
    per = {name: [] for name in fns}
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()
    a = load.sample()
    try:
        names = list(fns)
        for r in range(blocks):
            # the order turns each round (a b c, b c a, c a b, ...): no library always starts
            # right after the same other one (whose threads may still be winding down)
            for name in names[r % len(names):] + names[: r % len(names)]:
                f = fns[name]
                f()  # a lead-in step: the timed steps follow a step of their own library, as in training
                t = time.perf_counter()
                for _ in range(steps):
                    f()
                per[name].append((time.perf_counter() - t) / steps)
    finally:
        if gc_was:
            gc.enable()
    return per, load.share(a, load.sample())


def block_ratios(per, a, b):
    """Ratios a/b round by round (the blocks of a round ran one after the other) -> (median,
    min, max)."""
    r = np.asarray(per[a]) / np.asarray(per[b])
    return float(np.median(r)), float(r.min()), float(r.max())


def peak_bptt(f):
    """Peak bytes NumPy allocates during f() above what was allocated before (tracemalloc).
    bptt's buffers kept from earlier steps for reuse are dropped first, so that the step
    allocates, and is charged for, all of its arrays."""
    import bptt.cells

    gc.collect()
    bptt.cells.release_buffers()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        f()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


class _NoStderr:
    """Silence file descriptor 2 (the profiler's C++ start/stop lines) for a moment."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def _torch_profile(f, **kw):
    from torch.profiler import ProfilerActivity, profile

    with _NoStderr(), profile(activities=[ProfilerActivity.CPU], **kw) as prof:
        f()
    return prof


def torch_ops(f):
    """The names of the aten operators one call of f runs (e.g. whether LSTM goes to oneDNN)."""
    try:
        return sorted({e.key for e in _torch_profile(f).key_averages()})
    except Exception:
        return []


def peak_torch(f):
    """Peak bytes torch's CPU allocator holds during f() above what it held before, from the
    allocation events torch.profiler records (None if they are not available)."""
    try:
        gc.collect()
        prof = _torch_profile(f, profile_memory=True)
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events.sort(key=lambda e: e.start_ns())
        cur = peak = 0
        for e in events:
            cur += e.nbytes()
            peak = max(peak, cur)
        return peak
    except Exception:
        return None


# ----------------------------------------------------------------------------- compile times
_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import bptt
res = {"import": time.perf_counter() - t0, "numba_imported_by_import": "numba" in sys.modules}
from bptt.cells import get_backend
res["backend"] = get_backend()
per = {}
t0 = time.perf_counter()
for dtype in ("float32", "float64"):
    for cell in sys.argv[1].split(","):
        cls = {"rnn": bptt.RNN, "lstm": bptt.LSTM, "gru": bptt.GRU}[cell]
        t1 = time.perf_counter()
        # small: the fully compiled loops; large: BLAS per step + the step kernels
        for (B, H) in ((2, 8), (64, 256)):
            for kw in ([{"nonlinearity": "tanh"}, {"nonlinearity": "relu"}] if cell == "rnn" else [{}]):
                layer = cls(4, H, dtype=dtype, seed=0, **kw)
                x = np.ones((2, B, 4), dtype)
                out, _ = layer.forward(x)
                layer.backward(np.ones_like(out))
        per[dtype + " " + cell] = time.perf_counter() - t1
res["first_calls"] = time.perf_counter() - t0
res["per"] = per
print("PROBE" + json.dumps(res))
"""


def compile_times(cells):
    """First-call times of all kernels with an empty numba cache, then again from the cache."""
    with tempfile.TemporaryDirectory(prefix="bptt-numba-cache-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        env.pop("BPTT_BACKEND", None)
        out = []
        for _ in range(2):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", _PROBE, ",".join(cells)], env=env,
                               capture_output=True, text=True)
            wall = time.perf_counter() - t
            line = [s for s in p.stdout.splitlines() if s.startswith("PROBE")]
            if p.returncode != 0 or not line:
                return {"error": (p.stderr or p.stdout)[-2000:]}
            r = json.loads(line[0][5:])
            r["wall"] = wall
            out.append(r)
    return {"cold": out[0], "cached": out[1]}


# ----------------------------------------------------------------------------- report
def _fmt_mb(b):
    return "n/a" if b is None else f"{b / 2**20:.2f}"


def _label(r):
    if r["cell"] == "char model":
        c = r["char"]
        return f"char model: embedding {c['E']}, {c['layers']}-layer LSTM {c['H']}, head {c['V']}, CE, Adam"
    return r["cell"]


def table(rows):
    head = ("| cell | T | B | D | H | bptt ms | torch ms | bptt/torch | matmul GFLOP/s | matmul floor ms "
            "| bptt GFLOP/s | bptt % of matmul | torch % of matmul | bptt peak MB | torch peak MB "
            "| bptt/torch block by block | bptt/torch with dx (block by block) | steps timed |")
    lines = [head, "|" + "---|" * 18]
    for r in rows:
        rate = r["rate"]
        gb, gt = r["flops"] / r["bptt_s"] / 1e9, r["flops"] / r["torch_s"] / 1e9
        lines.append(
            f"| {_label(r)} | {r['T']} | {r['B']} | {r['D']} | {r['H']} "
            f"| {r['bptt_s'] * 1e3:.2f} | {r['torch_s'] * 1e3:.2f} | {r['bptt_s'] / r['torch_s']:.2f} "
            f"| {rate:.0f} | {r['flops'] / rate / 1e6:.2f} | {gb:.1f} | {100 * gb / rate:.0f}% | {100 * gt / rate:.0f}% "
            f"| {_fmt_mb(r['bptt_peak'])} | {_fmt_mb(r['torch_peak'])} "
            f"| {r['ratio_lo']:.2f}-{r['ratio_hi']:.2f} | {_dx_cell(r)} | {r['blocks']} x {r['steps']} |"
        )
    return "\n".join(lines)


def _dx_cell(r):
    """bptt/torch of the steps with the input gradient, and its range block by block."""
    if "ratio_dx" not in r:
        return "-"  # the char model: its embedding always takes dx
    return f"{r['ratio_dx']:.2f} ({r['ratio_dx_lo']:.2f}-{r['ratio_dx_hi']:.2f})"


def compile_text(ct):
    if ct is None:
        return "not measured (--quick or --no-compile-times)"
    if "error" in ct:
        return "the probe failed:\n\n```\n" + ct["error"] + "\n```"
    c, k = ct["cold"], ct["cached"]
    per = ", ".join(f"{name} {sec:.1f} s" for name, sec in c["per"].items())
    per_k = ", ".join(f"{name} {sec * 1e3:.0f} ms" for name, sec in k["per"].items())
    return (
        f"Measured in two child processes sharing one empty numba cache directory (NUMBA_CACHE_DIR); "
        f"each runs one forward + backward of every cell, float32 then float64, at a small size (the "
        f"fully compiled loops) and a large one (BLAS per step + the step kernels).\n\n"
        f"- backend: {c['backend']}; `import bptt` took {c['import'] * 1e3:.0f} ms and imported numba: "
        f"{c['numba_imported_by_import']} (nothing is compiled at import)\n"
        f"- first calls with an empty cache (compiling): {c['first_calls']:.1f} s in all ({per})\n"
        f"- the same calls in a new process, kernels loaded from numba's on-disk cache: "
        f"{k['first_calls']:.2f} s in all ({per_k}; the first includes importing numba)"
    )


# ----------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(prog="benchmarks/cells.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default=",".join(CELLS), help="comma-separated: rnn,lstm,gru")
    p.add_argument("--rows", default=None, metavar="I,J,...",
                   help="only these rows of the grid, numbered from 0 (e.g. 2,4)")
    p.add_argument("--sizes", default=None, help="T,B,D,H;T,B,D,H;... instead of the grid")
    p.add_argument("--blocks", type=int, default=7,
                   help="alternating blocks of consecutive steps per library and row (median over them)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per block (default: enough for about --block-seconds, at least 3)")
    p.add_argument("--block-seconds", type=float, default=0.3, help="target length of a block (default 0.3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each library first, per row")
    p.add_argument("--quick", action="store_true", help="tiny grid, for a smoke test")
    p.add_argument("--out", default=None, help="write the report as markdown to this file")
    p.add_argument("--readme", default=None, metavar="PATH",
                   help="also rewrite the short table and the claims quoted from it in this README "
                   "(between its <!-- cells-table --> and <!-- cells-claim --> markers)")
    p.add_argument("--no-compile-times", action="store_true", help="skip the compile-time probe")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--no-char-model", action="store_true",
                   help="skip the whole char-model training step row")
    p.add_argument("--baseline", default=None, metavar="GITREF",
                   help="also time bptt as it is at this git commit (its src/bptt, imported as a second "
                   "package) in the same alternating blocks: before/after on the same machine state")
    args = p.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        p.error(f"--cells must be among {','.join(CELLS)}, got {args.cells!r}")
    if args.blocks < 1 or args.warmup < 0 or (args.steps is not None and args.steps < 1):
        p.error("--blocks and --steps must be >= 1 and --warmup >= 0")
    args.cells = cells
    if args.sizes:
        try:
            args.grid = [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";") if s]
            assert all(len(s) == 4 and min(s) > 0 for s in args.grid)
        except (ValueError, AssertionError):
            p.error("--sizes must look like 25,1,65,100;100,16,32,32")
    else:
        args.grid = QUICK_GRID if args.quick else GRID
    if args.rows:
        try:
            idx = [int(v) for v in args.rows.split(",") if v.strip()]
            args.grid = [args.grid[i] for i in idx]
        except (ValueError, IndexError):
            p.error(f"--rows must be numbers from 0 to {len(args.grid) - 1}, got {args.rows!r}")
    return args


def load_baseline(ref):
    """bptt's package at git commit ref, imported as ``bptt_baseline`` (kept in the temporary
    directory so that numba's cache of it survives between runs)."""
    import importlib
    import io
    import tarfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sha = subprocess.run(["git", "-C", repo, "rev-parse", "--short=12", ref], capture_output=True,
                         text=True, check=True).stdout.strip()
    root = os.path.join(tempfile.gettempdir(), f"bptt-baseline-{sha}")
    if not os.path.isdir(os.path.join(root, "bptt_baseline")):
        tar = subprocess.run(["git", "-C", repo, "archive", sha, "src/bptt"], capture_output=True, check=True).stdout
        tmp = root + f".{os.getpid()}"
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            tf.extractall(tmp, filter="data")
        os.makedirs(root, exist_ok=True)
        os.replace(os.path.join(tmp, "src", "bptt"), os.path.join(root, "bptt_baseline"))
    sys.path.insert(0, root)
    return importlib.import_module("bptt_baseline"), sha


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import torch
    except ImportError:
        print("benchmarks/cells.py needs torch (pip install torch) to compare against", file=sys.stderr)
        return 2
    import numba

    import bptt
    from bptt.cells import _kernels

    base = load_baseline(args.baseline) if args.baseline else None
    threads, threads_how = blas_threads()
    torch.set_num_threads(threads)
    backend = _kernels.get_backend()
    mm_n = 512 if args.quick else 2048
    rate = matmul_rate(mm_n, 3 if args.quick else 7)
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_name(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "bptt": bptt.__version__,
        "backend": backend,
        "threads": f"{threads} ({threads_how}); torch.set_num_threads({threads}); "
        f"numba {numba.config.NUMBA_NUM_THREADS}",
        "env": " ".join(f"{k}={os.environ[k]}" for k in
                        ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                         "OMP_NUM_THREADS", "BPTT_BACKEND", "NUMBA_NUM_THREADS") if k in os.environ) or "(none set)",
    }
    print(f"bptt {info['bptt']} backend={backend}  numpy {info['numpy']} ({info['blas']})  "
          f"torch {info['torch']}  numba {info['numba']}")
    print(f"{info['cpu']}, {info['cores']} cores; threads: {info['threads']}")
    print(f"float32 matmul rate ({mm_n}^2 np.matmul, median): {rate:.1f} GFLOP/s")
    if base:
        print(f"baseline: bptt at {base[1]} (as bptt_baseline), timed in the same blocks")

    rows = []
    load = OtherLoad()
    load_start = loadavg()
    jobs = [(cell, size) for cell in args.cells for size in args.grid]
    if not args.no_char_model:
        jobs.append(("char model", CHAR_QUICK if args.quick else CHAR))
    onednn = {}
    for cell, size in jobs:
        fns = {}
        if cell == "char model":
            T, B, D, H = size["T"], size["B"], size["E"], size["H"]
            fns["bptt"], fns["torch"] = make_charmodel_pair(**size)
            flops, step_rate = charmodel_flops(**size), recurrent_rate("lstm", T, B, H)
        else:
            T, B, D, H = size
            fns["bptt"], fns["torch"], _, _ = make_pair(cell, T, B, D, H)
            if base:
                fns["baseline"] = make_pair(cell, T, B, D, H, lib=base[0])[0]
            fns["bptt+dx"], fns["torch+dx"], _, _ = make_pair(cell, T, B, D, H, input_grad=True)
            flops, step_rate = step_flops(cell, T, B, D, H, input_grad=False), recurrent_rate(cell, T, B, H)
            if cell not in onednn:
                onednn[cell] = any("mkldnn_rnn" in op for op in torch_ops(fns["torch"]))
        if base and "baseline" in fns:  # alternate bptt, baseline, torch
            fns = {k: fns[k] for k in ("bptt", "baseline", "torch", "bptt+dx", "torch+dx")}
        # the machine's matmul rate for this row, measured before its warm-up (it drifts)
        row_rate = float(np.median([matmul_rate(mm_n, 1) for _ in range(3)]))
        for _ in range(args.warmup):
            for f in fns.values():
                f()
        steps = args.steps or steps_per_block(fns, args.block_seconds)
        la = loadavg()
        per, other = time_blocks(fns, args.blocks, steps, 0, load)
        tb, tt = float(np.median(per["bptt"])), float(np.median(per["torch"]))
        ratio = tb / tt  # of the medians; the per-round ratios give its spread
        _, rlo, rhi = block_ratios(per, "bptt", "torch")
        mb = None if args.no_memory else peak_bptt(fns["bptt"])
        mt = None if args.no_memory else peak_torch(fns["torch"])
        r = dict(cell=cell, T=T, B=B, D=D, H=H, bptt_s=tb, torch_s=tt, ratio=ratio, ratio_lo=rlo, ratio_hi=rhi,
                 steps=steps, blocks=args.blocks, other=other, loadavg=la, bptt_peak=mb, torch_peak=mt,
                 flops=flops, step_rate=step_rate, rate=row_rate, torch_onednn=onednn.get(cell, True),
                 char=size if cell == "char model" else None)
        if "bptt+dx" in per:  # the input gradient too
            r["bptt_dx_s"], r["torch_dx_s"] = float(np.median(per["bptt+dx"])), float(np.median(per["torch+dx"]))
            r["ratio_dx"] = r["bptt_dx_s"] / r["torch_dx_s"]
            r["ratio_dx_lo"], r["ratio_dx_hi"] = block_ratios(per, "bptt+dx", "torch+dx")[1:]
        if "baseline" in per:
            r["base_s"] = float(np.median(per["baseline"]))
            r["base_ratio"] = r["base_s"] / tt
            r["new_over_base"] = tb / r["base_s"]
            r["new_over_base_range"] = block_ratios(per, "bptt", "baseline")[1:]
        rows.append(r)
        gb = r["flops"] / tb / 1e9
        extra = (f"  baseline {r['base_s'] * 1e3:9.2f} ms ratio {r['base_ratio']:5.2f}  new/baseline "
                 f"{r['new_over_base']:5.2f}") if "base_s" in r else ""
        if "ratio_dx" in r:
            extra += (f"  with dx: bptt {r['bptt_dx_s'] * 1e3:.2f} ms torch {r['torch_dx_s'] * 1e3:.2f} ms "
                      f"ratio {r['ratio_dx']:5.2f} ({r['ratio_dx_lo']:.2f}-{r['ratio_dx_hi']:.2f})")
        print(f"{cell:10s} T={T:<4d} B={B:<4d} D={D:<4d} H={H:<4d} bptt {tb * 1e3:9.2f} ms  "
              f"torch {tt * 1e3:9.2f} ms  ratio {ratio:5.2f} ({rlo:.2f}-{rhi:.2f}){extra}  {gb:6.1f} GFLOP/s "
              f"({100 * gb / row_rate:3.0f}% of matmul {row_rate:.0f})  peak MB bptt {_fmt_mb(mb)} "
              f"torch {_fmt_mb(mt)}  [{args.blocks}x{steps} steps, others {100 * other:.0f}% CPU, "
              f"load {_fmt_load(la)}]", flush=True)
    rate = float(np.median([r["rate"] for r in rows] + [rate]))
    ct = None
    if not (args.quick or args.no_compile_times):
        ct = compile_times(args.cells)
        print("compile times:\n" + compile_text(ct))
    info["load"] = (
        f"1-minute load average {_fmt_load(load_start)} at the start, {_fmt_load(loadavg())} at the end; "
        f"other processes used at most {100 * max(r['other'] for r in rows):.0f}% of the CPUs during a "
        f"row's blocks (median {100 * float(np.median([r['other'] for r in rows])):.0f}%); nothing waits "
        f"for a quiet machine" if load.ok else
        f"1-minute load average {_fmt_load(load_start)} at the start, {_fmt_load(loadavg())} at the end"
    )
    print("load:", info["load"])
    if args.out:
        write_markdown(args.out, argv, info, rate, rows, ct, args)
        print(f"wrote {args.out}")
    if args.readme:
        write_readme(args.readme, argv, info, rows)
        print(f"wrote the speed table and claims of {args.readme}")
    return 0


def _fmt_load(v):
    return "n/a" if v is None else f"{v:.2f}"


def _command(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ)
    return " ".join(([env] if env else []) + ["python benchmarks/cells.py"] + [shlex.quote(a) for a in argv])


def goals(r, largest):
    """(ratio goal, matmul-fraction goal or None) of a row (issue 13): bptt/torch < 1 on every
    row; <= 0.8 where torch reaches under 70% of the matmul rate and at T=64, B=32, D=128,
    H=192; <= 0.95 on the largest row, and 85% of the rate there."""
    tpct = 100 * r["flops"] / r["torch_s"] / 1e9 / r["rate"]
    if largest:
        return 0.95, 85
    small = tpct < 70 or (r["T"], r["B"], r["D"], r["H"]) == (64, 32, 128, 192)
    return (0.8 if small else 1.0), None


def notes_text(rows):
    """Rows short of the goal, each with what bounds it, as measured in this run."""
    out = []
    cell_rows = [r for r in rows if r["cell"] != "char model"]
    largest = {r["cell"]: max((q for q in cell_rows if q["cell"] == r["cell"]), key=lambda q: q["flops"])
               for r in cell_rows}
    for r in rows:
        ratio = r["bptt_s"] / r["torch_s"]
        rate = r["rate"]
        tpct = 100 * r["flops"] / r["torch_s"] / 1e9 / rate
        bpct = 100 * r["flops"] / r["bptt_s"] / 1e9 / rate
        goal, need = goals(r, largest.get(r["cell"]) is r)
        short = []
        if not (ratio <= goal and ratio < 1.0):
            short.append(f"bptt/torch {ratio:.2f} (goal {f'<= {goal}' if goal < 1 else '< 1'})")
        if "ratio_dx" in r and not (r["ratio_dx"] <= goal and r["ratio_dx"] < 1.0):
            short.append(f"with the input gradient too, bptt/torch {r['ratio_dx']:.2f} "
                         f"(bptt {r['bptt_dx_s'] * 1e3:.2f} ms, torch {r['torch_dx_s'] * 1e3:.2f} ms; "
                         f"goal {f'<= {goal}' if goal < 1 else '< 1'})")
        if need is not None and bpct < need:
            short.append(f"{bpct:.0f}% of the matmul rate (goal {need}%)")
        if r["bptt_peak"] is not None and r["torch_peak"] is not None and r["bptt_peak"] > r["torch_peak"]:
            short.append(f"peak memory {_fmt_mb(r['bptt_peak'])} MB against torch's {_fmt_mb(r['torch_peak'])} MB")
        if not short:
            continue
        H = r["H"]
        G = 4 if r["cell"] == "char model" else GATES[r["cell"]]
        line = (
            f"- **{_label(r)} T={r['T']} B={r['B']} D={r['D']} H={H}**: {'; '.join(short)}. bptt reaches "
            f"{bpct:.0f}% of the matmul rate, torch {tpct:.0f}%; the matrix products alone would take "
            f"{r['flops'] / rate / 1e6:.2f} ms at that rate."
        )
        best = tpct / (need or 100)  # bptt/torch if bptt ran at the goal's share of the rate
        if bpct >= 85:
            line += (
                f" Bound by the matrix multiply: even at {need or 100}% of the rate bptt/torch would be "
                f"{best:.2f}; the rest is the element-wise gate math and the passes over the "
                "(T, B, G*H) arrays, bound by memory bandwidth."
            )
        elif r["step_rate"] is not None:
            import numba

            n = max(1, min(numba.get_num_threads(), r["B"]))
            rows_ = -(-r["B"] // n)
            spct = 100 * n * r["step_rate"] / rate
            line += (
                f" One step's recurrent product for one thread's {rows_} rows, ({rows_}, {H}) @ ({H}, {G * H}), "
                f"runs at {r['step_rate']:.0f} GFLOP/s by the micro-kernel, {spct:.0f}% of the rate with "
                f"{n} threads doing the same; the {2 * r['T']} such products of a step (forward and "
                "backward) and the gate math between them set the pace."
            )
        if r.get("torch_onednn") and r["cell"] in ("lstm", "char model"):
            line += (
                " torch's LSTM runs oneDNN's fused RNN primitive (aten::mkldnn_rnn_layer, forward "
                "and backward): one call per sequence, which keeps its weights packed for all the steps."
            )
        out.append(line)
    if not out:
        return "Every row meets the goal."
    return "\n".join(out) + (
        "\n\nWhat would close the rest: on rows bound by the matrix multiply, only a faster "
        "product (this machine's BLAS reaches the rate above; the micro-kernel about the same per "
        "thread); elsewhere, fewer passes over the (T, B, G*H) arrays, e.g. recomputing tanh(c) in "
        "the backward instead of storing it."
    )


def readme_table(rows):
    """The short table the README quotes: times, ratio, share of the matmul rate, peaks."""
    lines = ["| cell | T | B | D | H | bptt ms | torch ms | bptt/torch | block by block | with dx | bptt % of matmul "
             "| torch % of matmul | peak MB bptt / torch |", "|" + "---|" * 13]
    for r in rows:
        gb, gt = r["flops"] / r["bptt_s"] / 1e9, r["flops"] / r["torch_s"] / 1e9
        label = "char model (whole step)" if r["cell"] == "char model" else r["cell"]
        lines.append(
            f"| {label} | {r['T']} | {r['B']} | {r['D']} | {r['H']} | {r['bptt_s'] * 1e3:.2f} "
            f"| {r['torch_s'] * 1e3:.2f} | **{r['bptt_s'] / r['torch_s']:.2f}** | {r['ratio_lo']:.2f}-{r['ratio_hi']:.2f} "
            f"| {_dx_cell(r)} | {100 * gb / r['rate']:.0f}% | {100 * gt / r['rate']:.0f}% "
            f"| {_fmt_mb(r['bptt_peak'])} / {_fmt_mb(r['torch_peak'])} |")
    return "\n".join(lines)


def readme_claim(rows):
    """One sentence: bptt/torch per cell over the rows, and the char model's."""
    parts = []
    for cell in CELLS:
        q = [r["bptt_s"] / r["torch_s"] for r in rows if r["cell"] == cell]
        if q:
            parts.append(f"{cell.upper()} {min(q):.2f}-{max(q):.2f}")
    cm = [r["bptt_s"] / r["torch_s"] for r in rows if r["cell"] == "char model"]
    n = sum(1 for r in rows if r["cell"] != "char model")
    slower = sum(1 for r in rows if r["cell"] != "char model" and r["bptt_s"] >= r["torch_s"])
    dx = []
    for cell in CELLS:
        q = [r["ratio_dx"] for r in rows if r["cell"] == cell and "ratio_dx" in r]
        if q:
            dx.append(f"{cell.upper()} {min(q):.2f}-{max(q):.2f}")
    text = (f"on the CPU a layer's training step on data (no input gradient) takes {', '.join(parts)} of "
            f"PyTorch's time over the {n} benchmarked sizes ({'faster on all' if not slower else f'slower on {slower}'})"
            + (f", with the input gradient too {', '.join(dx)}" if dx else ""))
    if cm:
        text += f", and a whole training step of the character model {cm[0]:.2f}"
    return text


def _between(text, name, body, inline=False):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"benchmarks/cells.py: the README has no {start} ... {end} markers")
    a, b = text.index(start) + len(start), text.index(end)
    return text[:a] + (body if inline else "\n" + body + "\n") + text[b:]


def write_readme(path, argv, info, rows):
    text = open(path, encoding="utf-8").read()
    table = readme_table(rows) + (
        f"\n\nMade by `{_command(argv)}`; other processes on the machine meanwhile: {info['load']}.")
    text = _between(text, "cells-table", table)
    text = _between(text, "cells-claim", readme_claim(rows), inline=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_markdown(path, argv, info, rate, rows, ct, args):
    text = f"""## Cells: one training step against PyTorch on the CPU (`benchmarks/cells.py`)

Made by `{_command(argv)}` (this section is written by that command).

### Machine

- CPU: {info['cpu']}, {info['cores']} cores
- Python {info['python']}, NumPy {info['numpy']} (BLAS: {info['blas']}), PyTorch {info['torch']}, numba {info['numba']}, bptt {info['bptt']}
- bptt time-loop backend: {info['backend']}
- threads: {info['threads']}
- environment: {info['env']}
- other processes on this machine during the timings: {info['load']}
- float32 matrix-multiply rate of this machine, measured in the same run before every row ({'512' if args.quick else '2048'} x {'512' if args.quick else '2048'} `np.matmul` on NumPy's BLAS threads, three times before the row's warm-up; each row's percentages use the median of its own three, as the rate of a shared machine drifts within a run): median **{rate:.1f} GFLOP/s**, from {min(r['rate'] for r in rows):.0f} to {max(r['rate'] for r in rows):.0f}

### Method

One training step of one layer, float32: forward, then backward of `sum(out * g)` for a fixed
random `g` - `bptt.RNN/LSTM/GRU(D, H)` (its compiled loops) against
`torch.nn.RNN/LSTM/GRU(D, H)` (its autograd, `torch.set_num_threads` as below) with the same
weights, in the same process, each library as its users run it. The main columns train the layer
on data, whose input takes no gradient: in torch an input without `requires_grad` (autograd
computes no dx; oneDNN's LSTM backward computes it anyway, as the time of torch's step with and
without it shows), in bptt `backward(dout, input_grad=False)`, which skips the product
dx = da W_ih. The column "with dx" times the step that also returns the input gradient (torch's
x with `requires_grad`, bptt's `input_grad=True`), as for a layer above an embedding or another
layer: the same rows, in the same rounds. Timed as a user trains: runs of
consecutive steps. After {args.warmup} untimed warm-up steps of each library (at the start of the
row only), {args.blocks} rounds of alternating blocks - a block of bptt steps, then a block of
torch steps (then the same two with dx); the next round starting one later (torch, bptt with dx, torch with dx, bptt), and so on - with no sleep
anywhere. Each block is one lead-in step and then N consecutive timed steps, so every timed step
follows a step of its own library, as in a training loop: what one library leaves behind (e.g.
OpenMP threads still spinning) is not charged to the other. Without the lead-in and the turning
order, on 2 cores, the largest LSTM row ran bptt 7 % slower when its blocks always followed
torch's than when they followed its own baseline's. N ("steps timed") is chosen per row so that a block lasts about
{args.block_seconds} s (at least 3 steps). A step's time is its block's time / N; the table gives the
median over the blocks, and bptt/torch the ratio of the two medians, with the range of the
ratios round by round next to it.
The last row is a whole training step of the character model (`bptt.CharModel` against the same
model in torch, the same weights and batch of random characters, the state carried between
steps): embedding, LSTM layers, Linear head, cross-entropy, backward, gradient-norm clipping at
5, Adam; D is the embedding size there.
GFLOP/s counts the matrix products only, 3 x 2*T*B*G*H*(D+H) per layer and step (forward; the
backward does twice that) less dx's 2*T*B*G*H*D for a layer on data (the char model computes its
dx, for the embedding, and adds its head's 3 x 2*T*B*H*V), G = 1, 4, 3 for RNN, LSTM, GRU; "% of matmul" is that rate over the machine's matmul rate measured before the row.
Peak memory is the most extra memory one step holds: for bptt, NumPy's allocations as
`tracemalloc` sees them (numba's few scratch rows are not counted); for torch, the running sum
of the allocation and free events of its CPU allocator recorded by `torch.profiler`
(`profile_memory=True`; memory oneDNN manages itself is not counted).

How bptt runs a step (`bptt/cells/_numba_loops.py`): the batch is split into one block of rows
per thread, and each thread runs the whole time loop for its rows (the rows of a batch never
meet in the recurrence, so the threads need no synchronisation per step). In float32 each
step's product is a micro-kernel on W_hh packed once per sequence (on AVX-512 machines two
16-column panels at a time in 16-float vectors, blocks of 8 rows), followed by compiled, fused
gate math; the input projection and dx are products by the same micro-kernel, the weight
gradients single BLAS products after the loop, each split into row blocks over the same threads
(the float32 LSTM up to 4H = 1024 adds its weight gradients inside the backward loop instead,
every few steps, while the gate gradients are in cache).

### Results

{table(rows)}

"matmul floor" is the time the step's matrix products would take at the machine's matmul rate.

### Rows short of the goal

{notes_text(rows)}

### First-call compile time

{compile_text(ct)}
"""
    from _report import write_section

    write_section("cells", text, path)


if __name__ == "__main__":
    sys.exit(main())
