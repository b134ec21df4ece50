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

from fault_cases import checkpoint_files
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


# ----------------------------------------------------------------------------- bad input and faults
# Run by tests/test_distributed.py (which asserts on each) and by benchmarks/faults_table.py (which
# writes docs/faults.md's MPI rows from the real messages).
ARGS = ["--hidden", "8", "--layers", "2", "--embedding-dim", "4", "--seq-len", "5", "--batch", "6",
        "--dropout", "0.3", "--eval-every", "10", "--eval-batches", "2", "--sample-length", "0",
        "--checkpoint-every", "10", "--quiet"]
INJECT = os.path.join(REPO, "tests", "mpi_inject.py")

BAD = {  # name -> (the command as the table shows it, what is wrong, the error line after "bptt: error: ")
    "indivisible": ("mpiexec -n 2 bptt train --batch 5", "a batch the ranks cannot split",
                    r"batch 5 cannot be split evenly over 2 ranks \(5 = 2 x 2 \+ 1\); use a multiple of 2 "
                    r"such as 4 or 6$"),
    "more-ranks-than-streams": ("mpiexec -n 3 bptt train --batch 2", "more ranks than streams",
                                r"3 ranks need at least 3 streams, but the batch has 2; use --batch 3 or more "
                                r"\(a multiple of 3\), or fewer ranks$"),
    "task": ("mpiexec -n 2 bptt train --task echo", "a task (tasks run as one process)",
             r"--task is not supported under mpiexec \(2 ranks\): run tasks as one process"),
    "resume-indivisible": ("mpiexec -n 4 bptt train --resume RUN", "a run of batch 6 resumed on 4 ranks",
                           r"batch 6 cannot be split evenly over 4 ranks"),
    "mpi4py-missing": ("mpiexec -n 2 bptt train", "mpi4py not installed",
                       r"bptt was started by an MPI launcher \(2 ranks\) but mpi4py is not installed; "
                       r"install it with: pip install 'bptt\[mpi\]'$"),
    "sample": ("mpiexec -n 2 bptt sample RUN", "a command that runs as one process",
               r"bptt sample runs as one process, not under mpiexec \(2 ranks\); only bptt train runs on several$"),
    "other-data": ("mpiexec -n 2 bptt train --data TEXT", "rank 1 reads a different text at the same path",
                   r"rank 1 read other training data than rank 0 \(\S+text\.txt \(2,472 characters\)\): "
                   r"every host needs the same text at the same path$"),
}

FAULTS = {  # name -> (what happens, on 2 ranks resuming a 10-step run; the error line after "bptt: error: ")
    "nan": ("the loss of rank 1's step 13 is NaN",
            "the loss became nan at step 13; training stopped. The last checkpoint is kept: {run}/ckpt-00000010"),
    "drift": ("rank 1's weights move by 1e-4 (relative) after step 13",
              "the weights of rank 1 differ from rank 0's at step 20: the ranks diverged; training stopped. "
              "The last checkpoint is kept: {run}/ckpt-00000010"),
    "oserror": ("rank 1 alone fails in step 13 (its disk is full)",
                "rank 1: No space left on device: /pretend/scratch"),
}


def small_run(text, out):
    """A 3-step run of one process at ``out`` -> out."""
    p = run(0, "train", "--data", text, *ARGS, "--steps", 3, "--out", out)
    assert p.returncode == 0, p.stderr
    return out


def bad_case(name, text, small, new, tmp):
    """Run BAD[name] (``small``: a run to resume or sample, ``new``: the --out of a new run, ``tmp``:
    scratch) -> CompletedProcess."""
    args = ["train", "--data", text, *ARGS, "--steps", 3, "--out", new]
    n, extra, extra_env = 2, [], None
    if name == "indivisible":
        extra = ["--batch", "5"]
    elif name == "more-ranks-than-streams":
        n, extra = 3, ["--batch", "2"]
    elif name == "task":
        extra = ["--task", "echo"]
    elif name == "resume-indivisible":
        n, args = 4, ["train", "--resume", small, "--steps", 6]
    elif name == "mpi4py-missing":  # an mpi4py that cannot be imported, first on the path
        fake = os.path.join(tmp, "fake", "mpi4py")
        os.makedirs(fake, exist_ok=True)
        with open(os.path.join(fake, "__init__.py"), "w") as f:
            f.write("raise ImportError(\"No module named 'mpi4py'\")\n")
        extra_env = {"PYTHONPATH": os.path.dirname(fake)}
    elif name == "sample":
        args = ["sample", small, "--length", 5]
    elif name == "other-data":
        return subprocess.run([MPIEXEC, "-n", "2", sys.executable, INJECT, "otherdata", "1", "0", *map(str, args)],
                              capture_output=True, text=True, timeout=60, cwd=REPO, env=env())
    return run(n, *args, *extra, extra_env=extra_env, timeout=60)


def fault_case(name, text, run_dir):
    """A 10-step run of 2 ranks at ``run_dir``, then resumed to 30 with FAULTS[name] injected ->
    (CompletedProcess, the checkpoints' bytes before, after)."""
    p = run(2, "train", "--data", text, *ARGS, "--steps", 10, "--out", run_dir)
    assert p.returncode == 0, p.stderr
    before = checkpoint_files(run_dir)
    p = subprocess.run([MPIEXEC, "-n", "2", sys.executable, INJECT, name, "1", "3", "train", "--resume", run_dir,
                        "--steps", "30", "--quiet"], capture_output=True, text=True, timeout=120, cwd=REPO, env=env())
    return p, before, checkpoint_files(run_dir)
