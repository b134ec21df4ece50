"""``bptt train --task classify``, ``bptt eval`` of a classify run, ``bptt predict``: the
command-line side of ``bptt.classify`` / ``bptt.classify_run``.

    bptt train --task classify --data TRAIN.ts --test TEST.ts --cell gru --hidden 64 --out runs/gp
    bptt train --resume runs/gp --epochs 80        continue exactly where it stopped
    bptt eval runs/gp --data TEST.ts [--json]      accuracy, recall per class, confusion matrix
    bptt predict runs/gp --data NEW.ts             one label per series, in file order

    bptt train --task classify --data TRAIN.ts --ensemble 4 --patch auto --out runs/ah
                                                   one run per candidate patch, the best kept
    bptt train --task classify --preset ucr --data TRAIN.ts --jobs 2 --out runs/ah
                                                   the benchmark's recipe (bptt.presets)
"""

import contextlib
import json
import os
import sys

from .argtypes import nonneg_float as _nonneg_float
from .argtypes import nonneg_int as _nonneg_int
from .argtypes import positive_int as _positive_int


def _patch(text):
    """--patch K or --patch auto."""
    return "auto" if text == "auto" else _positive_int(text)


# bptt train options (argparse dest) that a classify run takes -> ClassifyConfig field
OPTIONS = {"data": "data", "test": "test", "cell": "cell", "hidden_size": "hidden_size",
           "num_layers": "num_layers", "bidirectional": "bidirectional", "pool": "pool",
           "dropout": "dropout", "batch_size": "batch_size", "epochs": "epochs",
           "optimizer": "optimizer", "lr": "lr", "clip": "clip", "val_fraction": "val_fraction",
           "seed": "seed", "dtype": "dtype", "out": "out", "patch": "patch",
           "weight_decay": "weight_decay", "augment": "augment", "ensemble": "ensemble", "diff": "diff",
           "crop": "crop", "warp": "warp", "roll": "roll", "tta": "tta", "input_dropout": "input_dropout",
           "patience": "patience",
           "schedule": "schedule"}
_IGNORED = {"func", "option_names", "command", "task", "quiet", "resume", "threads", "jobs"}


def add_train_options(p):
    g = p.add_argument_group("classify (--task classify: a label per series from .ts or .csv files)")
    a = g.add_argument
    a("--test", metavar="FILE", help="classify: a labelled TEST file, scored at the end")
    a("--bidirectional", action="store_true", default=None, help="classify: both directions")
    a("--pool", choices=["last", "mean", "max", "meanmax", "attn"], help="classify: what the head reads of the "
      "top layer: the last valid state (default), the mean or the element-wise max over the valid steps, "
      "meanmax: the mean and the max side by side, or attn: the valid steps weighted by a softmax of a learned "
      "score (out_t . w, w starting at 0: the mean)")
    a("--epochs", type=_positive_int, help="classify: passes over the training part (default 60)")
    a("--patch", type=_patch, metavar="K|auto", help="classify: K consecutive values as one step of K*D features "
      "(a long series is K times fewer steps; default 1); auto: one run for each K = ceil(median TRAIN length / N), "
      "N = 32, 8, 4, 2 (about N steps per series; classify_run.AUTO_STEPS), in RUN/patch-K, and two rotated ones "
      "(unless --roll is given): about 32 and about 96 steps (N = 32 and 3 x 32), one direction, with --roll 0.5, "
      "--tta 8, --diff and --pool meanmax, in RUN/patch-K-roll0.5-diff-uni-meanmax; one after the other; the one with the highest validation (or "
      "out-of-fold) accuracy becomes RUN/best (ties: the earlier), and RUN predicts (eval, predict, export) by "
      "the mean probability of every candidate whose accuracy is within one validation series of the best")
    a("--diff", action="store_true", default=None, help="classify: the first differences x[t] - x[t-1] as D "
      "more input features, standardised with their own TRAIN statistics; kept in the checkpoint and "
      "applied by eval, predict and the ONNX export (default: off)")
    a("--weight-decay", type=_nonneg_float, metavar="WD", help="classify: the optimizer's weight decay, as "
      "torch's: with --optimizer adam an L2 term (WD*p added to the gradient, which Adam then rescales), with "
      "--optimizer adamw decoupled (p *= 1 - lr*WD each step, apart from the gradient) (default 0: none, "
      "also for adamw)")
    a("--augment", type=_nonneg_float, metavar="A", help="classify: train on random variants of the "
      "series, new every epoch: time stretched by 1+-A and shifted by up to A of the length, values "
      "scaled by 1+N(0,A) plus N(0,A/4) noise (default 0: off)")
    a("--roll", type=_nonneg_float, metavar="F", help="classify: train on the series rotated in time, new every "
      "epoch: each by r steps, r uniform in -F*T..F*T, the steps pushed off one end coming back at the other "
      "(another starting point of a closed outline; 0.5 reaches every rotation), F <= 1; applied before "
      "--crop, --warp and --augment (default 0: off)")
    a("--tta", type=_nonneg_int, metavar="R", help="classify, with --roll 0.5: eval, predict and the ONNX export "
      "predict by the mean probability over R rotations of each series, by round(j*T/R) steps, j = 0..R-1 "
      "(test-time augmentation; the validation that picks the best epoch reads the series as they are; "
      "default 0: off)")
    a("--crop", type=_nonneg_float, metavar="F", help="classify: train on random windows of the series, new "
      "every epoch: round(F*T) consecutive steps of each, 0 < F < 1 (window slicing; eval and predict read "
      "whole series; default 0: off)")
    a("--warp", type=_nonneg_float, metavar="W", help="classify: train on the series read at smoothly warped "
      "times, new every epoch: the speed of time exp(N(0,W)) at 6 points, linear between, both ends kept, "
      "W <= 1 (default 0: off)")
    a("--input-dropout", type=_nonneg_float, metavar="P", help="classify: in training, each input value "
      "(standardised, before --patch) is zeroed with probability P < 1 and the others scaled by 1/(1-P), "
      "new every batch; eval and predict read the series as they are (default 0: off)")

    a("--patience", type=_positive_int, metavar="N", help="classify: stop when N epochs in a row brought "
      "no better validation score (accuracy, then loss; the one that picks RUN/best); a resumed run "
      "keeps the rule (default: train all --epochs)")
    a("--ensemble", type=_positive_int, metavar="M", help="classify: M models trained side by side, "
      "TRAIN split into M folds and model m trained on all but fold m; every epoch is scored on the "
      "out-of-fold predictions (all of TRAIN; --val-fraction is not used), the mean of the models' "
      "probabilities predicts (default 1: one model)")

    a("--threads", type=_positive_int, metavar="N", help="classify: threads of the compiled loops for this "
      "run (default: all cores); small models on a busy machine train fastest with 1. Results do not "
      "depend on it; it may differ when resuming")
    a("--jobs", type=_positive_int, metavar="N", help="classify with --patch auto: train N candidates at a time, "
      "each in its own process with one thread, under one progress bar (default 1: one after the other in this "
      "process). Results do not depend on it; it may differ when resuming")


CLASSIFY_ONLY = ("test", "bidirectional", "pool", "epochs", "patch", "diff", "weight_decay", "augment", "crop",
                 "warp", "roll", "tta", "input_dropout", "ensemble",
                 "patience",
                 "threads", "jobs")


def wants_classify(args):
    if getattr(args, "task", None) == "classify":
        return True
    extra = [k for k in CLASSIFY_ONLY if getattr(args, k, None) not in (None, False)]
    if extra and not getattr(args, "resume", None):
        raise ValueError(f"{', '.join(_flag(k) for k in extra)} needs --task classify")
    if getattr(args, "resume", None) and getattr(args, "task", None) is None:
        from .classify_run import is_classify_run

        return is_classify_run(args.resume)
    return False


def _set_threads(n):
    """The compiled loops' threads for this process (at most the cores numba started with)
    -> the number before."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return before


@contextlib.contextmanager
def _threads(n):
    """--threads N for the duration of the block (nothing when N is None)."""
    before = _set_threads(n) if n else None
    try:
        yield
    finally:
        if before is not None:
            _set_threads(before)


def _flag(name):
    return "--" + {"hidden_size": "hidden", "batch_size": "batch", "num_layers": "layers"}.get(
        name, name).replace("_", "-")


def _with_preset(given):
    """--preset NAME (``presets.CLASSIFY_PRESETS``): its settings, overridden by the options given."""
    from .presets import describe, preset

    name = given.pop("preset")
    base = preset(name, classify=True)
    print(f"preset {name}: {describe(name)}", file=sys.stderr)
    return {**base, **given}


def run_train(args):
    from .classify_run import (ClassifyConfig, describe, fit, is_select_run, new_run, new_select, read_select,
                               resume_run)
    from .memory import keep_freed_memory

    keep_freed_memory()  # for every training below, one run or --patch auto's (its --jobs workers: their own)
    given = {k: v for k, v in vars(args).items() if k not in _IGNORED and v is not None and v is not False}
    if "preset" in given:
        if args.resume:
            raise ValueError("--preset cannot change when resuming; the run keeps its own settings (only --epochs)")
        given = _with_preset(given)
    wrong = sorted(k for k in given if k not in OPTIONS)
    if wrong:
        raise ValueError(f"{', '.join(_flag(k) for k in wrong)} does not apply to --task classify")
    if args.jobs and given.get("patch") != "auto" and not (args.resume and is_select_run(args.resume)):
        raise ValueError("--jobs trains the candidates of --patch auto side by side; it needs --patch auto")
    if args.resume:
        fixed = sorted(k for k in given if k != "epochs")
        if fixed:
            raise ValueError(f"{', '.join(_flag(k) for k in fixed)} cannot change when resuming; "
                             f"the run keeps its own settings (only --epochs)")
        if is_select_run(args.resume):
            sel = read_select(args.resume)
            print(f"resuming the patch selection {args.resume} ({'; '.join(describe(c) for c in sel['candidates'])})",
                  file=sys.stderr)
            return _select(args, args.resume, given.get("epochs"))
        run = resume_run(args.resume, given.get("epochs"))
        print(f"resuming {run.cfg.out} at epoch {run.epoch} of {run.cfg.epochs}", file=sys.stderr)
    elif given.get("patch") == "auto":
        sel = new_select(ClassifyConfig(**{OPTIONS[k]: v for k, v in given.items() if k != "patch"}))
        c = sel["config"]
        cands = sel["candidates"]
        rolled = [x for x in cands if "roll" in x]
        print(f"data: {c['data']}; patch auto: one run per patch K = "
              f"{', '.join(str(x['patch']) for x in cands if 'roll' not in x)} (about "
              f"{', '.join(map(str, sel['steps']))} steps per series), each in {c['out']}/patch-K"
              + "".join(f"; patch {x['patch']} with --roll {x['roll']:g} in {c['out']}/{x['dir']}" for x in rolled),
              file=sys.stderr)
        return _select(args, c["out"], None)
    else:
        run = new_run(ClassifyConfig(**{OPTIONS[k]: v for k, v in given.items()}))
        m, c = run.model, run.cfg
        lens = [len(s) for s in run.train_x + run.val_x]
        split = (f"{c.ensemble} folds, each model trained on the others" if c.ensemble > 1 else
                 f"{len(run.train_y)} train, {len(run.val_y)} validation")
        print(f"data: {c.data}: {len(lens)} series ({split}), "
              f"lengths {min(lens)}-{max(lens)}, {run.D} dimensions, {len(run.classes)} classes\n"
              f"model: {str(c.ensemble) + ' x ' if c.ensemble > 1 else ''}"
              f"{c.cell.upper()} {c.num_layers}x{c.hidden_size}{' bidirectional' if c.bidirectional else ''}, "
              f"pool {c.pool}, patch {c.patch}{', diff' if c.diff else ''}"
              f"{', lr schedule ' + c.schedule if c.schedule != 'constant' else ''}, {m.num_parameters():,} parameters; run directory {c.out}", file=sys.stderr)
    with _threads(args.threads):
        fit(run, progress=not args.quiet)
    b = run.best
    print(f"finished {run.epoch} epochs in {run.elapsed:.1f} s; best epoch {b['epoch']}: validation accuracy "
          f"{b['val_accuracy']:.4f}, loss {b['val_loss']:.4f}; best checkpoint {os.path.join(run.cfg.out, 'best')}")
    _test_and_hint(run.cfg.out, run.cfg.test)
    return 0


def _select(args, out, epochs):
    """--patch auto: train or resume every candidate of the selection in `out`, then report."""
    from .classify_run import AUTO_MIX, describe, fit_select, trained_line

    with _threads(args.threads):
        sel = fit_select(out, epochs, progress=not args.quiet, jobs=args.jobs or 1)
    mixed = sel.get("mixed") or [sel["chosen"]]
    for i, c in enumerate(sel["candidates"]):
        print(f"{describe(c)}: {trained_line(c)}, loss {c['best']['val_loss']:.4f}"
              + ("  <- chosen" if i in mixed else ""))
    print(f"best checkpoint {os.path.join(out, 'best')} ({describe(sel['candidates'][sel['chosen']])})")
    if len(mixed) > 1:
        print(f"{out} predicts by the mean probability of the {len(mixed)} chosen candidates (validation scores "
              f"within {AUTO_MIX} series of the best): {'; '.join(describe(sel['candidates'][i]) for i in mixed)}")
    _test_and_hint(out, sel["config"]["test"])
    return 0


def _test_and_hint(out, test):
    """The run's best model on its TEST file (if it has one), and how to evaluate it."""
    if test:
        from .classify_run import evaluate_file

        s, _, _ = evaluate_file(test, out)
        print(f"test {test}: accuracy {s['accuracy']:.4f} ({int(s['confusion'].trace())}/{s['n']}), "
              f"loss {s['loss']:.4f}")
    print(f"evaluate with: bptt eval {out} --data FILE")


# ----------------------------------------------------------------------------- eval
def cmd_eval(args):
    from .classify_run import evaluate_file

    s, classes, meta = evaluate_file(args.data, args.run)
    run_dir = os.path.dirname(meta["_path"])
    png = os.path.join(run_dir, f"confusion-{os.path.splitext(os.path.basename(args.data))[0]}.png")
    _confusion_png(s["confusion"], classes, png, f"{os.path.basename(args.data)}: accuracy {s['accuracy']:.3f}")
    if args.json:
        print(json.dumps({"accuracy": s["accuracy"], "n": s["n"], "loss": s["loss"], "classes": classes,
                          "recall": dict(zip(classes, s["recall"])), "confusion": s["confusion"].tolist(),
                          "checkpoint": meta["_path"], "confusion_png": png,
                          **({"mixed": meta["mixed"]} if "mixed" in meta else {})}))
        return 0
    conf = s["confusion"]
    correct = int(conf.trace())
    w = max(5, max(len(c) for c in classes) + 1, len(str(conf.max())) + 1)
    if "mixed" in meta:
        source = f"run {run_dir}: the mean probability of {len(meta['mixed'])} candidates: {'; '.join(meta['mixed'])}"
    else:
        tta = meta["config"].get("tta", 0)
        source = f"checkpoint {meta['_path']}" + (f", the mean over {tta} rotations" if tta > 1 else "")
    lines = [f"{args.data}: {s['n']} series, accuracy {s['accuracy']:.4f} ({correct}/{s['n']}), "
             f"loss {s['loss']:.4f} ({source})", "recall per class:"]
    for k, c in enumerate(classes):
        lines.append(f"  {c:<{w}} {s['recall'][k]:.3f} ({conf[k, k]}/{conf[k].sum()})")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append("  " + " " * w + "".join(f"{c:>{w}}" for c in classes))
    for k, c in enumerate(classes):
        lines.append(f"  {c:<{w}}" + "".join(f"{v:>{w}}" for v in conf[k]))
    lines.append(f"image: {png}")
    print("\n".join(lines))
    return 0


def _confusion_png(conf, classes, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    fig, ax = plt.subplots(figsize=(2 + 0.5 * n, 1.6 + 0.5 * n))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(n), classes)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center",
                    color="white" if conf[i, j] > conf.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- predict
def add_predict(sub):
    p = sub.add_parser("predict", help="a label per series from a trained classify run",
                       description="Print the predicted label of every series of a .ts or .csv file, "
                       "one per line in file order, with the run's best checkpoint.")
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--data", metavar="FILE", required=True, help=".ts or .csv file of series (labels, if any, are not used)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args):
    from .classify_run import predict_file

    sys.stdout.write("".join(f"{label}\n" for label in predict_file(args.data, args.run)))
    return 0
