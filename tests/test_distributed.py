"""Data-parallel training over MPI (``mpiexec -n N bptt train``, ``bptt.distributed``).

- N ranks compute the step one process computes: float64, dropout on, 2 and 3 ranks
  (oversubscribed on a small machine): the loss of every step, the validation losses, the
  weights, the optimizer buffers and the carried states after 20 steps equal one process's to
  <= 1e-12 relative; float32 to the stated bound.
- A checkpoint written by 3 ranks resumes on 2 (and on 1) and ends as the straight run.
- Faults: a rank killed with SIGKILL ends the whole job within 30 s, non-zero, with its guard's
  line naming the rank (and the checkpoint to resume from), no process left behind; a guard
  killed takes its rank with it; when the launcher leaves the others running, a rank of the
  same host names the dead one. The last
  checkpoint is intact and resumes. Ctrl-C to mpiexec saves a checkpoint and exits 0. A NaN on
  one rank stops every rank with the single-process message. Bad input (a batch the ranks
  cannot split, more ranks than streams, --task, mpi4py missing) is one line and exit 1.
- ``bptt.distributed`` in a hand-written loop gives the single-process result.
- Without a launcher, bptt never imports mpi4py.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import mpi_helpers as mh
from training_helpers import REPO, digests, make_text, write_text

ARGS = mh.ARGS
STEPS = 20


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return write_text(tmp_path_factory.mktemp("mpi") / "text.txt", make_text(600))


@pytest.fixture(scope="module")
def straight(text, tmp_path_factory):
    """One process, float64 and float32, 20 steps straight through -> {dtype: run dir}."""
    out = {}
    for dtype in ("float64", "float32"):
        run = str(tmp_path_factory.mktemp("straight") / dtype)
        p = mh.run(0, "train", "--data", text, *ARGS, "--dtype", dtype, "--steps", STEPS, "--out", run)
        assert p.returncode == 0, p.stderr
        out[dtype] = run
    return out


def _compare(run, ref):
    """-> the largest relative difference of (losses of every step, validation losses, weights,
    optimizer buffers and carried states)."""
    la, lb = mh.losses(run), mh.losses(ref)
    assert [r["step"] for r in la] == [r["step"] for r in lb] == list(range(1, STEPS + 1))
    meta_a, wa, sa = mh.weights(run)
    meta_b, wb, sb = mh.weights(ref)
    assert meta_a["step"] == meta_b["step"] == STEPS
    assert meta_a["rng"] == meta_b["rng"] and meta_a["data"] == meta_b["data"]
    return {"loss": mh.rel([r["loss"] for r in la], [r["loss"] for r in lb]),
            "val": mh.rel([r["val_loss"] for r in la if "val_loss" in r],
                          [r["val_loss"] for r in lb if "val_loss" in r]),
            "grad_norm": mh.rel([r["grad_norm"] for r in la], [r["grad_norm"] for r in lb]),
            "weights": mh.worst(wa, wb), "state": mh.worst(sa, sb)}


@pytest.mark.parametrize("n", [2, 3])
def test_n_ranks_compute_the_single_process_steps_float64(n, text, straight, tmp_path):
    run = str(tmp_path / "run")
    p = mh.run(n, "train", "--data", text, *ARGS, "--dtype", "float64", "--steps", STEPS, "--out", run)
    assert p.returncode == 0, p.stderr
    assert re.search(rf"^mpi: {n} ranks x {6 // n} streams \(batch 6\)", p.stderr, re.M), p.stderr
    assert "finished 20 steps" in p.stdout and p.stdout.count("finished") == 1  # rank 0 alone prints
    diff = _compare(run, straight["float64"])
    assert max(diff.values()) <= 1e-12, diff


def test_two_ranks_float32_agree_to_float32_rounding(text, straight, tmp_path):
    """float32: the sums are added in another order, so the ranks differ from one process by
    rounding (measured: 3e-7 relative on the losses, 1.5e-7 on the weights after 20 steps)."""
    run = str(tmp_path / "run")
    p = mh.run(2, "train", "--data", text, *ARGS, "--dtype", "float32", "--steps", STEPS, "--out", run)
    assert p.returncode == 0, p.stderr
    diff = _compare(run, straight["float32"])
    print("float32, 2 ranks against 1 process:", diff)
    assert max(diff.values()) <= 2e-6, diff


def test_checkpoint_of_3_ranks_resumes_on_2_and_on_1_as_the_straight_run(text, straight, tmp_path):
    run = str(tmp_path / "run")
    p = mh.run(3, "train", "--data", text, *ARGS, "--dtype", "float64", "--steps", 10, "--out", run)
    assert p.returncode == 0, p.stderr
    copy = str(tmp_path / "copy")
    subprocess.run(["cp", "-r", run, copy], check=True)
    p = mh.run(2, "train", "--resume", run, "--steps", STEPS)
    assert p.returncode == 0, p.stderr
    assert f"resuming {run} at step 10" in p.stderr
    diff = _compare(run, straight["float64"])
    assert max(diff.values()) <= 1e-12, diff
    p = mh.run(0, "train", "--resume", copy, "--steps", STEPS)  # 3 ranks -> 1 process
    assert p.returncode == 0, p.stderr
    diff = _compare(copy, straight["float64"])
    assert max(diff.values()) <= 1e-12, diff


# ----------------------------------------------------------------------------- faults
LONG = ["--hidden", "8", "--layers", "1", "--embedding-dim", "4", "--seq-len", "5", "--batch", "4",
        "--eval-every", "1000000", "--sample-length", "0", "--checkpoint-every", "20", "--steps", "1000000"]


def _start_and_wait_for_checkpoint(tmp_path, text, launcher_opts=()):
    run, log = str(tmp_path / "run"), str(tmp_path / "stderr.txt")
    proc = mh.start(2, "train", "--data", text, *LONG, "--quiet", "--out", run, stderr_path=log,
                    stdout_path=str(tmp_path / "stdout.txt"), launcher_opts=launcher_opts)
    try:
        mh.wait_for(lambda: os.path.exists(os.path.join(run, "latest")) or proc.poll() is not None)
    except AssertionError:
        mh.kill_group(proc)
        raise
    assert proc.poll() is None, open(log).read()
    return proc, run, log


def test_sigkill_of_a_rank_ends_the_job_naming_it(text, tmp_path):
    """SIGKILL of rank 1: its guard (the process mpiexec started) writes one line naming rank 1
    and ends by the same signal; mpiexec ends the job within 30 s; no process is left behind; the
    newest checkpoint is intact and resumes."""
    proc, run, log = _start_and_wait_for_checkpoint(tmp_path, text)
    try:
        pids = mh.rank_pids(open(log).read())
        assert sorted(pids) == [0, 1]
        pid, host = pids[1]
        guards = mh.guard_pids(open(log).read())
        assert sorted(guards) == [0, 1] and guards[1] != pid
        time.sleep(0.3)  # well into training
        with open(os.path.join(run, "latest")) as f:  # (not the checkpoint itself: rank 0 may be pruning it)
            before = int(f.read().strip()[len("ckpt-"):])
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        mh.kill_group(proc)
    err = open(log).read()
    assert rc != 0 and took < 30, (rc, took, err)
    assert "Traceback" not in err
    dead = [line for line in err.splitlines() if "killed" in line]
    assert len(dead) == 1, err
    m = re.fullmatch(rf"bptt: error: rank 1 \(pid {pid} on {re.escape(host)}\) was killed by SIGKILL; the job "
                     rf"stops\. The last checkpoint is kept: {re.escape(run)}/(ckpt-\d+); resume with: "
                     rf"bptt train --resume {re.escape(run)}", dead[0])
    assert m, dead[0]
    out = open(tmp_path / "stdout.txt").read()  # mpiexec's own report names one of the guards
    assert re.search(rf"PID ({guards[0]}|{guards[1]}) RUNNING AT {re.escape(host)}", out) and "EXIT CODE: 9" in out, out
    mh.wait_for(lambda: not any(_alive(p) for p in [pids[0][0], pid, *guards.values()]), timeout=10)
    meta, w, _ = mh.weights(run)  # the newest checkpoint loads (checksums verified)
    assert meta["step"] >= before and meta["step"] % 20 == 0
    assert m.group(1) == f"ckpt-{meta['step']:08d}"
    p = mh.run(2, "train", "--resume", run, "--steps", meta["step"] + 20)
    assert p.returncode == 0, p.stderr
    assert mh.weights(run)[0]["step"] == meta["step"] + 20


def test_sigkill_of_a_guard_ends_the_job_and_its_rank(text, tmp_path):
    """The process mpiexec started (rank 1's guard) killed: its rank dies with it (no orphan
    left computing or waiting) and the job ends non-zero within 30 s."""
    proc, run, log = _start_and_wait_for_checkpoint(tmp_path, text)
    try:
        pids, guards = mh.rank_pids(open(log).read()), mh.guard_pids(open(log).read())
        os.kill(guards[1], signal.SIGKILL)
        rc = proc.wait(timeout=30)
    finally:
        mh.kill_group(proc)
    assert rc == 9, open(tmp_path / "stdout.txt").read()
    mh.wait_for(lambda: not any(_alive(p) for p in [pid for pid, _ in pids.values()] + list(guards.values())),
                timeout=10)
    assert mh.weights(run)[0]["step"] % 20 == 0  # the newest checkpoint loads


def _alive(pid):
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_watch_names_a_dead_rank_of_this_host_and_aborts(monkeypatch, capfd):
    """The watch bptt keeps on the other ranks of its host (for launchers that leave the
    survivors waiting in a collective): here rank 0 of a pretend 2-rank job whose rank 1 is a
    child process; SIGKILL it -> one line naming rank 1, then MPI_Abort."""
    import threading

    import bptt.distributed as dist

    aborted = threading.Event()

    class World:
        def Get_rank(self):
            return 0

        def Get_size(self):
            return 2

        def Abort(self, code):
            aborted.code = code
            aborted.set()

    monkeypatch.setattr(dist, "_comm", World())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        table = [(os.getpid(), dist.socket.gethostname()), (child.pid, dist.socket.gethostname())]
        dist.watch_peers(table, lambda k, pid, host: f"bptt: error: rank {k} (pid {pid} on {host}) died")
        time.sleep(0.2)
        assert not aborted.is_set()
        child.kill()
        child.wait()
        assert aborted.wait(10) and aborted.code == 1
    finally:
        child.kill()
        dist._watch["armed"] = False
    err = capfd.readouterr().err
    assert err == f"bptt: error: rank 1 (pid {child.pid} on {dist.socket.gethostname()}) died\n"


def test_ctrl_c_to_mpiexec_saves_a_checkpoint_and_exits_0(text, tmp_path):
    proc, run, log = _start_and_wait_for_checkpoint(tmp_path, text)
    try:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends to mpiexec
        proc.wait(timeout=30)
    finally:
        mh.kill_group(proc)
    out = open(tmp_path / "stdout.txt").read()
    assert proc.returncode == 0, open(log).read()
    m = re.search(r"^interrupted at step (\d+); checkpoint saved\. Resume with: bptt train --resume (\S+)$", out, re.M)
    assert m and m.group(2) == run, out
    assert out.count("interrupted") == 1
    meta, _, _ = mh.weights(run)
    assert meta["step"] == int(m.group(1))
    assert len(mh.losses(run)) == meta["step"]


@pytest.mark.parametrize("fault", list(mh.FAULTS))
def test_a_fault_on_one_rank_stops_every_rank_with_one_message(fault, text, tmp_path):
    """nan: the loss of one rank's step is NaN -> every rank stops with the single-process
    message. drift: one rank's weights move by 1e-4 -> the checksum comparison before the next
    checkpoint stops every rank. oserror: an error of rank 1 alone (its disk is full) -> it says
    so, naming itself, and leaves by MPI_Abort; the launcher ends the others, which wait in the
    Allreduce. Each: exit 1, one error line (not MPICH's abort line too), the checkpoints
    untouched. (The same runs write docs/faults.md's MPI rows: mpi_helpers.fault_case.)"""
    run = str(tmp_path / "run")
    p, before, after = mh.fault_case(fault, text, run)
    # nan, drift: every rank stops by itself with exit 1. oserror: rank 1 leaves by MPI_Abort(1)
    # (rank 0 is stuck in the step's Allreduce), so mpiexec ends the job and exits 1 too
    assert p.returncode == 1, (p.returncode, p.stderr)
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    expect = mh.FAULTS[fault][1].replace("{run}", run)
    assert errors == ["bptt: error: " + expect], p.stderr
    assert "Traceback" not in p.stderr and "MPI_Abort" not in p.stderr, p.stderr
    assert after == before


@pytest.fixture(scope="module")
def small_run(text, tmp_path_factory):
    return mh.small_run(text, str(tmp_path_factory.mktemp("small") / "run"))


@pytest.mark.parametrize("case", list(mh.BAD))
def test_bad_input_under_mpi_is_one_line(case, text, small_run, tmp_path):
    """Each case of mpi_helpers.BAD (the same runs write docs/faults.md's MPI rows): exit 1, one
    line on stderr, the earlier run untouched, nothing written for the new one."""
    before = digests(small_run)
    new = str(tmp_path / "new")
    p = mh.bad_case(case, text, small_run, new, str(tmp_path))
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert re.match(r"bptt: error: " + mh.BAD[case][2], lines[0]), lines[0]
    assert digests(small_run) == before
    assert not os.path.exists(os.path.join(new, "latest"))


# ----------------------------------------------------------------------------- the library
def test_distributed_in_a_hand_written_loop_equals_one_process(tmp_path):
    from safetensors.numpy import load_file

    loop = os.path.join(REPO, "tests", "mpi_user_loop.py")
    results = {}
    for n in (0, 2, 3):
        out = str(tmp_path / f"n{n}.safetensors")
        p = mh.script(n, loop, out)
        assert p.returncode == 0, p.stderr
        results[n] = load_file(out)
    one = results[0]
    assert one["losses"][-1] < one["losses"][0]  # it learns
    for n in (2, 3):
        assert mh.worst(results[n], one) <= 1e-12, n


def test_without_a_launcher_nothing_of_mpi_is_imported(text, tmp_path):
    code = ("import sys; import bptt.distributed as d; from bptt.cli import main; "
            f"rc = main(['train', '--data', {text!r}, '--steps', '2', '--hidden', '4', '--layers', '1', "
            f"'--batch', '2', '--seq-len', '4', '--sample-length', '0', '--quiet', '--out', {str(tmp_path / 'r')!r}]); "
            "assert rc == 0 and (d.rank(), d.size(), d.shard(6)) == (0, 1, slice(0, 6)); "
            "assert not d.launched() and not d.initialized(); "
            "assert not [m for m in sys.modules if m.startswith('mpi4py')], 'mpi4py imported'; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                       env=mh.env())
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr
