"""Data-parallel training over MPI, measured here and projected to many machines.

Measured on this machine:
  1. MPI_Allreduce (sum, float32, in place) against the buffer size, 64 KB - 64 MB, for 2 and 4
     local ranks (MPICH's mpiexec from the `mpich` package; ranks beyond the cores oversubscribe);
  2. the character model's training speed (`bptt train`, tiny-shakespeare, LSTM 2x256, batch 64,
     seq 64) as 1 process x 2 threads against 2 ranks x 1 thread;
  3. the compute time of one training step (forward, backward, clip, Adam; no communication)
     against the batch per rank, 1 thread, for LSTM 2x256 and 2x1024.
Projected (docs/scaling.md): a ring Allreduce takes 2(N-1)/N * bytes / bandwidth + 2(N-1) * latency;
a step on N machines takes compute(B/N) + allreduce(N); the efficiency is compute(B) / (N * that).

    python benchmarks/scaling.py                 # writes BENCHMARKS.md (scaling) and docs/scaling.md (tables)
    python benchmarks/scaling.py --quick         # fewer repeats, nothing written
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
DATA = os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
SIZES = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]  # bytes
NETWORKS = {"10 Gb/s": 10e9 / 8, "25 Gb/s": 25e9 / 8, "100 Gb/s": 100e9 / 8}  # bytes/s
LATENCY = 20e-6  # s per message on an Ethernet-class network (assumed, not measured here)
MACHINES = [1, 2, 4, 8, 16, 32, 64]
CHAR = dict(hidden=256, layers=2, embedding=64, vocab=65, batch=64, seq=64)


# ----------------------------------------------------------------------------- workers (one per launch)
def allreduce_worker(repeats):
    """Under mpiexec: rank 0 prints {bytes: median seconds} of an in-place float32 Allreduce."""
    import bptt.distributed as dist

    dist.init()
    comm, MPI = dist._comm, dist._MPI
    out = {}
    for nbytes in SIZES:
        buf = np.ones(nbytes // 4, np.float32)
        reps = max(5, repeats * 4 if nbytes <= (1 << 20) else repeats)
        times = []
        for k in range(reps + 2):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            dt = np.array([time.perf_counter() - t])
            comm.Allreduce(MPI.IN_PLACE, dt, op=MPI.MAX)  # the slowest rank's time
            if k >= 2:
                times.append(float(dt[0]))
        out[nbytes] = statistics.median(times)
    if dist.rank() == 0:
        print(json.dumps(out))


def step_worker(hidden, batches, threads, steps):
    """Prints {batch: median seconds} of a whole training step of the char model (no MPI)."""
    import numba

    from bptt.loss import cross_entropy_backward, cross_entropy_forward
    from bptt.model import CharModel, ModelConfig
    from bptt.optim import Adam, clip_grad_norm
    from bptt.train import prepare_kernels

    numba.set_num_threads(threads)
    cfg = ModelConfig(CHAR["vocab"], "lstm", hidden, CHAR["layers"], CHAR["embedding"])
    model = CharModel(cfg, dtype="float32", seed=0)
    prepare_kernels(model)
    opt = Adam(model.params, model.grads, lr=2e-3)
    rng = np.random.default_rng(0)
    out = {}
    for b in batches:
        x = rng.integers(0, CHAR["vocab"], (CHAR["seq"], b))
        y = rng.integers(0, CHAR["vocab"], (CHAR["seq"], b))
        times = []
        for k in range(steps + 1):
            t = time.perf_counter()
            logits, _ = model.forward(x)
            loss, cache = cross_entropy_forward(logits, y)
            model.zero_grad()
            model.backward(cross_entropy_backward(cache))
            clip_grad_norm(model.grads, 5.0)
            opt.step()
            if k:
                times.append(time.perf_counter() - t)
        out[b] = statistics.median(times)
    print(json.dumps({"params": model.num_parameters(), "times": out}))


# ----------------------------------------------------------------------------- the driver
def _env(threads):
    """A child's environment: ``threads`` numba threads; with one thread, one BLAS thread too
    (with more, bptt keeps OpenBLAS's threads out of its loops itself, as in a plain run)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "HYDRA_"))}
    e.update(NUMBA_NUM_THREADS=str(threads))
    if threads == 1:
        e.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return e


def _json_out(cmd, threads):
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=REPO)
    if p.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure_allreduce(n, repeats):
    cmd = [MPIEXEC, "-n", str(n), sys.executable, __file__, "--worker", "allreduce", "--repeats", str(repeats)]
    return {int(k): v for k, v in _json_out(cmd, 1).items()}


def measure_steps(hidden, batches, steps):
    cmd = [sys.executable, __file__, "--worker", "steps", "--hidden", str(hidden), "--steps", str(steps),
           "--batches", ",".join(map(str, batches))]
    r = _json_out(cmd, 1)
    return r["params"], {int(k): v for k, v in r["times"].items()}


def measure_training(ranks, threads, steps):
    """chars/s of `bptt train` on tiny-shakespeare (steps 6.. of a run, kernels compiled first)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        args = ["--data", DATA, "--hidden", str(CHAR["hidden"]), "--layers", str(CHAR["layers"]),
                "--batch", str(CHAR["batch"]), "--seq-len", str(CHAR["seq"]), "--steps", str(steps),
                "--eval-every", str(10 * steps), "--checkpoint-every", str(10 * steps), "--sample-length", "0",
                "--quiet", "--out", out]
        cmd = [sys.executable, "-m", "bptt.cli", "train", *args]
        if ranks > 1:
            cmd = [MPIEXEC, "-n", str(ranks), *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=REPO)
        if p.returncode:
            sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
        with open(os.path.join(out, "metrics.jsonl")) as f:
            recs = [json.loads(line) for line in f]
    first, last = recs[4], recs[-1]
    return (last["step"] - first["step"]) * CHAR["batch"] * CHAR["seq"] / (last["time"] - first["time"])


def ring_allreduce(nbytes, n, bandwidth, latency=LATENCY):
    """Seconds of a ring Allreduce of nbytes over n machines."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def step_time(times, b):
    """Compute seconds of a step at batch b per rank, interpolated (log-log) between measured
    batches; below the smallest measured batch, the smallest's time (the step does not get faster)."""
    bs = sorted(times)
    if b <= bs[0]:
        return times[bs[0]]
    if b >= bs[-1]:
        return times[bs[-1]] * b / bs[-1]
    lo = max(x for x in bs if x <= b)
    hi = min(x for x in bs if x >= b)
    if lo == hi:
        return times[lo]
    f = (np.log(b) - np.log(lo)) / (np.log(hi) - np.log(lo))
    return float(np.exp(np.log(times[lo]) + f * (np.log(times[hi]) - np.log(times[lo]))))


def efficiency_table(name, params, times, batch):
    """Rows: machines; columns: per network, the efficiency at a fixed global batch and at a
    fixed batch per machine (the global batch grows with N)."""
    nbytes = 4 * params
    head = ("| machines | " + " | ".join(f"{k}: fixed batch {batch}" for k in NETWORKS) + " | "
            + " | ".join(f"{k}: batch {batch}/machine" for k in NETWORKS) + " |")
    lines = [head, "|---:|" + "---:|" * (2 * len(NETWORKS))]
    for n in MACHINES:
        strong, weak = [], []
        for bw in NETWORKS.values():
            ar = ring_allreduce(nbytes, n, bw)
            b = batch / n
            strong.append(times[batch] / (n * (step_time(times, b) + ar)) if b >= 1 else float("nan"))
            weak.append(times[batch] / (times[batch] + ar))
        cells = [("n/a" if np.isnan(e) else f"{e:.0%}") for e in strong] + [f"{e:.0%}" for e in weak]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    title = f"**{name}** ({params:,} parameters, {nbytes / 1e6:.1f} MB of float32 gradients per Allreduce)"
    return title + "\n\n" + "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["allreduce", "steps"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batches", default="64")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps; nothing written")
    a = ap.parse_args(argv)
    if a.worker == "allreduce":
        return allreduce_worker(a.repeats)
    if a.worker == "steps":
        return step_worker(a.hidden, [int(b) for b in a.batches.split(",")], 1, a.steps)

    from _report import machine_line, write_section

    q = a.quick
    ar = {n: measure_allreduce(n, 3 if q else a.repeats) for n in (2, 4)}
    for n, r in ar.items():
        print(f"allreduce {n} ranks:", {f"{k >> 10} KB": f"{v * 1e3:.3f} ms" for k, v in r.items()}, flush=True)
    train_steps = 12 if q else 40
    runs = {"1 process x 2 threads": (1, 2), "2 ranks x 1 thread": (2, 1)}
    speed = {k: [] for k in runs}
    for _ in range(1 if q else 3):  # alternating, the median of each: the shared machine drifts
        for k, (ranks, threads) in runs.items():
            speed[k].append(measure_training(ranks, threads, train_steps))
    print("training chars/s:", {k: [round(v) for v in r] for k, r in speed.items()}, flush=True)
    speed = {k: statistics.median(r) for k, r in speed.items()}
    small = measure_steps(256, [64, 32, 16, 8, 4, 2, 1], 2 if q else 5)
    print("2x256 step s:", small, flush=True)
    big = measure_steps(1024, [64, 16, 4, 1], 1 if q else 2)
    print("2x1024 step s:", big, flush=True)
    if q:
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{machine_line()}; load average {load:.1f} at the end (the machine is shared)"
    write_section("scaling", _benchmarks_section(ar, speed, small, big, train_steps, machine))
    write_section("projection", _projection(small, big), path=os.path.join(REPO, "docs", "scaling.md"))
    return 0


def _benchmarks_section(ar, speed, small, big, train_steps, machine):
    rows = ["| buffer | 2 ranks ms | 2 ranks GB/s | 4 ranks ms | 4 ranks GB/s |", "|---:|---:|---:|---:|---:|"]
    for nbytes in SIZES:
        t2, t4 = ar[2][nbytes], ar[4][nbytes]
        size = f"{nbytes >> 20} MB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KB"
        rows.append(f"| {size} | {t2 * 1e3:.3f} | {nbytes / t2 / 1e9:.2f} | {t4 * 1e3:.3f} | {nbytes / t4 / 1e9:.2f} |")
    one, two = speed["1 process x 2 threads"], speed["2 ranks x 1 thread"]
    steps_rows = ["| LSTM | batch per rank | step ms (1 thread) | chars/s |", "|---|---:|---:|---:|"]
    for name, (params, times) in (("2x256", small), ("2x1024", big)):
        for b, t in sorted(times.items(), reverse=True):
            steps_rows.append(f"| {name} | {b} | {t * 1e3:.1f} | {b * CHAR['seq'] / t:,.0f} |")
    return f"""## Data-parallel training over MPI (`benchmarks/scaling.py`)

MPI_Allreduce (sum, float32, in place, the slowest rank's time, median) between local ranks
launched by MPICH's `mpiexec` (the `mpich` package); 4 ranks on 2 cores are oversubscribed:

{chr(10).join(rows)}

The character model (`bptt train`, tiny-shakespeare, LSTM 2x256, embedding 64, batch 64, seq 64,
Adam; steps 5-{train_steps} of a run, chars/s from its metrics):

| run | chars/s (median of 3 alternating runs) |
|---|---:|
| 1 process x 2 threads | {one:,.0f} |
| 2 ranks x 1 thread (batch 32 each, one Allreduce of {4 * small[0] / 1e6:.1f} MB per step) | {two:,.0f} |

2 ranks x 1 thread ran at {two / one:.2f}x the speed of 1 process x 2 threads.
{_verdict(two / one)}
The projection to many machines is in docs/scaling.md.

Compute of one training step (forward, backward, clip, Adam; no communication), 1 thread, seq 64,
against the batch per rank (the input to the projection):

{chr(10).join(steps_rows)}

Command: `python benchmarks/scaling.py`. Machine: {machine}.
"""


def _verdict(ratio):
    if ratio > 1.1:
        return ("Both use the same 2 cores for the same arithmetic; on this shared, loaded machine\n"
                "the two threads of one process wait for each other at every step's barriers whenever\n"
                "one is descheduled, while two ranks meet only at the one Allreduce per step.")
    if ratio < 0.9:
        return ("Both use the same 2 cores for the same arithmetic; each rank adds the Allreduce and\n"
                "works on a smaller batch per thread.")
    return "Both use the same 2 cores for the same arithmetic: no speed-up, as expected."


def _projection(small, big):
    return (efficiency_table("LSTM 2x256", small[0], small[1], 64) + "\n\n"
            + efficiency_table("LSTM 2x1024", big[0], big[1], 64))


if __name__ == "__main__":
    sys.exit(main())
