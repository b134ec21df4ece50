"""Running ``bptt`` (or a script) under MPICH's ``mpiexec`` from the tests: the launcher of the
test extra's ``mpich`` (in the venv's bin), ranks oversubscribed on a small machine, NumPy time
loops (no numba start-up in each rank) and one BLAS thread per rank."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

from bptt import checkpoint as ckpt_io

from training_helpers import REPO

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
LAUNCHER_VARS = ("PMI_", "OMPI_", "PMIX_", "MV2_", "HYDRA_", "MPI_LOCAL")


def env(**extra):
    """The environment of a child: no launcher variables of our own, NumPy loops, 1 BLAS thread."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARS)}
    paths = [os.path.join(REPO, "tests")] + ([e["PYTHONPATH"]] if "PYTHONPATH" in e else [])
    e.update(BPTT_BACKEND="numpy", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
             PYTHONPATH=os.pathsep.join(paths))
    e.update(extra)
    return e


def bptt_cmd(n, *args, launcher_opts=()):
    """argv: ``mpiexec -n N python -m bptt.cli ARGS`` (n = 0: no launcher at all)."""
    cmd = [sys.executable, "-m", "bptt.cli", *map(str, args)]
    return cmd if n == 0 else [MPIEXEC, *launcher_opts, "-n", str(n), *cmd]


def run(n, *args, timeout=180, extra_env=None, launcher_opts=()):
    """Run ``bptt ARGS`` on n ranks (0: one plain process) -> CompletedProcess (text)."""
    return subprocess.run(bptt_cmd(n, *args, launcher_opts=launcher_opts), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env(**(extra_env or {})))


def script(n, path, *args, timeout=180):
    """Run ``python PATH ARGS`` on n ranks -> CompletedProcess (text)."""
    cmd = [sys.executable, path, *map(str, args)]
    return subprocess.run([MPIEXEC, "-n", str(n), *cmd] if n else cmd, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env())


def start(n, *args, stderr_path, stdout_path, launcher_opts=()):
    """Start ``bptt ARGS`` on n ranks in the background, stdout and stderr to files -> Popen."""
    with open(stderr_path, "w") as err, open(stdout_path, "w") as out:
        return subprocess.Popen(bptt_cmd(n, *args, launcher_opts=launcher_opts), stdout=out, stderr=err,
                                cwd=REPO, env=env(), start_new_session=True)


def wait_for(pred, timeout=120, poll=0.05):
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(poll)


def rank_pids(stderr_text):
    """The 'mpi: N ranks ... rank pid@host: 0 123@vm, 1 124@vm' line -> {rank: (pid, host)}."""
    m = re.search(r"^mpi: \d+ ranks .*rank pid@host: (.*)$", stderr_text, re.M)
    if not m:
        return {}
    return {int(k): (int(p), h) for k, p, h in re.findall(r"(\d+) (\d+)@(\S+?)(?:,|$)", m.group(1))}


def guard_pids(stderr_text):
    """The 'mpi: the processes the launcher started (each guards its rank): 0 122, 1 123' line
    -> {rank: pid}."""
    m = re.search(r"^mpi: the processes the launcher started .*: (.*)$", stderr_text, re.M)
    return {int(k): int(p) for k, p in re.findall(r"(\d+) (\d+)", m.group(1))} if m else {}


def kill_group(proc):
    """End a launcher we started and everything it started (its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def weights(run_dir):
    _, meta, w, state = ckpt_io.load_checkpoint(run_dir)
    return meta, w, state


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def rel(a, b):
    """Largest |a - b| relative to the largest |b| (0 when both are zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.abs(b).max() if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale else float(np.abs(a - b).max())


def worst(d1, d2):
    """The largest relative difference over the arrays of two dicts with the same keys."""
    assert set(d1) == set(d2), set(d1) ^ set(d2)
    return max(rel(d1[k], d2[k]) for k in d1)
