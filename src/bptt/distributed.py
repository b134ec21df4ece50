"""Data-parallel training over MPI: N processes compute the step one process would.

    rank r of N owns streams shard(B) = [r*B/N, (r+1)*B/N) of the B streams of a batch
    forward + backward on its streams -> allreduce_grads(grads): one Allreduce (sum) over one
    contiguous buffer, divided by N -> every rank holds the gradient of the mean loss of the
    whole batch -> the same clipping and the same optimizer step on every rank.

MPI does the work (mpi4py over MPICH or Open MPI; ``pip install 'bptt[mpi]'``): the launcher,
the transport and the collectives are theirs. A process started without a launcher (no
PMI_SIZE / OMPI_COMM_WORLD_SIZE / PMIX_RANK ... in its environment) is rank 0 of 1, every
function below works and does nothing, and mpi4py is never imported.

    import bptt.distributed as dist
    dist.init()                                   # join the job (mpiexec -n N python train.py)
    rows = dist.shard(B)                          # this rank's streams: x[:, rows]
    dist.broadcast_params(model.params)           # every rank starts from rank 0's weights
    ...forward / backward on x[:, rows]...
    dist.allreduce_grads(model.grads)             # in place: the whole batch's mean gradient
    opt.step()

Besides these, the training loop uses a few collectives of its own kind, all here: the carried
states gathered into rank 0 (``gather_batch``), a checkpoint read by rank 0 and sent to all
(``broadcast_bytes``), an error on any rank made the error of every rank (``agree``,
``on_root``), a checksum of the weights compared across ranks (``check_same``), a watch on
the other ranks of this host (``watch_peers``), and a guard process per rank (``guard``) that
outlives the rank to say which rank died when one is killed.
"""

import ctypes
import os
import signal
import socket
import sys
import threading
import time
import zlib

import numpy as np

# set by the launchers: MPICH/Intel MPI (hydra, PMI), Open MPI, PMIx (srun, prrte), MVAPICH
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")

_comm = None  # MPI.COMM_WORLD once init() joined a job
_MPI = None
_buffers = {}  # (dtype, size) -> the reusable contiguous buffer of allreduce_grads


class DistributedError(ValueError):
    """A problem of the parallel run; the message is one line meant for the user."""


def _env_int(names):
    for n in names:
        v = os.environ.get(n)
        if v is not None and v.strip().lstrip("-").isdigit():
            return int(v)
    return None


def launched():
    """True when an MPI launcher started this process (read from the environment only)."""
    return _env_int(SIZE_VARS) is not None or _env_int(RANK_VARS) is not None


def launch_rank():
    """This process's rank as the launcher's environment says (0 without a launcher); needs no MPI."""
    return _env_int(RANK_VARS) or 0


def launch_size():
    """The number of ranks as the launcher's environment says (1 without a launcher)."""
    return _env_int(SIZE_VARS) or 1


def initialized():
    return _comm is not None


def init():
    """Join the MPI job when a launcher started this process; otherwise nothing (rank 0 of 1).
    Calling it again does nothing. DistributedError when mpi4py is missing under a launcher."""
    global _comm, _MPI
    if _comm is not None or not launched():
        return
    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(
            f"bptt was started by an MPI launcher ({launch_size()} ranks) but mpi4py is not "
            f"installed; install it with: pip install 'bptt[mpi]'") from None
    _MPI, _comm = MPI, MPI.COMM_WORLD


def rank():
    """This process's rank, 0 <= rank < size()."""
    init()
    return _comm.Get_rank() if _comm is not None else 0


def size():
    """The number of ranks (1 without a launcher)."""
    init()
    return _comm.Get_size() if _comm is not None else 1


def is_root():
    return rank() == 0


def shard(batch_size, n=None, r=None):
    """The streams of a batch of ``batch_size`` this rank owns: slice(r*B/N, (r+1)*B/N).
    DistributedError when the batch cannot be split evenly over the ranks."""
    n = size() if n is None else n
    r = rank() if r is None else r
    if n > batch_size:
        raise DistributedError(
            f"{n} ranks need at least {n} streams, but the batch has {batch_size}; "
            f"use --batch {n} or more (a multiple of {n}), or fewer ranks")
    if batch_size % n:
        raise DistributedError(
            f"batch {batch_size} cannot be split evenly over {n} ranks "
            f"({batch_size} = {n} x {batch_size // n} + {batch_size % n}); use a multiple of {n} "
            f"such as {batch_size - batch_size % n or n} or {batch_size + n - batch_size % n}")
    b = batch_size // n
    return slice(r * b, (r + 1) * b)


# ----------------------------------------------------------------------------- the gradient
def _arrays(tensors):
    arrays = list(tensors.values()) if isinstance(tensors, dict) else list(tensors)
    if not arrays:
        raise ValueError("no arrays given")
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1:
        raise TypeError(f"the arrays must share one dtype, got {sorted(map(str, dtypes))}")
    return arrays


def _pack(arrays, extra):
    """The arrays (and the extra numbers) copied into one contiguous buffer, reused between calls."""
    n = sum(a.size for a in arrays) + len(extra)
    key = (arrays[0].dtype.str, n)
    buf = _buffers.get(key)
    if buf is None:
        buf = _buffers[key] = np.empty(n, arrays[0].dtype)  # (P + E,)
    o = 0
    for a in arrays:
        buf[o:o + a.size] = a.ravel()
        o += a.size
    buf[o:] = extra
    return buf


def _unpack(buf, arrays):
    o = 0
    for a in arrays:
        a[...] = buf[o:o + a.size].reshape(a.shape)
        o += a.size
    return buf[o:]


def allreduce_grads(grads, extra=(), average=True):
    """Sum ``grads`` (a module's, or a dict or list of arrays of one dtype) over all ranks with
    one Allreduce on one contiguous buffer and write the result back into the arrays, in place; divided by
    size() when ``average`` (each rank's gradient of its own mean loss -> the gradient of the
    mean loss of the whole batch). ``extra``: a few numbers reduced in the same buffer (e.g. the
    loss); returned as a float64 array. One process: nothing changes."""
    arrays = _arrays(getattr(grads, "grads", grads))
    extra = np.asarray(extra, np.float64).ravel()
    if size() == 1:
        return extra
    buf = _pack(arrays, extra)
    _comm.Allreduce(_MPI.IN_PLACE, buf, op=_MPI.SUM)
    if average:
        buf /= size()
    return _unpack(buf, arrays).astype(np.float64)


def broadcast_params(params, root=0):
    """Every rank's ``params`` (a module's, or a dict or list of arrays) become rank ``root``'s,
    in place, with one Bcast of one buffer."""
    arrays = _arrays(getattr(params, "params", params))
    if size() == 1:
        return
    buf = _pack(arrays, ())
    _comm.Bcast(buf, root=root)
    _unpack(buf, arrays)


def allreduce_sum(values):
    """values (small float64 array) summed over all ranks -> float64 array."""
    buf = np.array(values, np.float64).ravel()
    if size() > 1:
        _comm.Allreduce(_MPI.IN_PLACE, buf, op=_MPI.SUM)
    return buf


def gather_batch(a, axis=1):
    """Each rank's block of a batch along ``axis`` -> the whole batch on rank 0 (the blocks in
    rank order), None on the others. The blocks must have the same shape on every rank."""
    if size() == 1:
        return a
    block = np.ascontiguousarray(np.moveaxis(a, axis, 0))  # (b, ...)
    out = np.empty((size() * block.shape[0],) + block.shape[1:], block.dtype) if is_root() else None
    _comm.Gather(block, out, root=0)
    return np.ascontiguousarray(np.moveaxis(out, 0, axis)) if is_root() else None


class ShardedGenerator:
    """A random generator for the masks of this rank's streams that equal the columns of the
    masks one process draws for the whole batch: ``random((T, b, ...))`` draws (T, B, ...) from
    the wrapped generator (whose state thus advances as in one process, on every rank alike)
    and returns columns ``streams``; a draw of another shape (e.g. the warm-up forward that
    compiles the kernels) passes through. Only ``random`` (what dropout draws) and
    ``bit_generator`` (its state, for checkpoints) are offered, so any other use fails instead
    of drifting."""

    def __init__(self, rng, batch_size, streams):
        self.rng, self.batch_size, self.streams = rng, batch_size, streams

    @property
    def bit_generator(self):
        return self.rng.bit_generator

    def random(self, size, dtype=np.float64):
        if len(size) < 2 or size[1] != self.streams.stop - self.streams.start:
            return self.rng.random(size, dtype=dtype)
        whole = self.rng.random((size[0], self.batch_size) + tuple(size[2:]), dtype=dtype)
        return whole[:, self.streams]


# ----------------------------------------------------------------------------- bytes and errors
def broadcast_bytes(data, root=0):
    """Bytes from rank ``root`` (``data`` is ignored elsewhere) -> the same bytes on every rank."""
    if size() == 1:
        return data
    n = np.array([len(data) if rank() == root else 0], np.int64)
    _comm.Bcast(n, root=root)
    buf = np.frombuffer(data, np.uint8).copy() if rank() == root else np.empty(int(n[0]), np.uint8)
    _comm.Bcast(buf, root=root)
    return buf.tobytes()


def allgather_bytes(data):
    """Every rank's bytes -> the list of all ranks' bytes, in rank order, on every rank."""
    if size() == 1:
        return [data]
    counts = np.zeros(size(), np.int64)
    _comm.Allgather(np.array([len(data)], np.int64), counts)
    out = np.empty(int(counts.sum()), np.uint8)
    _comm.Allgatherv(np.frombuffer(data, np.uint8).copy(), [out, counts.tolist()])
    ends = np.cumsum(counts)
    return [out[e - c:e].tobytes() for c, e in zip(counts, ends)]


def everywhere(error):
    """Mark an error as raised by every rank at the same point (so that only rank 0 reports it
    and every rank leaves normally). Returns the error."""
    error.on_all_ranks = True
    return error


def _one_line(e):
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, OSError) and e.filename:
        msg = f"{e.strerror or e}: {e.filename}"
    return msg


def agree(fn):
    """Run fn() on every rank; if it raised on any rank, raise on every rank: rank 0 its own
    error if it had one, else 'rank k: <message>' of the first rank that failed. Else fn()'s
    result. One process: fn()."""
    if size() == 1:
        return fn()
    result, error = None, None
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - handed on to every rank below
        error = e
    msgs = allgather_bytes(b"" if error is None else ("\x00" + _one_line(error)).encode("utf-8"))
    failed = [(k, m[1:].decode("utf-8")) for k, m in enumerate(msgs) if m]
    if not failed:
        return result
    if error is not None and (is_root() or failed[0][0] == rank()):
        raise everywhere(error)
    k, msg = failed[0]
    raise everywhere(DistributedError(f"rank {k}: {msg}"))


def on_root(fn):
    """fn() on rank 0 only (e.g. writing a file); its result (str) or its error reaches every
    rank: rank 0 raises its own error, the others a DistributedError with the same message."""
    if size() == 1:
        return fn()
    out = b""
    if is_root():
        try:
            out = b"\x01" + str(fn()).encode("utf-8")
        except Exception as e:
            broadcast_bytes(b"\x00" + _one_line(e).encode("utf-8"))
            raise everywhere(e) from None
    out = broadcast_bytes(out)
    if out[:1] == b"\x00":
        raise everywhere(DistributedError(out[1:].decode("utf-8")))
    return out[1:].decode("utf-8")


def checksum(arrays):
    """A cheap checksum (CRC-32 of the bytes) of a dict or list of arrays."""
    c = 0
    for a in _arrays(arrays):
        c = zlib.crc32(np.ascontiguousarray(a).view(np.uint8).ravel(), c)
    return c


def check_same(arrays):
    """The ranks whose arrays differ from rank 0's (by checksum); [] when all agree."""
    if size() == 1:
        return []
    sums = np.zeros(size(), np.int64)
    _comm.Allgather(np.array([checksum(arrays)], np.int64), sums)
    return [k for k in range(1, size()) if sums[k] != sums[0]]


# ----------------------------------------------------------------------------- ranks, processes
def rank_table():
    """[(pid, host)] of every rank, in rank order (collective)."""
    me = f"{os.getpid()} {socket.gethostname()}".encode("utf-8")
    return [(int(p), h) for p, h in (m.decode("utf-8").split(" ", 1) for m in allgather_bytes(me))]


def guard_table():
    """[pid of the guard process or None] of every rank, in rank order (collective)."""
    me = str(os.getppid() if _guard["fd"] is not None else "").encode("ascii")  # the guard is our parent
    return [int(m) if m else None for m in allgather_bytes(me)]


# ----------------------------------------------------------------------------- a guard per rank
# MPICH's mpiexec ends the whole job the moment one rank dies, and reports the dead process by
# its PID only; a rank killed with SIGKILL can say nothing itself. So the process the launcher
# starts splits in two: the child runs the rank, the parent (the guard) only waits for it. When
# the child dies of a signal, the guard -- still alive, its output still read by the launcher --
# writes one line naming the rank and the signal, then exits with 128 + signal, and the launcher
# ends the job. If the guard dies, the kernel kills its child (PR_SET_PDEATHSIG), so a rank never
# outlives its guard.
_guard = {"fd": None}  # in a guarded rank: the write end of the pipe to its guard (parent)
PR_SET_PDEATHSIG = 1


def guard(report):
    """Under a launcher, on Linux: fork. The child returns at once and goes on as the rank. The
    parent never returns: it forwards SIGINT/SIGTERM/SIGHUP to the child, waits for it, and
    exits with its exit code; when the child was killed by a signal it writes
    ``report(rank, pid, host, signal_name, note)`` to stderr, ``note`` being the last text the
    child passed to ``guard_note`` ("" if none), and ends itself by the same signal. Without a launcher (or fork, or prctl):
    nothing."""
    if not launched() or _guard["fd"] is not None or not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    guard_pid = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        _die_with_parent(guard_pid)
        _guard["fd"] = write_fd
        return
    os.close(write_fd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: _send(child, signum))
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        note = _last_note(read_fd)
        line = report(launch_rank(), child, socket.gethostname(), signal.Signals(sig).name, note)
        os.write(2, (line + "\n").encode("utf-8", "replace"))
        _die_of(sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _die_of(sig):
    """End this process by the signal that ended its child, so that the launcher reports this
    process (the one it started) as killed by that signal."""
    try:
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):  # SIGKILL/SIGSTOP cannot be caught anyway
        pass
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # a signal whose default is not to terminate


def guard_note(text):
    """Pass a line of text (e.g. the run directory) to this rank's guard, for its report."""
    if _guard["fd"] is not None:
        try:
            os.write(_guard["fd"], (text.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass


def _die_with_parent(parent_pid):
    """The kernel sends this process SIGKILL when its parent dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)


def _send(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _last_note(fd):
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-1] if lines else ""


_watch = {"armed": False}
WATCH_GRACE = 2.0  # seconds between a peer's death and the report: the launcher's turn first


def watch_peers(table, message):
    """Watch the other ranks running on this host: when one dies (e.g. SIGKILL) and the job is
    still there WATCH_GRACE seconds later, the lowest surviving rank here writes
    ``message(rank, pid, host)`` to stderr and aborts the whole job, so that no rank waits
    forever in a collective whatever the launcher does. (MPICH's mpiexec itself kills every
    rank at once when one dies, and prints the dead PID.)"""
    if size() == 1 or not hasattr(os, "pidfd_open"):
        return None
    host = socket.gethostname()
    peers = {k: pid for k, (pid, h) in enumerate(table) if h == host and k != rank()}
    fds = {}
    for k, pid in peers.items():
        try:
            fds[os.pidfd_open(pid)] = k
        except OSError:
            continue
    if not fds:
        return None

    def wait():
        import select

        poll = select.poll()
        for fd in fds:
            poll.register(fd, select.POLLIN)
        k = fds[poll.poll()[0][0]]
        time.sleep(WATCH_GRACE)  # a launcher that ends the job (MPICH's does) ends it meanwhile
        if not _watch["armed"]:
            return  # the job is ending normally: the peer left after the last collective
        lower_alive = [j for j in peers if j < rank() and j != k and _alive(peers[j])]
        if lower_alive:
            return  # a lower rank on this host reports it
        os.write(2, (message(k, peers[k], host) + "\n").encode("utf-8", "replace"))
        abort(1)

    _watch["armed"] = True
    t = threading.Thread(target=wait, name="bptt-watch-peers", daemon=True)
    t.start()
    return t


class watching:
    """``with watching(message):`` the other ranks of this host are watched (``watch_peers``);
    on leaving normally, or with an error every rank raised, the watch ends on every rank
    before any rank may leave (a Barrier), so a peer ending normally is never taken for dead."""

    def __init__(self, message, table=None):
        self.message, self.table = message, table

    def __enter__(self):
        if size() > 1:
            watch_peers(self.table or rank_table(), self.message)
        return self

    def __exit__(self, exc_type, exc, tb):
        if size() > 1 and (exc is None or getattr(exc, "on_all_ranks", False)):
            _watch["armed"] = False
            _comm.Barrier()
        return False


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def leave(code):
    """End this rank at once with ``code`` after flushing its output, without MPI_Finalize
    (which would wait for the other ranks): by MPI_Abort(code), so that the launcher ends the
    job with this code (had the rank only exited, MPICH's mpiexec would kill the others, stuck
    in a collective, and exit 1 or 9 as the race went). Without MPI: exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _comm is not None:
        abort(code)
    os._exit(code)


def abort(code):
    """MPI_Abort(code) after this process's error line: its stderr goes to /dev/null first, so
    MPICH's own "Abort(code) on node ..." line does not follow the one line bptt wrote."""
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    _comm.Abort(code)


__all__ = ["init", "rank", "size", "shard", "allreduce_grads", "broadcast_params",
           "launched", "DistributedError"]
