"""memory="sqrt" (checkpointed BPTT, ``bptt.memory``) gives the gradients of memory="full" for
every cell x layers x directions x lengths, on both backends, in far less memory; a step that
would not fit is refused before it allocates, with one line that says so (library and CLI)."""

import itertools
import json
import os
import tracemalloc

import numpy as np
import pytest

from bptt import cells, memory
from bptt.recurrent import GRU, LSTM, RNN
from training_helpers import REPO, TINY, cli, latest, make_text, write_text

T, B, D, H = 11, 3, 4, 5  # T = 11: segments of 4, 4, 3 steps
LENGTHS = np.array([11, 4, 7])  # ends inside a segment, at a segment's end, in the last one


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    before = cells.get_backend()
    cells.set_backend(request.param)
    yield request.param
    cells.set_backend(before)


def _run(cls, mode, x, state, dstate, dout, lengths, **kw):
    layer = cls(D, H, memory=mode, dtype="float64", seed=1, **kw)
    out, s_T = layer(x, state, lengths)
    dx, ds0 = layer.backward(dout, dstate)
    flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
    return [out, dx, *flat(s_T), *flat(ds0), *(layer.grads[k] for k in sorted(layer.grads))]


def _states(cls, L, K, R, rng):
    h = rng.standard_normal((L * K, B, R))
    return (h, rng.standard_normal((L * K, B, H))) if cls is LSTM else h


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU], ids=["rnn", "lstm", "gru"])
def test_sqrt_equals_full(cls, backend):
    rng = np.random.default_rng(0)
    for L, bidir, lengths, batch_first in itertools.product([1, 2], [False, True], [None, LENGTHS], [False, True]):
        kw = dict(num_layers=L, bidirectional=bidir, batch_first=batch_first, dropout=0.3 if L == 2 else 0.0)
        if cls is LSTM and L == 2 and bidir:
            kw["proj_size"] = 3
        K, R = 1 + bidir, kw.get("proj_size") or H
        x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
        state, dstate = _states(cls, L, K, R, rng), _states(cls, L, K, R, rng)
        dout = rng.standard_normal((B, T, K * R) if batch_first else (T, B, K * R))
        full = _run(cls, "full", x, state, dstate, dout, lengths, **kw)
        sqrt = _run(cls, "sqrt", x, state, dstate, dout, lengths, **kw)  # the same seed: the same dropout masks
        for a, b in zip(full, sqrt):
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= 1e-12 * max(np.abs(a).max(), 1e-30), (L, bidir, lengths, batch_first)


@pytest.mark.parametrize("cls", [LSTM, GRU], ids=["lstm", "gru"])
def test_sqrt_float32_runs_the_same_kernels(cls, backend):
    """float32: the recomputed segments are the same kernels on the same numbers, so with the
    compiled loops (bptt's own kernels, each row's sums in one fixed order) the outputs, final
    states and dx are bit for bit those of full; the weight gradients are sums over the segments
    instead of one product over T, equal to rounding. The NumPy loops' input projection is
    OpenBLAS's sgemm over all T*B rows in full and n*B in a segment, and OpenBLAS picks its
    kernels by the matrix's size (on AVX2 CPUs the last rows of a block of 32 are summed in
    another order): there they agree to rounding."""
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((50, 4, 6), np.float32), rng.standard_normal((50, 4, 8), np.float32)
    res = []
    for mode in memory.MODES:
        layer = cls(6, 8, num_layers=2, memory=mode, seed=0)
        out, s_T = layer(x)
        dx, _ = layer.backward(dout)
        res.append((out, s_T[0] if isinstance(s_T, tuple) else s_T, dx, layer.grads))
    (o1, s1, d1, g1), (o2, s2, d2, g2) = res
    if backend == "numba":
        assert np.array_equal(o1, o2) and np.array_equal(s1, s2) and np.array_equal(d1, d2)
    for a, b in ((o1, o2), (s1, s2), (d1, d2)):
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    for k in g1:
        assert np.abs(g1[k] - g2[k]).max() <= 1e-5 * np.abs(g1[k]).max(), k


def test_segments():
    assert [memory.segment_length(t) for t in (1, 2, 4, 5, 100, 101, 10_000)] == [1, 2, 2, 3, 10, 11, 100]
    assert memory.segment_bounds(11) == [(0, 4), (4, 8), (8, 11)]
    assert memory.segment_lengths(LENGTHS, 4, 8).tolist() == [4, 0, 3]
    assert memory.segment_lengths(np.array([9, 8]), 4, 8) is None  # every row runs the whole segment


def _peak(layer, x, output=True):
    """numpy's peak allocation over a training step (the loss on the output, or with
    ``output=False`` on the final h alone)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out, s_T = layer(x, return_output=output)
    h_n = s_T[0] if isinstance(s_T, tuple) else s_T
    if output:
        layer.backward(np.ones_like(out))
    else:
        layer.backward(None, (np.ones_like(h_n), None) if isinstance(s_T, tuple) else np.ones_like(h_n))
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("cls", [LSTM, GRU], ids=["lstm", "gru"])
def test_sqrt_memory_and_estimate(cls):
    """sqrt's measured peak (numpy's allocations) is a fraction of full's, and the estimate a
    step is checked against is within 30 % of what the step takes, in both modes."""
    x = np.random.default_rng(0).standard_normal((900, 4, 2))
    peaks = {}
    for mode in memory.MODES:
        layer = cls(2, 32, memory=mode, dtype="float64", seed=0)
        _peak(layer, x[:5])  # compile / warm up
        peaks[mode] = _peak(layer, x)
        est = memory.step_bytes(layer, 900, 4)
        assert 0.7 * peaks[mode] <= est <= 1.3 * peaks[mode], (mode, est, peaks[mode])
    assert peaks["sqrt"] < peaks["full"] / 3


@pytest.mark.parametrize("cls", [LSTM, GRU], ids=["lstm", "gru"])
def test_sqrt_final_state_alone_holds_no_sequence(cls):
    """A loss on h_n alone (``return_output=False``): sqrt's step allocates no (T, B, H) array at
    all - its peak is below half of one - and a small fraction of full's; the estimate within
    30 % in both modes."""
    T_, B_, H_ = 2500, 4, 32
    x = np.random.default_rng(0).standard_normal((T_, B_, 2))
    peaks = {}
    for mode in memory.MODES:
        layer = cls(2, H_, memory=mode, dtype="float64", seed=0)
        _peak(layer, x[:5], output=False)  # compile / warm up
        peaks[mode] = _peak(layer, x, output=False)
        est = memory.step_bytes(layer, T_, B_, output=False)
        assert 0.7 * peaks[mode] <= est <= 1.3 * peaks[mode], (mode, est, peaks[mode])
    assert peaks["sqrt"] < T_ * B_ * H_ * 8 / 2, peaks
    assert peaks["sqrt"] < peaks["full"] / 10, peaks


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU], ids=["rnn", "lstm", "gru"])
def test_final_state_alone(cls, backend):
    """``return_output=False`` returns None for the output and the same final state; backward
    with dout=None gives what a zero dout gives, bit for bit - every cell x layers x directions x
    lengths x memory mode; a dout array after it is refused."""
    rng = np.random.default_rng(2)
    for mode, L, bidir, lengths in itertools.product(memory.MODES, [1, 2], [False, True], [None, LENGTHS]):
        K = 1 + bidir
        x = rng.standard_normal((T, B, D))
        state, dstate = _states(cls, L, K, H, rng), _states(cls, L, K, H, rng)
        res = []
        for output in (True, False):
            layer = cls(D, H, num_layers=L, bidirectional=bidir, memory=mode, dtype="float64", seed=1)
            out, s_T = layer(x, state, lengths, return_output=output)
            assert (out is None) == (not output)
            dx, ds0 = layer.backward(np.zeros_like(out) if output else None, dstate)
            flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
            res.append([dx, *flat(s_T), *flat(ds0), *(layer.grads[k] for k in sorted(layer.grads))])
        for a, b in zip(*res):
            assert np.array_equal(a, b), (mode, L, bidir, lengths)
    layer = cls(D, H, memory="sqrt", dtype="float64")
    layer(x, return_output=False)
    with pytest.raises(ValueError, match="forward ran with return_output=False: backward takes dout=None"):
        layer.backward(np.zeros((T, B, H)))


# ----------------------------------------------------------------------------- out of memory
def test_refuses_a_step_that_does_not_fit(monkeypatch):
    x = np.zeros((2000, 4, 8), np.float32)
    layer = LSTM(8, 32)
    full_need, sqrt_need = memory.step_bytes(layer, 2000, 4), memory.step_bytes(layer, 2000, 4, "sqrt")
    monkeypatch.setenv("BPTT_MEMORY_LIMIT", str((full_need + sqrt_need) // 2))
    with pytest.raises(memory.MemoryLimitError) as e:
        layer(x)
    msg = str(e.value)
    assert "\n" not in msg
    assert "LSTM: a training step over T=2000 steps, batch 4 needs about" in msg
    assert "available (BPTT_MEMORY_LIMIT)" in msg and "memory='sqrt' (bptt train --memory sqrt)" in msg
    assert not layer._tape  # nothing recorded
    layer.memory = "sqrt"
    out, _ = layer(x)  # fits in the same limit
    layer.backward(np.zeros_like(out))
    monkeypatch.setenv("BPTT_MEMORY_LIMIT", "1K")
    with pytest.raises(memory.MemoryLimitError, match="use shorter sequences or a smaller batch"):
        layer(x)
    monkeypatch.setenv("BPTT_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="BPTT_MEMORY_LIMIT must be a number of bytes"):
        layer(x)


def test_free_pooled_buffers_are_given_back_before_refusing(monkeypatch):
    """The compiled loops keep free buffers for the next step; the machine's reading counts them
    as used, so before refusing a step check_fits gives them back and reads again."""
    from bptt.cells import _numba_loops as loops

    monkeypatch.delenv("BPTT_MEMORY_LIMIT", raising=False)
    monkeypatch.setattr(memory, "_recent", [-np.inf, 0])
    cells.release_buffers()
    loops._empty64((1 << 20,), np.float32)  # 4 MiB, free again at once: stays in the pool
    assert len(loops._pool()) == 1
    layer = LSTM(8, 32)
    need = memory.step_bytes(layer, 100, 4)
    readings = []

    def available():  # too little while the pool holds its buffer, enough once it is given back
        readings.append(len(loops._pool()))
        return (need - 1 if loops._pool() else need + 1), "MemAvailable"

    monkeypatch.setattr(memory, "available_bytes", available)
    memory.check_fits(layer, 100, 4)  # no error
    assert readings == [1, 0] and loops._pool() == []
    with pytest.raises(memory.MemoryLimitError):  # nothing more to give back: refused
        memory.check_fits(layer, 100, 5 * 100)


def test_available_memory_is_read(monkeypatch):
    monkeypatch.delenv("BPTT_MEMORY_LIMIT", raising=False)
    have, where = memory.available_bytes()
    assert have > 0 and where in ("MemAvailable", "the cgroup limit")
    monkeypatch.setenv("BPTT_MEMORY_LIMIT", "1.5G")
    assert memory.available_bytes() == (int(1.5 * 2**30), "BPTT_MEMORY_LIMIT")


@pytest.mark.parametrize("backend", ["numpy"], indirect=True)  # (the loops' speed is not the point)
def test_cli_memory_limit_and_sqrt(tmp_path, capsys, monkeypatch, backend):
    """bptt train: one line naming --memory sqrt and exit 1, the run's checkpoint untouched;
    the run goes on in sqrt mode in the same limit (memory may change on resume)."""
    data = write_text(tmp_path / "text.txt", make_text(2000))
    run = str(tmp_path / "run")
    opts = [o if o != "8" or TINY[i - 1] != "--seq-len" else "400" for i, o in enumerate(TINY)]  # seq-len 400
    assert cli(capsys, "train", "--data", data, *opts, "--eval-every", "1000", "--out", run,
               "--steps", "2", "--memory", "sqrt")[0] == 0
    with open(os.path.join(latest(run), "checkpoint.json")) as f:
        meta = f.read()
    assert json.loads(meta)["train"]["memory"] == "sqrt" and json.loads(meta)["train"]["seq_len"] == 400
    layer = LSTM(8, 16, num_layers=2)  # the model's recurrent part (TINY)
    full, sqrt = (memory.step_bytes(layer, 400, 4, m) for m in ("full", "sqrt"))
    monkeypatch.setenv("BPTT_MEMORY_LIMIT", str((full + sqrt) // 2))
    rc, out, err = cli(capsys, "train", "--resume", run, "--steps", "4", "--memory", "full", "--quiet")
    assert rc == 1 and out == "" and "Traceback" not in err
    said, error = err.strip().splitlines()  # what it resumes, then the error
    assert said.startswith("resuming ")
    assert error.startswith("bptt: error: LSTM: a training step over T=400 steps, batch 4 needs about")
    assert "(BPTT_MEMORY_LIMIT)" in error and "(bptt train --memory sqrt)" in error
    assert latest(run).endswith("ckpt-00000002")
    with open(os.path.join(latest(run), "checkpoint.json")) as f:
        assert f.read() == meta  # nothing saved changed
    rc, out, err = cli(capsys, "train", "--resume", run, "--steps", "4", "--quiet")  # its own memory: sqrt
    assert rc == 0, err
    assert latest(run).endswith("ckpt-00000004")


def test_recent_reading_of_available_memory_is_reused(monkeypatch):
    """A small step reuses a reading less than RECENT_SECONDS old; a step needing more than
    1/RECENT_SHARE of it, or an old reading, reads the machine again (and still refuses)."""
    monkeypatch.delenv("BPTT_MEMORY_LIMIT", raising=False)
    reads = []
    have = [1 << 30]

    def fake_available():
        reads.append(1)
        return have[0], "MemAvailable"

    monkeypatch.setattr(memory, "available_bytes", fake_available)
    monkeypatch.setattr(memory, "_recent", [-float("inf"), 0])
    layer = LSTM(3, 4, seed=0)
    memory.check_fits(layer, 5, 2)
    memory.check_fits(layer, 5, 2)
    assert len(reads) == 1
    big_T = have[0] // memory.step_bytes(layer, 1, 2)  # about the whole reading
    have[0] = 1 << 20  # the machine's memory is gone: the large step must look again
    with pytest.raises(memory.MemoryLimitError):
        memory.check_fits(layer, big_T, 2)
    assert len(reads) == 2
    memory._recent[0] -= 2 * memory.RECENT_SECONDS  # an old reading: read again
    memory.check_fits(layer, 5, 2)
    assert len(reads) == 3


def test_rnn_backward_reuses_the_forward_input_projection():
    """The RNN's backward takes its da (T, B, H) from the pool, where the forward's input
    projection (same shape, freed when the forward returns) waits: a step's peak is hs, da and dx
    (the cells benchmark's peak-memory column, below PyTorch's three (T, B, H) arrays), not hs,
    the projection, da and dx. (_peak's dout, np.ones_like(out), is a (T, B, H) array too.)"""
    T, B, D, H = 256, 16, 8, 64  # (T, B, H) float32 = 1 MiB: pooled
    layer = RNN(D, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, D)).astype(np.float32)
    _peak(layer, x)  # compile / warm up
    cells.release_buffers()
    tbh = T * B * H * 4
    assert _peak(layer, x) < 3 * tbh + T * B * D * 4 + tbh // 4  # hs, dout, da, dx (+ small)


def test_long_benchmark_alternates_and_pools_rounds():
    """benchmarks/long.py runs each case in rounds of fresh processes, full/sqrt/torch and then the
    reverse order, and reports the median of all their steps (a failed round is the result)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_long", os.path.join(REPO, "benchmarks", "long.py"))
    long = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(long)
    assert [long.order(r) for r in range(3)] == [long.MODES, long.MODES[::-1], long.MODES]
    runs = [{"peak_bytes": 10, "seconds": 2.0, "times": [5.0, 2.0, 1.0]},
            {"peak_bytes": 12, "seconds": 3.0, "times": [3.0, 4.0, 9.0]},
            {"peak_bytes": 11, "seconds": 3.0, "times": [3.0]}]
    merged = long.merge(runs)
    assert merged["seconds"] == 3.0 and merged["peak_bytes"] == 11 and merged["rounds"] == 3
    assert long.merge(runs[:2])["seconds"] == 3.5  # the median of 1, 2, 3, 4, 5, 9
    failed = {"error": "took longer than 900 s"}
    assert long.merge([runs[0], failed]) == failed


_REALLOC = """
import resource, sys
import numpy as np
from bptt.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
sizes = np.random.default_rng(0).integers(1 << 16, 1 << 21, 400)  # arrays of 256 KiB to 8 MiB
before, kept = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
for n in sizes:  # as training steps do: new arrays while the last few are still held
    kept = kept[-3:] + [np.ones(n, np.float32)]
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keep_freed_memory_spares_the_page_faults_of_arrays_made_again_and_again():
    """keep_freed_memory (the classify command and its --jobs workers call it): arrays allocated
    and freed as a training loop does reuse the freed memory instead of faulting in fresh pages;
    in a process of its own, since the setting is process-wide."""
    import subprocess
    import sys

    def faults(how):
        out = subprocess.run([sys.executable, "-c", _REALLOC, how], capture_output=True, text=True, check=True)
        return int(out.stdout)

    default, kept = faults("default"), faults("keep")
    assert kept * 4 < default, (kept, default)


def test_jobs_workers_keep_freed_memory(monkeypatch):
    """A --jobs worker's start (its threads and signals left as they are in this process)."""
    import signal

    import numba

    from bptt import classify_run

    called = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: called.append(1) or True)
    monkeypatch.setattr(classify_run, "_EVENTS", None)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(numba, "set_num_threads", lambda n: None)
    classify_run._worker_init(None)
    assert called == [1]
