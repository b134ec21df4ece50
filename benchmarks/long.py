"""Long sequences: peak memory and time of one training step with memory="full", memory="sqrt"
and PyTorch, at T = 1,000, 10,000 and 100,000 (B = 8, H = 128, LSTM and GRU).

    python benchmarks/long.py              # print the table (about 20 minutes on 2 busy cores)
    python benchmarks/long.py --write      # ... and write it into BENCHMARKS.md (section "long")
    python benchmarks/long.py --T 1000 10000 --cells lstm --repeats 5 --rounds 4

The step is a sequence classifier's (``--pool last``): the layer over x (T, 8, 8) float32 from a
zero state, the loss read from the final h alone (its gradient ones), then backward including dx.
bptt is asked for the final state alone (``layer(x, return_output=False)``, ``backward(None,
dh)``), as bptt's SequenceClassifier with ``pool="last"`` asks; torch's layer returns its output
sequence anyway (``h_n.sum().backward()``). Each case runs in a fresh process: the kernels are compiled (or loaded) and warmed
on 20 steps, the process's peak resident memory is reset (``/proc/self/clear_refs``), the step
runs, and the peak is VmHWM minus the resident memory just before it (what the step added: the
inputs are already there). Each case runs ``--rounds`` times, full, sqrt, torch in one round and
in the reverse order in the next (this shared machine drifts by 10-20 % within minutes: a fixed
order would hand the drift to one side); the time is the median of all the rounds' steps
(``--repeats`` per process, one at T = 100,000), the peak the median of the rounds' peaks; wall
clock, every library on the same number of threads (``--threads``, default 1: on a shared
machine a parallel region waits for a free core, and sqrt mode runs S = ceil(sqrt(T)) times more
of them, so two threads would measure the other processes more than the step).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
B, D, H = 8, 8, 128
MODES = ("full", "sqrt", "torch")


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


# ----------------------------------------------------------------------------- one case (child)
def _bptt_step(cell, mode, x):
    import numpy as np

    from bptt.recurrent import GRU, LSTM

    layer = {"lstm": LSTM, "gru": GRU}[cell](D, H, memory=mode, seed=0)

    def step(x):
        _, h_n = layer(x, return_output=False)  # the final state alone: no output sequence kept
        dh = (np.ones_like(h_n[0]), None) if isinstance(h_n, tuple) else np.ones_like(h_n)
        layer.backward(None, dh)
        layer.zero_grad()

    return step


def _torch_step(cell, x):
    import torch

    torch.manual_seed(0)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](D, H)

    def step(x):
        xt = torch.from_numpy(x).requires_grad_(True)
        _, h_n = layer(xt)
        h = h_n[0] if isinstance(h_n, tuple) else h_n
        h.sum().backward()
        layer.zero_grad(set_to_none=True)

    return step


def run_case(cell, mode, T, repeats, threads):
    import numpy as np

    x = np.random.default_rng(0).standard_normal((T, B, D)).astype(np.float32)
    if mode == "torch":
        import torch

        torch.set_num_threads(threads)
        step = _torch_step(cell, x)
    else:
        step = _bptt_step(cell, mode, x)
    step(np.ascontiguousarray(x[:20]))  # compile / load the kernels, warm up
    _reset_peak()
    base = _status("VmRSS")
    times = []
    for r in range(repeats):
        t = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - t)
        if r == 0:
            peak = _status("VmHWM") - base
    return {"peak_bytes": peak, "seconds": sorted(times)[len(times) // 2], "times": times}


def merge(runs):
    """The rounds of one case -> one result: the median of every timed step and of the peaks
    (the first failure, if any round failed)."""
    for r in runs:
        if "error" in r:
            return r
    times = sorted(t for r in runs for t in r["times"])
    peaks = sorted(r["peak_bytes"] for r in runs)
    return {"peak_bytes": peaks[len(peaks) // 2], "seconds": statistics.median(times), "times": times,
            "rounds": len(runs)}


def order(r):
    """Round r's order of the modes: as MODES, then reversed, alternately."""
    return MODES if r % 2 == 0 else MODES[::-1]


# ----------------------------------------------------------------------------- the table (parent)
def spawn(cell, mode, T, repeats, threads, timeout):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--case", cell, mode, str(T),
           "--repeats", str(repeats), "--threads", str(threads)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"took longer than {timeout:g} s"}
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _mib(n):
    return f"{n / (1 << 20):,.0f} MiB" if n >= 10 << 20 else f"{n / (1 << 20):.1f} MiB"


def _cell(r, what):
    if "error" in r:
        return "does not fit" if "MemoryLimitError" in r["error"] or "needs about" in r["error"] else "-"
    return _mib(r["peak_bytes"]) if what == "mem" else f"{r['seconds']:.2f} s"


def table(results, Ts, cells):
    lines = ["| cell | T | peak full | peak sqrt | peak torch | sqrt/full | time full | time sqrt | "
             "time torch | sqrt/full |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for cell in cells:
        for T in Ts:
            r = {m: results[(cell, m, T)] for m in MODES}
            ok = "error" not in r["full"] and "error" not in r["sqrt"]
            mem_ratio = f"1/{r['full']['peak_bytes'] / r['sqrt']['peak_bytes']:.1f}" if ok else "-"
            t_ratio = f"{r['sqrt']['seconds'] / r['full']['seconds']:.2f}x" if ok else "-"
            lines.append(f"| {cell.upper()} | {T:,} | {_cell(r['full'], 'mem')} | {_cell(r['sqrt'], 'mem')} | "
                         f"{_cell(r['torch'], 'mem')} | {mem_ratio} | {_cell(r['full'], 't')} | "
                         f"{_cell(r['sqrt'], 't')} | {_cell(r['torch'], 't')} | {t_ratio} |")
            for m in MODES:
                if "error" in r[m]:
                    notes.append(f"- {cell.upper()} T={T:,} {m}: {r[m]['error']}")
    return "\n".join(lines), notes


def _load():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return ["?", "?", "?"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per case (1 at T >= 100,000)")
    ap.add_argument("--rounds", type=int, default=2, help="processes per case, the order of full, sqrt and "
                    "torch reversed every other round (default 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per case before it counts as too long")
    ap.add_argument("--write", action="store_true", help="write the section 'long' of BENCHMARKS.md")
    ap.add_argument("--case", nargs=3, metavar=("CELL", "MODE", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        cell, mode, T = args.case
        print(json.dumps(run_case(cell, mode, int(T), args.repeats, args.threads)))
        return 0
    sys.path.insert(0, HERE)
    from _report import machine_line, write_section

    load_before = _load()
    results = {}
    for cell in args.cells:
        for T in args.T:
            runs = {m: [] for m in MODES}
            for rnd in range(args.rounds):
                for mode in order(rnd):
                    if runs[mode] and "error" in runs[mode][-1]:
                        continue  # it failed (too long, does not fit): once is enough
                    reps = 1 if T >= 100_000 else args.repeats
                    r = spawn(cell, mode, T, reps, args.threads, args.timeout)
                    runs[mode].append(r)
                    print(f"{cell} T={T} {mode} round {rnd + 1}: {r}", file=sys.stderr, flush=True)
            for mode in MODES:
                results[(cell, mode, T)] = merge(runs[mode])
    load_after = _load()
    body, notes = table(results, args.T, args.cells)
    text = (
        "## Long sequences: memory=\"full\", memory=\"sqrt\" and PyTorch (`benchmarks/long.py`)\n\n"
        f"Made by `python benchmarks/long.py --write` (T = {', '.join(f'{t:,}' for t in args.T)}; "
        f"{args.threads} thread{'s' if args.threads > 1 else ''} for every library; "
        f"{args.rounds} rounds of a fresh process per case, full, sqrt, torch and then the reverse order; "
        f"the median of their steps, {args.repeats} per process, 1 at T = 100,000).\n\n"
        f"Machine: {machine_line()}. Load average (1, 5, 15 min) before: {', '.join(load_before)}; "
        f"after: {', '.join(load_after)}"
        + (" - **the machine was shared with other processes while measuring**, so the times are "
           "upper bounds that other processes inflated (memory is not affected)" if float(load_before[1]) > 1.5 else "")
        + ".\n\n"
        "One training step of a sequence classifier over its last state: `LSTM/GRU(8, 128)` over x "
        "(T, 8, 8) float32, the loss on the final h alone, backward including dx; bptt asked for the "
        "final state alone (`layer(x, return_output=False)`, then `backward(None, dh)`: no output "
        "sequence is kept, as bptt's classifier with `--pool last` does), torch's layer returning its "
        "output anyway. Peak: the resident memory the step adds (VmHWM after it minus VmRSS before it, "
        "the peak reset just before; a fresh process per case). sqrt keeps a state every "
        "ceil(sqrt(T)) steps (and the last segment's cache) and recomputes each other segment in "
        "backward; what it holds beyond them is dx, (T, 8, 8), and one segment's work, where full "
        "holds about 12 arrays of (T, 8, 128) for an LSTM (h, c, tanh(c), 4 gates, then 4 gate "
        "gradients) and 10 for a GRU (h, 3 gates, ghn, then 4).\n\n"
        + body + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else ""))
    print(text)
    if args.write:
        print("written to", write_section("long", text), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
