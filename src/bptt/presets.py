"""Named training recipes for ``bptt train --preset NAME``: a preset fills in the settings of a
``TrainConfig``; options given explicitly on the command line override it. The run's
checkpoint keeps the resolved settings and the preset's name, so ``--resume`` continues with them.

shakespeare-10min: the best validation loss in 10 minutes of training on tiny-shakespeare on a
2-core CPU (found and measured with ``benchmarks/charlm.py``, which trains PyTorch with the same
recipe; BENCHMARKS.md). A GRU, because bptt's GRU step costs about three quarters of its LSTM
step while PyTorch's GRU step on the CPU costs about as much as its LSTM step at this size; 512
units with dropout 0.3 between the layers, a model that 10 minutes leave undertrained (bptt fits
about 2,000 steps, some 8 passes over the 1 MB text, into them), so that every step counts: the
earlier 256 units overfit at bptt's step count, and at 384 units the curve was already flat
(README: "How this recipe was found");
a learning rate warmed up for the first steps and decayed with a cosine to zero at the end of the
budget (the budget is training time: evaluations are not counted).

ucr (``--task classify``): the recipe of the benchmark table (``benchmarks/classify.py``, whose
SETUP is this preset; BENCHMARKS.md), chosen over rounds of out-of-fold and then nested
cross-validation scores on the TRAIN sets of four UCR archive datasets (GunPoint,
ItalyPowerDemand, ArrowHead, OSULeaf), never on TEST: a bidirectional GRU of 64 units, mean
pooling, four models on four folds (each epoch scored out of fold on all of TRAIN), ``--patch
auto``'s candidates (its rotated ones in one direction, with meanmax pooling), input dropout 0.05, at most 200 epochs with
patience 50.
"""

PRESETS = {
    "shakespeare-10min": {
        "cell": "gru",
        "hidden_size": 512,
        "num_layers": 2,
        "embedding_dim": 64,
        "dropout": 0.3,
        "seq_len": 64,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 3e-3,
        "schedule": "cosine",
        "warmup": 100,
        "clip": 5.0,
        "minutes": 10.0,
        "eval_every": 250,
        "eval_batches": 0,  # the whole validation split
    },
}

# --task classify: the settings of a ClassifyConfig (bptt.classify_run)
CLASSIFY_PRESETS = {
    "ucr": {
        "cell": "gru",
        "hidden_size": 64,
        "lr": 3e-3,
        "pool": "mean",
        "bidirectional": True,
        "batch_size": 16,
        "ensemble": 4,
        "patience": 50,
        "input_dropout": 0.05,
        "patch": "auto",
        "epochs": 200,
    },
}


def preset(name, classify=False):
    """The settings of preset ``name`` (a new dict): the character model's, or with classify=True
    those of --task classify; ValueError naming the presets of that kind otherwise."""
    table, other = (CLASSIFY_PRESETS, PRESETS) if classify else (PRESETS, CLASSIFY_PRESETS)
    if name in other:
        mine, its = ("--task classify", "the character model")[::1 if classify else -1]
        raise ValueError(f"--preset {name} is a recipe for {its}; {mine}'s presets: {', '.join(table)}")
    if name not in table:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(table)}")
    return dict(table[name])


def describe(name):
    """One line: the preset's settings as the options of bptt train."""
    flags = {"hidden_size": "hidden", "num_layers": "layers", "batch_size": "batch"}
    settings = CLASSIFY_PRESETS[name] if name in CLASSIFY_PRESETS else PRESETS[name]
    return " ".join(f"--{flags.get(k, k).replace('_', '-')}" + ("" if v is True else f" {v:g}" if isinstance(v, float)
                                                                else f" {v}") for k, v in settings.items())
