"""Recipe search for benchmarks/classify.py, blind to test accuracy: each variant's best
out-of-fold accuracy on TRAIN (--ensemble: every series scored by the member that did not
train on it) and its seconds. The TEST files are never read.

    python benchmarks/classify_search.py --variants recipe pool-last --datasets GunPoint ArrowHead --seeds 0 1
    SEARCH_HISTORY=h.jsonl python benchmarks/classify_search.py ...   # also keep each run's curve
    python benchmarks/classify_search.py --stopping h.jsonl          # what --patience N would have kept
    python benchmarks/classify_search.py --stopping h.jsonl --epochs 150   # ... with at most 150 epochs

The search runs with the recipe's --patience (benchmarks/classify.py SETUP); for --stopping, run
the curves without it (--patience 0).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import threads_from_argv  # noqa: E402

threads_from_argv()

import numpy as np  # noqa: E402

import classify as bench  # noqa: E402  (the recipe: SETUP, patch_rule, data_dir)


# name -> changes to the recipe
VARIANTS = {
    "recipe": {},
    "layers2": {"num_layers": 2},
    "pool-last": {"pool": "last"},
    "pool-max": {"pool": "max"},
    "pool-meanmax": {"pool": "meanmax"},
    "batch32": {"batch_size": 32},
    "lr0.005": {"lr": 5e-3},
    "lr0.002": {"lr": 2e-3},
    "hidden96": {"hidden_size": 96},
    "diff": {"diff": True},
    "crop0.9": {"crop": 0.9},
    "crop0.8": {"crop": 0.8},
    "warp0.05": {"warp": 0.05},
    "warp0.1": {"warp": 0.1},
    "warp0.2": {"warp": 0.2},
    "mixed-cells": {},  # members 0, 2 with the run's cell, 1, 3 with the other (LSTM <-> GRU): mixed_cells
}


def mixed_cells(build):
    """build_model for the variant mixed-cells (a search-only patch, not a bptt option): the
    ensemble's odd members get the other cell of LSTM and GRU, with their own seeds as usual."""
    from bptt.classify import SequenceClassifier

    def patched(cfg, D, C):
        model = build(cfg, D, C)
        other = {"lstm": "gru", "gru": "lstm"}[cfg.cell]
        for m in range(1, cfg.ensemble, 2):
            old = model.members[m]
            setattr(model, f"member{m}", SequenceClassifier(
                old.rnn.input_size // old.patch, C, cell=other, hidden_size=cfg.hidden_size,
                num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout, pool=cfg.pool,
                dtype=cfg.dtype, seed=cfg.seed + 2 * m, patch=cfg.patch))
        return model
    return patched


def one(name, variant, cell, seed, epochs):
    from bptt.classify_run import ClassifyConfig, ClassifyRun, fit
    from bptt.data import read_ts

    path = os.path.join(bench.data_dir(), name, f"{name}_TRAIN.ts")
    K = bench.patch_rule([len(x) for x in read_ts(path)[0]])
    setup = {**bench.SETUP, "patch": K, **VARIANTS[variant]}
    import bptt.classify_run as cr

    build = cr.build_model
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        cr.build_model = mixed_cells(build) if variant == "mixed-cells" else build
        try:
            run = ClassifyRun(ClassifyConfig(data=path, cell=cell, seed=seed, out=out, **{"epochs": epochs, **setup}))
        finally:
            cr.build_model = build
        fit(run, progress=False)
        sec = time.perf_counter() - t0
    if os.environ.get("SEARCH_HISTORY"):  # the out-of-fold curve, for stopping rules (no test scores in it)
        with open(os.environ["SEARCH_HISTORY"], "a") as f:
            f.write(json.dumps({"variant": variant, "dataset": name, "cell": cell, "seed": seed,
                                "history": run.history}) + "\n")
    return run.best["val_accuracy"], run.best["epoch"], sec, setup["patch"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["recipe"], choices=list(VARIANTS))
    p.add_argument("--datasets", nargs="+", default=["ItalyPowerDemand", "GunPoint", "ArrowHead"])
    p.add_argument("--cells", nargs="+", default=["gru"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--patience", type=int, default=None, help="instead of the recipe's (0: all epochs)")
    p.add_argument("--stopping", metavar="HISTORY", help="print what --patience N would have kept of these curves")
    p.add_argument("--threads", default="1")
    args = p.parse_args(argv)
    if args.stopping:
        return stopping(args.stopping, cap=args.epochs)
    if args.patience is not None:
        bench.SETUP["patience"] = args.patience
    for variant in args.variants:
        for name in args.datasets:
            for cell in args.cells:
                accs = []
                for seed in args.seeds:
                    acc, ep, sec, patch = one(name, variant, cell, seed, args.epochs)
                    accs.append(acc)
                    print(f"{variant} {name} {cell} seed {seed}: out-of-fold accuracy {acc:.4f} (epoch {ep}), "
                          f"patch {patch}, {sec:.1f} s", flush=True)
                print(f"== {variant} {name} {cell}: mean out-of-fold accuracy {np.mean(accs):.4f}", flush=True)
    return 0


def stopping(path, patience=(20, 30, 40, 50), cap=None):
    """For each curve of full runs: the best epoch and score (accuracy, then loss, as fit picks
    them) that --patience N would have kept, the epoch it stops at, and the seconds to there;
    cap: as if the runs had --epochs cap (curves longer than that are cut)."""
    curves = [json.loads(line) for line in open(path)]
    for c in curves:
        c["history"] = c["history"][:cap]
    for n in (0,) + tuple(patience):
        cells = []
        for c in curves:
            best = None
            for e, row in enumerate(c["history"], 1):
                score = (row["val_accuracy"], -row["val_loss"])
                if best is None or score > best[0]:
                    best = (score, e)
                if n and e - best[1] >= n:
                    break
            cells.append(f"{c['dataset']} {c['cell']} {c['seed']}: {best[0][0]:.3f} at {best[1]}, "
                         f"stop {e} ({c['history'][e - 1]['seconds']:.0f} s)")
        print(f"patience {n or 'off'}: " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
