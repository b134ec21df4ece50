"""The ``bptt`` command: a thin shell over the library.

    bptt train   [options]            train a character language model (default: on Python's own source)
    bptt sample  RUN [options]        sample text from a trained run
    bptt eval    RUN --data FILE      loss, bits per character and perplexity on a text
    bptt export  RUN --onnx FILE      the trained model as ONNX, for runtimes without bptt or PyTorch
    bptt train --task NAME [options]  a classic BPTT task (binary-add, echo, next-prime, copy, adding, series)
    bptt forecast RUN --steps K       the next K values from a trained series run
    bptt train --task classify --data TRAIN --test TEST   a label per series (.ts / .csv files)
    bptt predict RUN --data FILE      the label of each series from a classify run
    bptt gradflow | plot | gates      pictures: gradient norm against the lag, training curves, gates
    bptt gradcheck [options]          finite-difference check of a layer's gradients

Errors in the input are reported as one line on stderr with a non-zero exit; set BPTT_DEBUG=1
to see the traceback.
"""

import argparse
import functools
import os
import sys
import warnings
from dataclasses import fields

from .argtypes import nonneg_float as _nonneg_float
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# options that may change when a run is resumed; everything else comes from the checkpoint
RESUMABLE = {"steps", "minutes", "eval_every", "eval_batches", "checkpoint_every", "sample_length", "memory"}
DEFAULT_MINUTES = 3.0


def _add_train(sub):
    from .optim import OPTIMIZERS
    from .presets import CLASSIFY_PRESETS, PRESETS, describe
    from .train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train", help="train a character language model",
        description="Train a character language model with truncated BPTT. With no --data it "
        "trains on the Python standard library's own source code found on this machine. "
        "Progress goes to stderr; checkpoints, metrics.jsonl and samples go to the run directory.")
    a = p.add_argument
    a("--data", metavar="FILE", help="UTF-8 text file to train on (default: Python's standard library source, ~2 MB)")
    a("--cell", choices=["lstm", "gru", "rnn"], help=f"recurrent cell (default {d.cell})")
    a("--hidden", type=_positive_int, dest="hidden_size", help=f"hidden units per layer (default {d.hidden_size})")
    a("--layers", type=_positive_int, dest="num_layers", help=f"recurrent layers (default {d.num_layers})")
    a("--embedding-dim", type=_positive_int, help=f"size of the character embedding (default {d.embedding_dim})")
    a("--dropout", type=_nonneg_float, help=f"dropout between recurrent layers, in [0, 1) (default {d.dropout})")
    a("--seq-len", type=_positive_int, help=f"time steps per truncated-BPTT chunk (default {d.seq_len})")
    a("--batch", type=_positive_int, dest="batch_size", help=f"parallel streams per step (default {d.batch_size})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=_positive_int, help="optimizer steps to train for")
    g.add_argument("--minutes", type=_positive_float,
                   help=f"wall-clock minutes to train for (default {DEFAULT_MINUTES:g} when --steps is not given)")
    a("--optimizer", choices=list(OPTIMIZERS), help=f"optimizer (default {d.optimizer})")
    a("--lr", type=_positive_float, help=f"learning rate (default {d.lr:g})")
    a("--schedule", choices=["constant", "step", "cosine"],
      help=f"learning-rate schedule (default {d.schedule}): step (needs --steps) multiplies it by 0.1 "
      "after each third of the steps; cosine warms it up over --warmup steps, then decays it with a "
      "cosine to 0 at the end of --steps, or of --minutes of training time; --task classify: set per epoch "
      "over --epochs (no warm-up)")
    a("--warmup", type=int, help=f"warm-up steps of the cosine schedule (default {d.warmup})")
    a("--clip", type=_nonneg_float, help=f"clip the global gradient norm to this, 0 = off (default {d.clip:g})")
    a("--clip-value", type=_nonneg_float, help=f"clip each gradient entry to +-this, 0 = off (default {d.clip_value:g})")
    a("--val-fraction", type=_nonneg_float, help=f"the last part of the text kept for validation (default {d.val_fraction:g})")
    a("--eval-every", type=_positive_int, help=f"validate and print a sample every N steps (default {d.eval_every})")
    a("--eval-batches", type=int, help=f"validation chunks per evaluation, 0 = all (default {d.eval_batches})")
    a("--sample-length", type=int, help=f"characters of the sample printed at each evaluation (default {d.sample_length})")
    a("--checkpoint-every", type=_positive_int, help=f"write a checkpoint every N steps, and at the end (default {d.checkpoint_every})")
    a("--seed", type=int, help=f"random seed for weights and dropout (default {d.seed})")
    a("--dtype", choices=["float32", "float64"], help=f"floating-point type (default {d.dtype})")
    a("--memory", choices=["full", "sqrt"], help="BPTT's memory: full keeps every step's cache; sqrt a state "
      "every ceil(sqrt(seq-len)) steps, recomputing each segment in backward (far less memory for "
      f"long --seq-len, about one more forward pass of time) (default {d.memory})")
    a("--preset", choices=list(PRESETS) + list(CLASSIFY_PRESETS), help="a named recipe (default none); options "
      "given explicitly override its settings, the defaults above do not. "
      + "; ".join(f"{name}: {describe(name)}" for name in PRESETS)
      + "; with --task classify: " + "; ".join(f"{name}: {describe(name)}" for name in CLASSIFY_PRESETS)
      + " (the benchmark's recipe, BENCHMARKS.md)")
    a("--out", metavar="RUN_DIR", help="run directory (default runs/<date-time>)")
    a("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where its last checkpoint left it")
    a("--quiet", action="store_true", help="no progress bar")
    from .tasks_cli import add_train_options

    add_train_options(p)  # --task NAME and its options
    from .classify_cli import add_train_options as add_classify_options

    add_classify_options(p)  # --task classify's own options
    p.set_defaults(func=cmd_train, option_names=[f.name for f in fields(TrainConfig)])


def cmd_train(args):
    from . import classify_cli, tasks_cli
    from . import distributed as dist

    if dist.launch_size() > 1 and (classify_cli.wants_classify(args) or tasks_cli.wants_task(args)):
        raise ValueError(f"--task is not supported under mpiexec ({dist.launch_size()} ranks): "
                         f"run tasks as one process; only the character model trains on several")
    if classify_cli.wants_classify(args):
        return classify_cli.run_train(args)
    if tasks_cli.wants_task(args):
        return tasks_cli.run(args)
    from .train import TrainConfig, build_run, fit

    dist.guard(_rank_killed)  # under an MPI launcher: a guard process names this rank if it is killed
    dist.init()  # under an MPI launcher: join the job (mpi4py); else nothing
    say = functools.partial(print, file=sys.stderr) if dist.is_root() else _silent

    given = {k: getattr(args, k) for k in args.option_names if getattr(args, k, None) is not None}
    if args.resume:
        fixed = sorted(set(given) - RESUMABLE)
        if fixed:
            names = ", ".join("--" + k.replace("_size", "").replace("num_", "").replace("_", "-") for k in fixed)
            raise ValueError(f"{names} cannot change when resuming; the run keeps its own settings")
        over = dict(given)
        if "steps" in given:
            over["minutes"] = None
        if "minutes" in given:
            over["steps"] = None
        run = build_run(None, resume=args.resume, overrides=over)
        say(f"resuming {run.cfg.out} at step {run.step}")
    else:
        if "preset" in given:
            given = _with_preset(given)
        if "steps" not in given and "minutes" not in given:
            given["minutes"] = DEFAULT_MINUTES
        cfg = TrainConfig(**given)
        run = build_run(cfg)
        m = run.model
        say(f"data: {run.data_desc}, vocabulary {len(run.vocab)} characters\n"
            f"model: {m.config.cell.upper()} {m.config.num_layers}x{m.config.hidden_size}, "
            f"{m.num_parameters():,} parameters; run directory {run.cfg.out}"
            + (f"\npreset {cfg.preset}: {describe_run(cfg)}" if cfg.preset else ""))
    dist.guard_note(run.cfg.out)
    result = _fit_on_ranks(run, fit, args, say) if dist.size() > 1 else fit(run, progress=not args.quiet)
    if not dist.is_root():
        return 0
    out = run.cfg.out
    if result["status"] == "interrupted":
        print(f"interrupted at step {result['step']}; checkpoint saved. Resume with: bptt train --resume {out}")
        return 0
    from .train import sample_text

    print(f"finished {result['step']} steps in {result['elapsed'] / 60:.1f} min; "
          f"validation loss {result['val_loss']:.4f} nats/char; checkpoint {result['checkpoint']}")
    if result.get("best"):
        print(f"best validation loss {result['best']['val_loss']:.4f} nats/char at step "
              f"{result['best']['step']}: "
              f"{os.path.join(out, 'best')} (bptt sample {out} --best)")
    print("sample:\n" + sample_text(run, 400, seed=-1 % 2**31))
    print(f"\nsample more with: bptt sample {out}")
    return 0


def describe_run(cfg):
    """The settings that decide a run's result, as one line."""
    budget = f"{cfg.steps} steps" if cfg.steps else f"{cfg.minutes:g} min of training time"
    sched = f", warm-up {cfg.warmup} then cosine to 0 over the budget" if cfg.schedule == "cosine" else \
        (f", {cfg.schedule} schedule" if cfg.schedule != "constant" else "")
    return (f"{cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}, dropout {cfg.dropout:g}, batch "
            f"{cfg.batch_size}, seq {cfg.seq_len}, {cfg.optimizer} {cfg.lr:g}{sched}, clip {cfg.clip:g}, {budget}")


def _with_preset(given):
    """The preset's settings, overridden by the options given (--steps replaces its --minutes)."""
    from .presets import preset

    base = preset(given["preset"])
    for budget, other in (("steps", "minutes"), ("minutes", "steps")):
        if budget in given:
            base.pop(other, None)
    return {**base, **given}


def _rank_killed(rank, pid, host, signal_name, run_dir):
    """The guard's line when its rank was killed by a signal (``distributed.guard``)."""
    from .train import _last_good

    line = f"bptt: error: rank {rank} (pid {pid} on {host}) was killed by {signal_name}; the job stops."
    if not run_dir:
        return line
    return f"{line} {_last_good(run_dir)}; resume with: bptt train --resume {run_dir}"


def _launched_ranks():
    from .distributed import launch_size

    return launch_size()


def _silent(*args, **kwargs):
    pass


def _fit_on_ranks(run, fit, args, say):
    """fit() on every rank of an MPI job, the ranks (pid@host) shown first so that a rank the
    launcher reports dead by its PID can be named, and watched: a rank of this host that dies
    is named by the lowest surviving one, which ends the job (no rank waits forever)."""
    from . import distributed as dist
    from .train import _last_good

    table, guards = dist.rank_table(), dist.guard_table()
    b = run.cfg.batch_size // dist.size()
    say(f"mpi: {dist.size()} ranks x {b} streams (batch {run.cfg.batch_size}); rank pid@host: "
        + ", ".join(f"{k} {pid}@{host}" for k, (pid, host) in enumerate(table)))
    if any(guards):
        say("mpi: the processes the launcher started (each guards its rank): "
            + ", ".join(f"{k} {g}" for k, g in enumerate(guards)))

    def died(k, pid, host):
        return (f"bptt: error: rank {k} (pid {pid} on {host}) died; stopping every rank. "
                f"{_last_good(run.cfg.out)}")

    with dist.watching(died, table):
        return fit(run, progress=not args.quiet, echo=say)


def _add_sample(sub):
    p = sub.add_parser("sample", help="sample text from a trained run",
                       description="Generate text from a run directory or checkpoint directory.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--length", type=int, default=500, help="characters to generate")
    p.add_argument("--temperature", type=_nonneg_float, default=0.8, help="softmax temperature; 0 = always the most likely character")
    p.add_argument("--top-k", type=_positive_int, default=None, help="sample only among the k most likely characters")
    p.add_argument("--prime", default=None, help="text to start from (default: a newline)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same text")
    p.add_argument("--best", action="store_true", help="the run's best checkpoint by validation loss (RUN/best)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args):
    from .sample import load_model, sample

    model, vocab, _ = load_model(args.run, best=args.best)
    if args.length < 0:
        raise ValueError(f"--length must be >= 0, got {args.length}")
    sys.stdout.write(sample(model, vocab, args.length, args.temperature, args.top_k, args.prime, args.seed) + "\n")
    return 0


def _add_eval(sub):
    p = sub.add_parser("eval", help="loss and perplexity of a trained run on a text",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--data", metavar="FILE", required=True, help="UTF-8 text to evaluate on")
    p.add_argument("--batch", type=_positive_int, default=16, help="parallel streams")
    p.add_argument("--seq-len", type=_positive_int, default=128, help="time steps per chunk")
    p.add_argument("--json", action="store_true", help="classify runs: print one JSON object (accuracy, n, loss, ...)")
    p.add_argument("--best", action="store_true", help="the run's best checkpoint by validation loss "
                   "(RUN/best; classify runs use it always)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args):
    from . import classify_run

    if classify_run.is_classify_run(args.run):
        from .classify_cli import cmd_eval as classify_eval

        return classify_eval(args)
    from .data import DataError, load_text
    from .sample import evaluate_text, load_model

    model, vocab, _ = load_model(args.run, best=args.best)
    text = load_text(args.data)
    try:
        r = evaluate_text(model, vocab, text, args.batch, args.seq_len)
    except DataError as e:
        raise DataError(f"{args.data}: {e}") from None
    print(f"{args.data}: {r['characters']:,} characters\n"
          f"loss        {r['nats_per_char']:.4f} nats/char\n"
          f"            {r['bits_per_char']:.4f} bits/char\n"
          f"perplexity  {r['perplexity']:.3f}")
    return 0


def _add_export(sub):
    p = sub.add_parser("export", help="write a trained character model or classifier as an ONNX file",
                       description="Write the model of a run (or checkpoint) as ONNX (opset 17, float32) "
                       "for ONNX Runtime and other runtimes: input ids (T, B) int64 and optional h0/c0, "
                       "outputs logits (T, B, V) and h_n/c_n; the vocabulary is in the metadata. A classify run "
                       "(its best checkpoint): series (T, B, D) float32 and sequence_lens (B,) int32 -> logits "
                       "(B, classes), standardisation inside, class labels in the metadata. "
                       "Needs: pip install 'bptt[onnx]'.")
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--onnx", metavar="FILE", required=True, help="the .onnx file to write")
    p.set_defaults(func=cmd_export)


def cmd_export(args):
    from . import export
    from .sample import load_model

    try:
        export.require_onnx()
    except ModuleNotFoundError as e:
        print(f"bptt: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    from . import classify_run

    if classify_run.is_classify_run(args.run):
        model, norm, classes, _ = classify_run.load_for_eval(args.run)
        path = export.to_onnx(model, args.onnx, vocab=classes, norm=norm)
        print(f"wrote {path}: series (T, B, {norm.input_size}) float32 + sequence_lens (B,) "
              f"int32 -> logits (B, {len(classes)}); classes {', '.join(classes)} in the metadata")
        return 0
    model, vocab, _ = load_model(args.run)
    path = export.to_onnx(model, args.onnx, vocab=vocab)
    states = "h0, c0" if model.is_lstm else "h0"
    print(f"wrote {path}: ids (T, B) int64 [+ {states}] -> logits (T, B, {model.config.vocab_size}), "
          f"{states.replace('0', '_n')}")
    return 0


def build_parser():
    parser = _Parser(prog="bptt", description="Recurrent networks with hand-written backpropagation through time.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    _add_sample(sub)
    _add_eval(sub)
    _add_export(sub)
    from .tasks_cli import add_forecast

    add_forecast(sub)
    from .classify_cli import add_predict

    add_predict(sub)
    from . import viz_cli
    viz_cli.add_commands(sub)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        if args.func is not cmd_train and _launched_ranks() > 1:
            raise ValueError(f"bptt {argv[0]} runs as one process, not under mpiexec ({_launched_ranks()} ranks); "
                             f"only bptt train runs on several")
        with warnings.catch_warnings():  # overflow and NaN are checked and reported in one line
            warnings.simplefilter("ignore", RuntimeWarning)
            return args.func(args)
    except UsageError as e:
        return _fail(f"error: {e}", EXIT_USAGE)
    except KeyboardInterrupt as e:
        from .classify_run import Terminated

        if isinstance(e, Terminated):  # SIGTERM while --jobs workers trained: they stopped with it
            return _fail(f"bptt: terminated; what was saved stays: bptt train --resume {e.args[0]}", 143)
        return _fail("bptt: interrupted", 130)
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into messages
        if os.environ.get("BPTT_DEBUG"):
            raise
        from .checkpoint import CheckpointError
        from .data import DataError
        from .train import TrainingError

        known = (DataError, CheckpointError, TrainingError, ValueError, TypeError, OSError)
        if isinstance(e, known):
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, OSError) and e.filename:
                msg = f"{e.strerror or e}: {e.filename}"
                if isinstance(e, FileExistsError) and os.path.isfile(e.filename):  # makedirs over a file
                    msg = f"{e.filename} is a file, not a directory"
            return _fail(f"bptt: error: {msg}", EXIT_ERROR, e)
        return _fail(f"bptt: internal error: {type(e).__name__}: {e} (run with BPTT_DEBUG=1 for the traceback)",
                     EXIT_ERROR, e)


def _fail(line, code, error=None):
    """Print the error line and return the exit code. Under MPI: an error every rank met at the
    same point (before the ranks talk, or marked so) is printed by rank 0 alone and every rank
    leaves normally; an error of one rank is printed by it, naming it, and that rank leaves at
    once, without waiting for the others (the launcher then ends the job)."""
    from . import distributed as dist

    if not dist.launched():
        print(line, file=sys.stderr)
        return code
    if not dist.initialized() or getattr(error, "on_all_ranks", False):
        if dist.launch_rank() == 0:
            print(line, file=sys.stderr)
        return code
    if dist.rank():
        head, sep, rest = line.partition("error: ")
        line = f"{head}{sep}rank {dist.rank()}: {rest}" if sep else f"{line} (rank {dist.rank()})"
    print(line, file=sys.stderr)
    dist.leave(code)


if __name__ == "__main__":
    sys.exit(main())
