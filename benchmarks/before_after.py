"""bptt against itself at another git commit, same process, same machine state: the working
tree's ``bptt`` and ``bptt`` at GITREF (``cells.load_baseline``) run one training step of one
layer each (``cells.make_pair``), in alternating blocks of consecutive steps (``cells.time_blocks``,
the order turned each round), at each thread count asked for. Prints per row the median step
time of each and new/old, the ratio of the medians, with the range of the ratios round by round.
For kernel changes on a shared machine, where times against torch drift with the load but a
ratio of two interleaved runs of bptt holds. With one thread the whole step runs in the calling
thread (numba's one-block path, OpenBLAS on one thread), so ``--clock thread`` can time it by
that thread's CPU time, which leaves out the time the step waited for a core others held.

    python benchmarks/before_after.py --baseline main --cells lstm --rows 2,3,4,5 --threads 1,2
    python benchmarks/before_after.py --threads 1 --clock thread
    python benchmarks/before_after.py --threads 1 --clock thread --shapes 64,16,128,192

--shapes times (T, B, D, H) of one's own instead of grid rows: with one thread and B the rows one
thread gets at two (64,16,128,192 for the grid's 64,32,128,192), the work of one of two threads,
timed by its CPU time, when other processes make two-thread wall times useless.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # cells.py, next to this file

import cells  # noqa: E402


def time_blocks(fns, blocks, steps, clock):
    """As ``cells.time_blocks`` (one warm-up step each, then rounds of alternating blocks, the
    order turned each round, each block one lead-in step and ``steps`` timed ones, the garbage
    collector off), by ``clock`` -> {name: [seconds per step of each block]}."""
    import gc

    for f in fns.values():
        f()
    per = {name: [] for name in fns}
    names = list(fns)
    gc.collect()
    gc.disable()
    try:
        for r in range(blocks):
            for name in names[r % len(names):] + names[: r % len(names)]:
                fns[name]()
                t = clock()
                for _ in range(steps):
                    fns[name]()
                per[name].append((clock() - t) / steps)
    finally:
        gc.enable()
    return per


def main(argv=None):
    p = argparse.ArgumentParser(prog="benchmarks/before_after.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default="main", metavar="GITREF", help="the old bptt (default main)")
    p.add_argument("--cells", default="lstm", help="comma-separated: rnn,lstm,gru")
    p.add_argument("--rows", default="2,3,4,5", help="rows of cells.GRID, numbered from 0")
    p.add_argument("--shapes", default=None, metavar="T,B,D,H[;T,B,D,H...]",
                   help="shapes to time instead of --rows, separated by ';'")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--blocks", type=int, default=9, help="alternating blocks per library and row")
    p.add_argument("--block-seconds", type=float, default=0.3, help="target length of a block")
    p.add_argument("--input-grad", action="store_true", help="the steps return dx too (a layer above another), "
                   "instead of a layer on data")
    p.add_argument("--clock", choices=("wall", "thread"), default="wall",
                   help="wall time, or (one thread only) the calling thread's CPU time")
    args = p.parse_args(argv)
    threads = [int(v) for v in args.threads.split(",")]
    if args.clock == "thread" and threads != [1]:
        p.error("--clock thread times one thread: use it with --threads 1")
    import time

    import numba
    import numpy as np

    import bptt

    old, sha = cells.load_baseline(args.baseline)
    print(f"new: {os.path.dirname(bptt.__file__)} (working tree); old: {args.baseline} = {sha}")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    for n in threads:
        numba.set_num_threads(n)
        for cell in args.cells.split(","):
            for T, B, D, H in _shapes(args):
                new_step = cells.make_pair(cell, T, B, D, H, input_grad=args.input_grad)[0]
                old_step = cells.make_pair(cell, T, B, D, H, lib=old, input_grad=args.input_grad)[0]
                fns = {"new": new_step, "old": old_step}
                for f in fns.values():  # first calls (compiling or loading kernels) not in the sizing
                    f()
                steps = cells.steps_per_block(fns, args.block_seconds)
                per = time_blocks(fns, args.blocks, steps, clock)
                r = np.asarray(per["new"]) / np.asarray(per["old"])
                t_new, t_old = np.median(per["new"]) * 1e3, np.median(per["old"]) * 1e3
                print(f"threads {n} {cell} T={T} B={B} D={D} H={H}: new {t_new:.2f} ms, old {t_old:.2f} ms, "
                      f"new/old {t_new / t_old:.3f} (rounds {r.min():.3f}-{r.max():.3f}, "
                      f"{args.blocks} x {steps} steps)", flush=True)


def _shapes(args):
    """The (T, B, D, H) to time: --shapes, else the --rows of cells.GRID."""
    if args.shapes:
        return [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    return [cells.GRID[int(i)] for i in args.rows.split(",")]


if __name__ == "__main__":
    main()
