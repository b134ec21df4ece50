"""Sequence classification on real archive datasets (sktime's shipped .ts files, the archives'
own train/test splits), bptt's test accuracy next to published 1-NN DTW and ROCKET accuracies.

    python benchmarks/classify.py              # print the table
    python benchmarks/classify.py --write      # ... and write it into BENCHMARKS.md ("classify")
    python benchmarks/classify.py --datasets GunPoint --seeds 1 --epochs 5   # a quick look

Each dataset is trained with LSTM and GRU, three seeds each (the median test accuracy is
reported, and the median seconds of one training run: reading, training for --epochs with a
validation part of TRAIN choosing the best epoch, and scoring TEST). Runs use one thread
(--threads): on a shared 2-core machine these small models train faster single-threaded.
"""

import argparse
import os
import sys
import tempfile
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _report, next to this file
from _report import machine_line, threads_from_argv, write_section  # noqa: E402

threads_from_argv()  # before NumPy and numba are imported

import importlib.util  # noqa: E402

import numpy as np  # noqa: E402

from bptt.presets import CLASSIFY_PRESETS  # noqa: E402

ROCKET_SRC = ("ROCKET: Dempster, Petitjean, Webb (2020), mean accuracy of 10 runs on the archive's own split, "
              "column accuracy_mean of results/results_ucr.csv in github.com/angus924/rocket (commit 41cfd4b)")
DTW_SRC = ("1-NN DTW (full window): the UCR archive's DataSummary.csv (Dau et al. 2018, "
           "cs.ucr.edu/~eamonn/time_series_data_2018/), column 'DTW (w=100)' (error rate), as accuracy = "
           "1 - error; read from the copy of that file at DataSummary.csv in github.com/Chang-George-Dong/TrojanTime "
           "(commit 72aef95), the same values in the copy in github.com/sensorlab/KAN_TS (commit 5b57adf): "
           "ArrowHead 0.2971, GunPoint 0.0933, ItalyPowerDemand 0.0496, OSULeaf 0.4091")
# dataset -> (1-NN DTW accuracy, ROCKET accuracy), both from the sources above
PUBLISHED = {
    "GunPoint": (1 - 0.0933, 1.0),
    "ItalyPowerDemand": (1 - 0.0496, 0.96958212),
    "ArrowHead": (1 - 0.2971, 0.81428571),
    "OSULeaf": (1 - 0.4091, 0.94090909),
}
# one recipe for every dataset: bptt's --preset ucr (bptt.presets.CLASSIFY_PRESETS), with --patch auto
# (one_run) and each cell; patch_rule is its first candidate, the recipe before the tenth round
# (classify_search.py's variant "recipe")
_UCR = CLASSIFY_PRESETS["ucr"]
SETUP = {k: v for k, v in _UCR.items() if k not in ("cell", "patch", "epochs")}
STEPS = 32  # patch_rule: about this many recurrent steps per series
EPOCHS = _UCR["epochs"]  # at most (SETUP's patience stops earlier)


SELECTION = ("How the recipe was chosen (by scores on TRAIN; the first round's exploratory runs printed test accuracy too, so that round was not blind to it): patching (ArrowHead's 251 steps as 32), both "
             "directions and mean pooling were set first, by judgement and single-model runs whose validation "
             "part (20% of ArrowHead's TRAIN: 6 series) could not tell settings or epochs apart; the "
             "out-of-fold score of --ensemble uses all 36. Variants compared by that out-of-fold accuracy (GRU, 2 seeds): --augment 0.1 scored lower on "
             "all three datasets, 128 hidden units or 300 epochs no better on ArrowHead and slower, 6 models "
             "instead of 4 (1 seed) equal on ArrowHead and ItalyPowerDemand and lower on GunPoint; so they "
             "are not used. A second round, blind to test accuracy (the search printed only out-of-fold "
             "scores on TRAIN; the only test accuracies read are this table's, of the final recipe): each "
             "variant's best out-of-fold accuracy, mean of seeds 0 and 1, GRU unless named, as "
             "ItalyPowerDemand / GunPoint / ArrowHead (- not run): the recipe 0.985 / 0.990 / 0.806 "
             "(LSTM 0.970 / 0.900 / 0.681); --diff (first differences as more features) 0.970 / 0.970 / 0.667 "
             "(LSTM 0.978 / 0.980 / 0.639); K = ceil(median length / 16) - / 0.980 (seed 1 only) / 0.708; "
             "K = ceil(median length / 64) - / 0.960 / 0.694; --schedule cosine - / 0.980 / 0.764; 8 models "
             "of 32 units 0.978 / 0.960 / 0.722; batch 8 - / 0.990 / 0.792; --weight-decay 0.001 - / 0.600 / "
             "0.625. No variant scored above the "
             "recipe on any dataset for the GRU (the better cell on all three), so the recipe is unchanged; "
             "--diff and --schedule stay as options. A third round, blind to test accuracy in the same "
             "way (benchmarks/classify_search.py prints only out-of-fold scores on TRAIN; TEST is not read), "
             "as ItalyPowerDemand / GunPoint / ArrowHead, GRU, mean of seeds 0 and 1: the recipe 0.985 / "
             "0.990 / 0.806 (re-run: as in the second round); members of different patch sizes "
             "(multi-scale, K/2, K, 2K, 4K) 0.963 / 0.970 / 0.722; label smoothing 0.1 0.985 / 0.990 / 0.806 "
             "(equal); then, with --patience 40: --pool last 0.985 / 0.940 / 0.722; batch 32 0.970 / 1.000 / "
             "0.708; lr 0.005 0.978 / 0.960 / 0.750; 96 hidden units 0.963 / 0.990 / 0.792; 2 layers 0.970 / "
             "0.980 / 0.764. None scored above the recipe on one dataset without scoring below it on another, "
             "so the models are unchanged (multi-scale members and label smoothing ran from a temporary "
             "patch and are not bptt options). The out-of-fold score rates each series by the one member "
             "that did not train on it, so it judges members one at a time and cannot credit what mixing "
             "different members (patch sizes, cells) adds to their average; mixed LSTM and GRU members were "
             "not run, the LSTM's out-of-fold scores being below the GRU's. Time: the OSULeaf LSTM took "
             "over a minute for 150 epochs although its best out-of-fold epoch came early (36; the GRU's "
             "35 and 50). On the full 150-epoch out-of-fold curves (GRU seeds 0 and 1 on all four "
             "datasets, LSTM seed 0 on OSULeaf), stopping 40 epochs after the best score (--patience 40) "
             "keeps every curve's best epoch and score and stops OSULeaf at epochs 76-90 (the LSTM's "
             "training 65 s -> 40 s), while --patience 30 or 20 lose the best epoch on ArrowHead or "
             "ItalyPowerDemand (python benchmarks/classify_search.py --stopping); so the recipe adds "
             "--patience 40."
             " After this table's run (its test accuracies read once, as the rule says), the out-of-fold curve of seed 2, which the stopping choice above had not seen, was drawn for ArrowHead and GunPoint (GRU, 150 epochs, no stopping; TEST not read): ArrowHead's best out-of-fold score comes late (0.750 at epoch 127) after a plateau, and --patience 40 stopped that run at epoch 77 with its best 0.667 at 37 (the table's GRU seed 2 on ArrowHead: 0.537; median 0.731 against 0.771 without stopping in the previous table); GunPoint's seed 2 keeps its best (0.960 at 55) either way. --patience 50 would have kept the best of all 12 curves; the recipe was not changed after the test accuracies were seen, so the table stays as run."
             " A fourth round, blind to test accuracy in the same way (benchmarks/classify_search.py: out-of-fold "
             "scores on TRAIN, TEST not read), GRU, mean of seeds 0 and 1, as ItalyPowerDemand / GunPoint / "
             "ArrowHead / OSULeaf, with --patience 40 unless named: the recipe 0.985 / 0.990 / 0.806 / 0.735 "
             "(re-run; OSULeaf's first out-of-fold scores); --diff 0.970 / 0.970 / 0.653 / 0.755 (without "
             "stopping, 150 epochs: 0.970 / 0.970 / 0.667 / -); --crop 0.9 (a random 90% window of each "
             "series, new every epoch) 0.955 / 0.980 / 0.667 / 0.748; --warp 0.05 0.978 / 0.980 / 0.778 / 0.730; "
             "--warp 0.1 0.985 / 0.970 / 0.792 / 0.770; --warp 0.2 0.970 / 0.980 / 0.708 / -; mixed members "
             "(GRU, LSTM, GRU, LSTM; a search-only patch, classify_search.py's mixed-cells) 0.948 / 0.940 / "
             "0.708 / - (stopped: lower on three); 200 epochs without stopping 0.985 / 0.990 / 0.806 / 0.735 "
             "(equal, slower); with --patience 50, lr 0.002 0.970 / 0.980 / 0.722 / 0.738. First differences and warped or cropped series help "
             "OSULeaf (the longest series) and score lower on GunPoint and on ArrowHead or ItalyPowerDemand "
             "(--crop and --warp stay as options; --warp 0.1's and --crop 0.9's losses come from runs whose "
             "best epochs lie near the 150th, so no stopping rule changes them). --patience 50: this change "
             "is NOT blind in its origin (prompted by ArrowHead's seed-2 curve, seen after the previous table "
             "with its test accuracies); it was judged on curves no one had seen: GRU seeds 3, 4, 5 on "
             "ArrowHead, GunPoint and ItalyPowerDemand and 3, 4 on OSULeaf, 150 epochs without stopping "
             "(python benchmarks/classify_search.py --variants recipe --patience 0 --seeds 3 4 5 with "
             "SEARCH_HISTORY, then --stopping): --patience 40 loses the best epoch of all three ArrowHead "
             "curves (0.833 at epoch 121 -> 0.694 at 68, 0.833 at 146 -> 0.694 at 40, 0.778 at 132 -> 0.750 "
             "at 60: mean 0.815 -> 0.713) and keeps every other; --patience 50 keeps the best of all 11 (and "
             "of seeds 0 and 1, as 40 did: their scores are unchanged), stopping OSULeaf about 10 epochs "
             "later (GRU seeds 0-4 at epochs 72-100, the LSTM's seeds 0 and 1 at 92-93 instead of 82-83: a "
             "few seconds). So the recipe's --patience is 50 from this round on, and the table after this round was "
             "the first run of it."
             " A fifth round, blind to test accuracy in the same way (python benchmarks/classify_search.py "
             "--variants pool-max pool-meanmax --datasets ItalyPowerDemand GunPoint ArrowHead OSULeaf --seeds 0 1, "
             "then with --patience 0: out-of-fold scores on TRAIN, TEST not read), GRU, as ItalyPowerDemand / "
             "GunPoint / ArrowHead / OSULeaf, mean of seeds 0 and 1: the recipe 0.985 / 0.990 / 0.806 / 0.735 "
             "(re-run: the same; 200 epochs without stopping score the same, round four); --pool max (each "
             "feature's maximum over the valid steps) 0.978 / 1.000 / 0.778 / 0.760 (without stopping, 150 "
             "epochs: 0.978 / 1.000 / 0.792 / 0.760); --pool meanmax (the mean and the max side by side) 0.970 / "
             "1.000 / 0.750 / 0.788, and without stopping 0.985 / 1.000 / 0.806 / 0.788, below the recipe on "
             "no dataset, but the best of four settings tried on these seeds, so it was checked against the "
             "recipe on seeds 6 and 7, which no run had used, both without stopping: the recipe 0.985 / 1.000 / "
             "0.778 / 0.720, meanmax 0.978 / 1.000 / 0.792 / 0.760 (one ItalyPowerDemand series fewer in one "
             "seed; OSULeaf higher on all four seeds, by 0.035 to 0.070, and its 150 epochs about 60 s); so "
             "the recipe keeps --pool mean, and max and meanmax stay as options."
             " A sixth round, blind to test accuracy in the same way (benchmarks/classify_search.py: out-of-fold "
             "scores on TRAIN, TEST not read), GRU, mean of seeds 0 and 1, as ItalyPowerDemand / GunPoint / "
             "ArrowHead / OSULeaf (- not run), against the recipe's 0.985 / 0.990 / 0.806 / 0.735 (re-run on the "
             "first three: the same). Search-only patches in classify_search.py (python "
             "benchmarks/classify_search.py --variants overlap mixup0.2 time phase phase-tta snapshot --datasets "
             "ItalyPowerDemand GunPoint ArrowHead --seeds 0 1 --epochs 150): overlapping patches (windows of K values "
             "every ceil(K/2) steps, one window per recurrent step; ItalyPowerDemand's K = 1 makes it the recipe) "
             "- / 0.990 / 0.722 / -; mixup of a batch's series (x = lam x + (1 - lam) x', lam ~ Beta(0.2, 0.2), the "
             "loss mixed alike; a mixed pair trains only the members whose fold holds neither series) 0.985 / "
             "0.960 / 0.778 / -; the relative time (-1 to 1) as one more feature 0.985 / 0.990 / 0.750 / -; a "
             "random patch phase in training (the first r < K values dropped, new every epoch) - / 0.990 / 0.750 / "
             "-, and with the out-of-fold score averaged over 4 phases - / 1.000 / 0.750 / -; the mean of the "
             "predictions of consecutive epochs (each epoch's out-of-fold probabilities kept, the best epoch of the "
             "mean over the w = 1, 2 or 3 epochs before it, or w before and after it): 0.985 on ItalyPowerDemand "
             "for all six, 0.980-0.990 on GunPoint, 0.778-0.806 on ArrowHead, never above the recipe. Refitting "
             "on all of TRAIN (the members trained again on every series for the out-of-fold best epoch E*) "
             "cannot be judged by the out-of-fold score, so it was judged by nested cross-validation on TRAIN "
             "(python benchmarks/classify_search.py --nested 4 --datasets ItalyPowerDemand GunPoint ArrowHead "
             "OSULeaf --seeds 0 1 --epochs 150: TRAIN in 4 stratified outer folds; the recipe runs on three, its "
             "refit follows, the fourth scores both; each series of TRAIN held out once): the recipe 0.940 / 0.960 / "
             "0.625 / 0.743, the refitted members 0.940 / 0.950 / 0.681 / 0.713, both together (8 members) 0.955 / "
             "0.950 / 0.639 / 0.748: lower on GunPoint either way, so not adopted. Input dropout (--input-dropout "
             "P, a bptt option from this round: each value of a training batch zeroed with probability P, the "
             "others scaled by 1/(1-P); first run as a patch with the same draws): P = 0.2 0.978 / 0.970 / "
             "0.722 / -; P = 0.1 0.985 / 0.980 / 0.819 / -, with GunPoint's best epochs at 148 and 150, so "
             "again with 200 epochs at most (the recipe at 200 scores as at 150 on these seeds, rounds four "
             "and five): 0.985 / 1.000 / 0.819 / 0.745, above the recipe on three datasets and below on none. "
             "On seeds 8 and 9, which no run had used, the recipe scored 0.955 / 0.980 / 0.778 / 0.725 (200 "
             "epochs: 0.955 / 0.980 / 0.806 / 0.725) and P = 0.1 0.978 / 1.000 / 0.847 / 0.723 (OSULeaf one "
             "series fewer of 400), so P = 0.1 was not confirmed. P = 0.05 with 200 epochs, run next: 0.985 / "
             "1.000 / 0.819 / 0.745 on seeds 0 and 1 (the same means as P = 0.1), and on seeds 10 and 11, "
             "fresh again (8 and 9 had now been seen): 0.963 / 0.990 / 0.792 / 0.735 against the recipe's 0.955 "
             "/ 0.970 / 0.694 / 0.720 (the same at 200 epochs: these runs stop before the 150th), above on all "
             "four and below it on no dataset in any of the 8 runs. So from this round the recipe adds "
             "--input-dropout 0.05 and trains 200 epochs at most (still --patience 50); the scores above for "
             "earlier rounds are of the recipe without them. The LSTM, which the rule does not judge, on the first "
             "three datasets (seeds 0 and 1; --cells lstm): 0.970 / 0.950 / 0.681 without them, 0.963 / 0.970 / "
             "0.667 with them; the GRU stays the better cell."
             ' A seventh round, blind to test accuracy in the same way (benchmarks/classify_search.py: out-of-fold'
             ' scores on TRAIN, TEST not read), GRU, mean of seeds 0 and 1, as ItalyPowerDemand / GunPoint / '
             'ArrowHead / OSULeaf (- not run: each variant was tried on ArrowHead first, and one that scored below'
             " the recipe on a dataset was not run on the rest), against the recipe's 0.985 / 1.000 / 0.819 / "
             '0.745 (re-run on ArrowHead: the same). Dropout on the pooled features before the Linear head (a '
             'search-only patch; P = 0.2, 0.5): - / - / 0.792 / -, - / - / 0.764 / -. Each epoch scored (and so '
             'chosen) with the exponential average of the weights over the epochs, a = d a + (1 - d) w, debiased '
             '(a search-only patch; d = 0.9, 0.8): - / - / 0.778 / -, 0.970 / 1.000 / 0.819 / -. Decoupled weight '
             "decay (--optimizer adamw --weight-decay WD, torch's AdamW: p *= 1 - lr WD at each step, apart from "
             'the gradient): WD = 0.01 0.985 / 1.000 / 0.847 / 0.730; 0.03 0.985 / 0.990 / 0.861 / 0.743; 0.1 - / '
             '- / 0.792 / -; 0.5 - / - / 0.708 / -. Random amplitude (a search-only patch: each training series '
             'times exp(N(0, 0.1)), new every epoch) 0.978 / 0.990 / 0.819 / -, and shifted by N(0, 0.1) as well -'
             ' / - / 0.792 / -. 32 and 48 hidden units - / - / 0.708 / -, - / - / 0.736 / -; gradient clipping at '
             '0.5 0.985 / 0.980 / 0.833 / -, at 5 - / - / 0.778 / -; one direction - / - / 0.736 / -; 5 members - '
             '/ - / 0.722 / -; batch 12 - / - / 0.806 / -; lr 0.004 - / - / 0.806 / -. Attention pooling (--pool '
             'attn, a bptt option from this round: the softmax over the valid steps of a learned score out_t . w, '
             'w starting at 0, where it is the mean pool): 0.985 / 1.000 / 0.833 / 0.743 (OSULeaf one series of '
             '400 fewer over the two seeds). Circular shifts (--roll F, a bptt option from this round: each '
             'training series rotated in time by r steps, r uniform in -F T .. F T, new every epoch, drawn from '
             "the run's batch RNG): F = 0.5 0.925 / 1.000 / 0.722 / 0.875 (OSULeaf's runs 57-59 s: its best epochs"
             ' come late, 157 and 173); F = 0.1 - / - / 0.708 / 0.783; F = 0.05 - / - / 0.750 / -; F = 0.02 (at '
             "most 5 of ArrowHead's 251 steps, less than its patch of 8) - / - / 0.694 / -. First run as a search-"
             'only patch with its own random draws, they scored alike: F = 0.5 0.970 / 0.990 / 0.736 / 0.873, F = '
             '0.1 - / - / 0.708 / 0.785, F = 0.05 - / - / 0.792 / -, F = 0.02 - / - / 0.764 / -. None scored above'
             ' the recipe on one dataset without scoring below it on another, so none went on to fresh seeds (12 '
             'and 13 are still unused) and the recipe is unchanged; --pool attn and --roll stay as options. '
             'Circular shifts are the largest out-of-fold gain on OSULeaf in seven rounds (0.745 -> 0.875; its '
             'series are the outlines of leaves, on which the starting point says nothing of the class) and score '
             "lower on ArrowHead and ItalyPowerDemand, whose series start at a fixed point (an arrowhead's "
             "outline, a day's first hour); the series' being closed outlines is no rule for it (ArrowHead's are "
             "as closed as OSULeaf's: |x_0 - x_T-1| is 0.012 and 0.033 of a series' standard deviation on TRAIN, "
             "ItalyPowerDemand's 0.51, GunPoint's 0.10), and choosing between them per dataset by the out-of-fold "
             'score means training both, over a minute on OSULeaf (its --roll run alone takes 57-59 s), so no such'
             " choice was built. Weight decay: bptt's adam adds WD p to the gradient (L2), as torch.optim.Adam "
             "does (tests/test_optim.py compares them), and that explains the second round's GunPoint 0.600: at "
             "the start, 89% of the GunPoint ensemble's gradient entries are smaller than 0.001 |p| (median |g| "
             "1.7e-6 against 6.2e-5), and Adam, which scales each coordinate's step to about lr, spends those "
             "steps shrinking the weights, so the model never leaves chance: re-run with this round's recipe "
             '(variant l2-0.001), - / 0.580 / - / -, its training loss 0.67-0.71 (ln 2 = 0.693) for all 75-83 '
             "epochs. AdamW's decay is apart from the gradient and did not stop learning. A run now passes "
             '--weight-decay to the optimizer as given: before, 0 was not passed on, so --optimizer adamw without '
             "--weight-decay decayed by torch's default 0.01. Commands: python benchmarks/classify_search.py "
             '--variants recipe headdrop0.2 headdrop0.5 ema0.9 ema0.8 adamw0.1 adamw0.5 adamw0.01 scale0.1 '
             'scaleshift0.1 hidden32 hidden48 clip0.5 clip5 unidir adamw0.03 ens5 batch12 lr0.004 pool-attn '
             '--datasets ArrowHead --seeds 0 1; then --variants adamw0.01 adamw0.03 ema0.8 scale0.1 clip0.5 pool-'
             'attn --datasets GunPoint ItalyPowerDemand, --variants adamw0.01 adamw0.03 pool-attn roll0.1 '
             '--datasets OSULeaf, --variants roll0.5 --datasets ItalyPowerDemand GunPoint ArrowHead OSULeaf, '
             '--variants roll0.1 roll0.05 roll0.02 --datasets ArrowHead, --variants l2-0.001 --datasets GunPoint '
             '(with SEARCH_HISTORY for its curve); all with --seeds 0 1.'
             ' An eighth round, blind to test accuracy (benchmarks/classify_search.py --nested 4: TEST not read), '
             'judged by nested cross-validation instead of the best out-of-fold accuracy. The out-of-fold score is'
             " the maximum over up to 200 epochs of an ensemble's accuracy on TRAIN's own series (36 on "
             "ArrowHead), so it is optimistic and rewards a lucky epoch; the nested score runs a variant's whole "
             'procedure (its members, its epoch chosen by its own inner out-of-fold score, its patch from the '
             'outer-train lengths) on three of four stratified outer folds of TRAIN and scores its chosen ensemble'
             ' on the fourth, each TRAIN series held out once (one ArrowHead series is 0.014 of a two-seed mean, '
             'one GunPoint series 0.010, one ItalyPowerDemand series 0.007, one OSULeaf series 0.0025). The rule, '
             "written down (commit f7cd3d2) before any run: above the recipe's nested score (mean of seeds 0 and 1) on at "
             'least one of ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf and below it on none, OSULeaf run '
             'only for variants that pass the other three, then the same again against the recipe on fresh seeds '
             '12 and 13 (the best mean over the four datasets first). GRU; nested held-out accuracy, mean of seeds'
             ' 0 and 1, as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf (- not run; each variant ran on '
             'ArrowHead first, and only those above the recipe there went on): the recipe 0.933 / 0.970 / 0.611 / '
             '0.733 (its inner out-of-fold scores, on 3/4 of TRAIN, 0.960 / 0.997 / 0.713 / 0.726: on ArrowHead '
             '0.10 above what it scores on series it never saw); --optimizer adamw --weight-decay 0.01 0.940 / '
             '0.980 / 0.667 / 0.743; --weight-decay 0.03 (adamw) - / - / 0.653 / -; --pool attn 0.940 / 0.960 / '
             '0.736 / - (the best ArrowHead score of the round, +0.125, and one GunPoint series of 100 fewer: '
             '0.940 / 0.980 against 0.960 / 0.980); 6 members (--ensemble 6) 0.948 / 0.970 / 0.667 / 0.758; 8 '
             'members - / - / 0.625 / -; --input-dropout 0.1 - / - / 0.653 / -; clipping at 0.5 - / - / 0.611 / -;'
             ' the exponential average of the weights over the epochs (d = 0.8, each epoch scored and chosen with '
             'it; search-only patch ema0.8) - / - / 0.639 / -; the mean probability of consecutive epochs, the '
             "epoch chosen by that mean's out-of-fold score and the held-out fold predicted by the same epochs' "
             'mean (search-only patches snap-centre1: epochs e-1..e+1, snap-trail2: e-2..e) - / - / 0.625 / -, - /'
             ' - / 0.625 / -; --roll 0.5 - / - / 0.597 / -. The queued GunPoint / ItalyPowerDemand runs of adamw '
             '0.03, input dropout 0.1 and ema 0.8 (above the recipe on ArrowHead) were stopped for the '
             'confirmations below and not run. Two variants passed on seeds 0 and 1: --ensemble 6 (mean over the '
             'four 0.836) and --optimizer adamw --weight-decay 0.01 (0.832). On seeds 12 and 13, fresh, the recipe'
             ' scored 0.963 / 0.950 / 0.681 / 0.733; --ensemble 6 (run first, the higher mean) 0.940 / - / 0.625 /'
             ' - (below on ArrowHead and ItalyPowerDemand: stopped there); adamw 0.01 0.970 / 0.970 / 0.653 / '
             '0.715 (above on ItalyPowerDemand and GunPoint, below on ArrowHead and OSULeaf). Neither was '
             'confirmed, so the recipe is unchanged (benchmarks/classify.py SETUP as it was; no bptt option added:'
             ' adamw, --ensemble and --pool attn exist already). What the round shows: the nested scores move with'
             ' the seed more than the variants move them apart (the recipe itself: ArrowHead 0.611 on seeds 0 and '
             '1, 0.681 on 12 and 13; GunPoint 0.970 and 0.950; ItalyPowerDemand 0.933 and 0.963), so two seeds of '
             'a 36-series dataset cannot confirm a gain of a few series, and the fresh-seed step rejected both '
             "passers by 2 to 4 ArrowHead series of 72. The one large ArrowHead difference, --pool attn's +0.125 "
             'on seeds 0 and 1 (6 and 3 series of 36 more on the two seeds), was rejected by a single GunPoint '
             'series; it has not been run on seeds 12 and 13. Commands: python benchmarks/classify_search.py '
             '--nested 4 --variants recipe --datasets ArrowHead ItalyPowerDemand GunPoint --seeds 0 1; python '
             'benchmarks/classify_search.py --nested 4 --variants adamw0.03 adamw0.01 pool-attn clip0.5 ema0.8 '
             'snap-centre1 snap-trail2 indrop0.1 roll0.5 ens6 ens8 --datasets ArrowHead --seeds 0 1; python '
             'benchmarks/classify_search.py --nested 4 --variants pool-attn adamw0.01 ens6 --datasets GunPoint '
             'ItalyPowerDemand --seeds 0 1; python benchmarks/classify_search.py --nested 4 --variants recipe '
             'adamw0.01 ens6 --datasets OSULeaf --seeds 0 1; python benchmarks/classify_search.py --nested 4 '
             '--variants recipe ens6 adamw0.01 --datasets ArrowHead ItalyPowerDemand GunPoint OSULeaf --seeds 12 '
             '13.'
             " A ninth round (nested cross-validation as in the eighth; TEST not read), for the eighth's one large"
             ' ArrowHead difference, --pool attn, rejected there by one GunPoint series: its rule, written down '
             "before the runs, the nested score of --pool attn against the recipe's on four fresh seeds, 14 to 17,"
             " adopted if the mean of the four is above the recipe's on at least one of the four datasets and "
             'below it on none (python benchmarks/classify_search.py --nested 4 --variants recipe pool-attn '
             '--datasets ArrowHead GunPoint ItalyPowerDemand OSULeaf --seeds 14 15, and --seeds 16 17; GRU, one '
             'thread). Means of the four seeds as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: the recipe '
             '0.959 / 0.970 / 0.681 / 0.739, --pool attn 0.959 / 0.950 / 0.729 / 0.744 (seed by seed, ArrowHead: '
             'the recipe 0.778, 0.611, 0.667, 0.667, attn 0.778, 0.694, 0.722, 0.722; GunPoint: the recipe 1.000, '
             '0.940, 0.980, 0.960, attn 0.940, 0.920, 0.960, 0.980). Above on ArrowHead (higher or equal on every '
             'seed) and below on GunPoint (4 of 200 held-out series fewer), so not adopted; the recipe stays as it'
             ' is.'
             ' A tenth round (nested cross-validation as in the eighth; TEST not read), its rule written down before'
             ' the runs (ROUND10.md, commit 1094a14 in the git history): 1-NN with the plain Euclidean distance '
             "scores 0.80 on ArrowHead (the UCR DataSummary's error 0.2000), above DTW's 0.703, so a model that "
             'reads the whole shape at once might suit it better than 32 steps of 8 values. Variants with fewer, '
             'longer patches, K = ceil(median TRAIN length / N) for N = 16, 8, 4, 1 (classify_search.py steps16, '
             'steps8, steps4, steps1), against the recipe (N = 32), GRU, on seeds 18 and 19, which no run had '
             'used, ArrowHead first. Means of the two seeds as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: '
             'the recipe 0.948 / 0.940 / 0.597 / 0.715; 8 steps 0.955 / 0.950 / 0.722 / 0.633; 4 steps 0.948 / '
             '0.890 / 0.806 / 0.623; 1 step 0.970 / 0.910 / 0.792 / 0.590; 16 steps - / - / 0.611 / - (stopped '
             'after ItalyPowerDemand seed 18: 0.910 against 0.940). Fewer steps lift ArrowHead by up to 0.21 and '
             'lower OSULeaf, and GunPoint at 4 steps or 1: no variant passed the rule. In every outer fold, though,'
             ' the inner out-of-fold score ranked the numbers of steps as the held-out fold did on ArrowHead and '
             'OSULeaf, so an amendment, written down before any run on fresh seeds (commit bc64bf4), added a '
             'procedure made after seeing seeds 18 and 19: select, the recipe trained with 32, 8 and 4 steps and '
             'the one with the highest out-of-fold accuracy predicting (ties: more steps), judged by the same rule '
             'against the recipe on seeds 20 to 23 (on seeds 18 and 19, from the runs above: 0.948 / 0.940 / '
             "0.792 / 0.715). Means of seeds 20-23: the recipe 0.951 / 0.950 / 0.653 / 0.728, select 0.951 / "
             '0.965 / 0.785 / 0.728 (8 steps alone 0.955 / 0.950 / 0.743 / 0.656, 4 steps alone 0.974 / 0.895 / '
             '0.764 / 0.630); seed by seed on ArrowHead the recipe 0.639, 0.722, 0.583, 0.667 and select 0.722, '
             '0.833, 0.778, 0.806; OSULeaf chose 32 steps in all 16 outer folds, ArrowHead 4 or 8 steps in 14 of '
             '16. Above on GunPoint and ArrowHead and below on none, so select is adopted: it is bptt\'s '
             '--patch auto (classify_run.AUTO_STEPS = 32, 8, 4), and the table after this round was its first run (the '
             "recipe's other settings unchanged). Commands: python benchmarks/classify_search.py --nested 4 "
             '--variants recipe steps8 steps16 --datasets ArrowHead --seeds 18 19, and --variants steps4 steps1; '
             '--variants recipe steps4 steps16 --datasets ItalyPowerDemand GunPoint OSULeaf --seeds 18 19 (steps16 '
             'stopped), and --variants steps1 steps8; --variants recipe --datasets ArrowHead ItalyPowerDemand '
             'GunPoint OSULeaf --seeds 20 21 22 23, and --variants steps8 steps4; select was scored from these runs'
             "' outer folds (each fold's best inner score), which --variants select (the same runs in one command) "
             'reproduces.'
             ' An eleventh round (its rule ROUND11.md, commit 86f2a47) meant to run seven settings of select '
             '(select+X, select-N,...) on seeds 24 and 25; a slip in classify_search.py (the same commit: each '
             "candidate's patch was computed from its number of steps, then set again from the variant alone) ran "
             'every candidate of select and of each variant with the 32-step patch, three copies of one run. Its '
             "scores (ArrowHead: 'select' 0.681, 96 hidden units 0.736, 8 members 0.708, the others 0.625-0.681; "
             'ItalyPowerDemand: 0.955, 0.948, 0.910) are those of the 32-step recipe with each setting, not of the '
             'selection; it tested nothing its rule named, and its conclusion (nothing adopted) stands on nothing. '
             'The slip was found in the next session and fixed (each candidate prints its patch, and a test runs '
             "the search's select and checks that its candidates train with patches 1, 3, 6 on ItalyPowerDemand)."
             ' A twelfth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND12.md, commit 396a4fd in the git history) ran the eleventh\'s seven settings again and one new '
             "variant, select,roll0.5: select's three candidates and a fourth, the 32-step run with --roll 0.5 "
             '(round seven: as a setting for all, much better on OSULeaf and worse on ArrowHead and '
             'ItalyPowerDemand; as a candidate the inner score can take it where it helps). GRU, fresh seeds 26 '
             'and 27, mean of the two, as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf (- not run: not above '
             'select on ArrowHead, where every variant ran first): select 0.918 / 0.960 / 0.806 / 0.710; input '
             'dropout 0.1 - / - / 0.792 / -, 0.2 - / - / 0.806 / - (equal); 8 members - / - / 0.764 / -; 96 hidden '
             'units - / - / 0.792 / -; --pool attn - / - / 0.750 / -; a fourth candidate of 1 step - / - / 0.792 / '
             '-; of 2 steps 0.918 / 0.960 / 0.833 / 0.710 (passes: above on ArrowHead, below on none); '
             'select,roll0.5 0.918 / 0.970 / 0.806 / 0.853 (passes: above on GunPoint and OSULeaf, below on none; '
             'its rotated candidate was chosen in all 8 outer folds of OSULeaf and 2 of 8 of GunPoint, never '
             'elsewhere). The passing variant with the higher four-dataset mean, select,roll0.5 (0.887 against '
             '0.855), then ran against select on fresh seeds 28-31, mean of the four: select 0.948 / 0.950 / 0.764 '
             '/ 0.721, select,roll0.5 0.948 / 0.960 / 0.764 / 0.851 (OSULeaf higher on all four seeds: 0.860, '
             '0.855, 0.840, 0.850 against 0.720, 0.710, 0.750, 0.705; the rotated candidate chosen in all 16 of its '
             'outer folds; the other datasets seed for seed the same except one GunPoint seed, 0.98 against 0.94). '
             'It passed again, so it is adopted: --patch auto trains the most-steps candidate a second time with '
             '--roll 0.5 (classify_run.AUTO_ROLL; not when --roll is given). Its first table (08:44-08:51 UTC, --jobs 2, '
             'the rotated candidate trained first) read OSULeaf LSTM 0.810, GRU 0.847 (before: 0.715, 0.702; '
             'the rotated candidate chosen in all 6 runs, 33-34 s each) and the other three datasets as before. '
             'The fourth candidate of 2 steps also passed on seeds 26 and 27 but was not confirmed there: the '
             'rule confirms one variant. Commands: python '
             'benchmarks/classify_search.py --nested 4 --variants select select+indrop0.1 select+indrop0.2 '
             'select+ens8 select,roll0.5 --datasets ArrowHead --seeds 26 27; --variants select+hidden96 '
             'select+pool-attn select-32,8,4,2 select-32,8,4,1 --datasets ArrowHead --seeds 26 27; --variants '
             'select select-32,8,4,2 --datasets ItalyPowerDemand GunPoint OSULeaf --seeds 26 27; --variants '
             'select,roll0.5 --datasets OSULeaf ItalyPowerDemand GunPoint --seeds 26 27; --variants select and '
             '--variants select,roll0.5 --datasets OSULeaf ArrowHead ItalyPowerDemand GunPoint --seeds 28 29 30 31.'
             ' A thirteenth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND13.md, commit f291331): the 2-step candidate on top of the new --patch auto, '
             'classify_search.py select,roll0.5,2 (candidates of about 32, 8, 4 and 2 steps, then the rotated '
             'one; a tie goes to the earlier), against select,roll0.5 scored from the same runs without the '
             '2-step candidate, GRU, fresh seeds 32-35, all four datasets; adopted if above on one and below on '
             'none (means of the four seeds). ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: without it '
             '0.933 / 0.960 / 0.736 / 0.854, with it 0.933 / 0.960 / 0.750 / 0.854: seed for seed the same on '
             'three datasets, and on ArrowHead 0.806, 0.722, 0.750, 0.722 against 0.778, 0.694, 0.750, 0.722 (two '
             'held-out series more over the four seeds). Adopted by the rule (a small margin: one series in two '
             'of four seeds): AUTO_STEPS = 32, 8, 4, 2; its first table (--jobs 2, each '
             'candidate in its own process on one thread, the rotated one first; 09:22-09:30 UTC, on a machine '
             'otherwise quiet; the 2-step candidate was chosen in none of its 24 runs, whose test accuracies are those '
             'of the table before it, each run a few seconds longer) read, LSTM / GRU, GunPoint 0.933 / 0.987, '
             'ItalyPowerDemand 0.955 / 0.952, ArrowHead 0.760 / 0.749, OSULeaf 0.810 / 0.847. Command: python '
             'benchmarks/classify_search.py --nested 4 --variants '
             'select,roll0.5,2 --datasets OSULeaf ArrowHead ItalyPowerDemand GunPoint --seeds 32 33 (and 34 35).'
             ' A fourteenth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND14.md, commit 9901052): six ways to predict from --patch auto\'s five candidates, scored from the '
             'same runs (classify_search.py --variants combos): sel, the best inner score (--patch auto as it was); '
             'avg, the mean probability of all five; top2, of the two best inner scores; and each of them with the '
             'rotated candidate predicting by its mean probability over 8 rotations of each series (round(j T / 8) '
             'steps, j = 0..7; -tta). GRU, fresh seeds 36 and 37, means as ItalyPowerDemand / GunPoint / ArrowHead / '
             'OSULeaf: sel 0.925 / 0.980 / 0.736 / 0.843; sel-tta 0.925 / 0.980 / 0.736 / 0.865; avg 0.963 / 0.960 / '
             '0.778 / 0.778; avg-tta 0.963 / 0.960 / 0.778 / 0.783; top2 0.948 / 0.980 / 0.764 / 0.830; top2-tta '
             '0.948 / 0.990 / 0.764 / 0.843. Two passed, sel-tta and top2-tta; top2-tta, the higher four-dataset mean '
             '(0.886 against 0.877), ran against sel on fresh seeds 38-41: 0.966 / 0.975 / 0.819 / 0.838 against '
             '0.944 / 0.980 / 0.778 / 0.854, below on GunPoint and OSULeaf, so not adopted. Seen on those six seeds: '
             'sel-tta at or above sel on every dataset and seed (OSULeaf higher on all six; 0.868 against 0.854 on '
             '38-41), top2 above sel on ArrowHead on all six (0.820 against 0.778 on 38-41), and the rotated '
             'candidate mixed with an unrotated one lower on OSULeaf. A fifteenth round (its rule written down before '
             'the runs, ROUND15.md, commit 933009e; two ways formed after seeing seeds 36-41, judged on fresh seeds '
             '42-45 against sel, from the same runs): sel-tta, and top2u-tta (the rotated candidate alone over 8 '
             'rotations when its inner score is the best, else the mean of the two best unrotated candidates). Means '
             'of the four seeds: sel 0.955 / 0.960 / 0.736 / 0.833; sel-tta 0.955 / 0.960 / 0.736 / 0.854 (OSULeaf '
             'seed by seed 0.845, 0.865, 0.860, 0.845 against 0.850, 0.835, 0.805, 0.840; the other datasets seed '
             'for seed the same); top2u-tta 0.955 / 0.955 / 0.771 / 0.854 (one GunPoint series fewer over the four '
             'seeds). sel-tta passed (above on OSULeaf, below on none) and top2u-tta did not, so sel-tta is adopted: '
             'the rotated candidate of --patch auto predicts with --tta 8 (a bptt option from this round: eval, '
             'predict and the ONNX export average the probabilities over the rotations; the validation that picks '
             'epochs and candidates reads the series as they are, as in the search), and the table above is the '
             'first run of it. Commands: python benchmarks/classify_search.py --nested 4 --variants combos '
             '--datasets OSULeaf ArrowHead GunPoint ItalyPowerDemand --seeds 36 (37; 38 39; 40 41; 42 43; 44 45). '
             'A sixteenth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND16.md, commit 53ed964): in the logs of rounds fourteen and fifteen the best inner score was tied '
             'between candidates in 21 of 40 outer folds of ArrowHead and of GunPoint and all 40 of '
             'ItalyPowerDemand (none of OSULeaf), and --patch auto took the earlier of them, an arbitrary pick; two '
             'ways from the same runs (classify_search.py combos), each with the rotated candidate over 8 '
             'rotations: tie-tta, the mean probability of the candidates tied at the best inner score, and '
             'near-tta, of those within one inner series (1 / the number of outer-train series) of it; judged '
             'against sel-tta (--patch auto as it was) on fresh seeds 46 and 47, the passer with the higher '
             'four-dataset mean then on fresh seeds 48-51. Means as ItalyPowerDemand / GunPoint / ArrowHead / '
             'OSULeaf, seeds 46-47: sel-tta 0.963 / 0.970 / 0.764 / 0.873; tie-tta 0.978 / 0.980 / 0.778 / 0.873; '
             'near-tta 0.978 / 0.970 / 0.792 / 0.873 (both pass; near-tta the higher mean, 0.903 against 0.902); '
             'seeds 48-51: sel-tta 0.963 / 0.970 / 0.799 / 0.880, near-tta 0.966 / 0.975 / 0.819 / 0.880 (above '
             'on three datasets, OSULeaf seed for seed the same: its rotated candidate leads alone). near-tta passed '
             'again and is adopted: --patch auto predicts (eval, predict, the ONNX export) by the mean probability '
             'of every candidate whose out-of-fold accuracy is within one series of the best (classify_run.AUTO_MIX, '
             'bptt.classify.ProbabilityMean; RUN/best stays the best-scoring one), and the table above is the first '
             'run of it. Commands: python benchmarks/classify_search.py --nested 4 --variants combos --datasets '
             'OSULeaf ArrowHead GunPoint ItalyPowerDemand --seeds 46 (47; 48 49; 50 51).'
             ' A seventeenth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND17.md, commit 01bb373): series read both ways, as an outline traced the other way round is the '
             "mirror image of the same shape and a movement played backwards is again a movement. combos+flip: "
             "--patch auto's five candidates, each trained with every training series reversed in time with "
             'probability 1/2 (drawn anew every epoch; after the rotation, for the rotated one) and predicting by its '
             'mean probability over the series and its reversal (the rotated candidate over 8 rotations of both), '
             "mixed as near-tta; against combos' near-tta (--patch auto as it is), each from its own runs, GRU, "
             'fresh seeds 52 and 53. Means as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: --patch auto '
             '0.963 / 0.950 / 0.806 / 0.8625, flip 0.970 / 0.960 / 0.819 / 0.8575 (OSULeaf seed by seed 0.855, '
             '0.860 against 0.885, 0.840). Above on three datasets and below on OSULeaf by two held-out series of '
             '400, so not adopted, and no fresh-seed step; the recipe is unchanged (flip ran as a search-only '
             'patch, classify_search.py flip_series). Commands: python benchmarks/classify_search.py --nested 4 '
             '--variants combos (and --variants combos+flip) --datasets OSULeaf ArrowHead GunPoint ItalyPowerDemand '
             '--seeds 52 53.'
             ' An eighteenth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             "ROUND18.md, commit 25b3ece; formed after seeing round seventeen's seeds, so judged on fresh ones): flip "
             'in the four unrotated candidates only, the rotated one as it is (combos+flipu), against combos\' '
             'near-tta, each from its own runs, GRU, fresh seeds 54 and 55. Means as ItalyPowerDemand / GunPoint / '
             'ArrowHead / OSULeaf: --patch auto 0.963 / 0.990 / 0.736 / 0.875, flipu 0.948 / 0.980 / 0.778 / 0.875 '
             '(OSULeaf seed for seed the same: its rotated candidate predicts alone). Above on ArrowHead, below on '
             'ItalyPowerDemand and GunPoint, so not adopted; the recipe is unchanged. Commands: python '
             'benchmarks/classify_search.py --nested 4 --variants combos (and --variants combos+flipu) --datasets '
             'OSULeaf ArrowHead GunPoint ItalyPowerDemand --seeds 54 55.'
             ' A nineteenth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND19.md, commit 55694ae): a wider mix, near2-tta, the mean probability of every candidate within '
             'two inner series of the best (the rotated one over 8 rotations), against near-tta (--patch auto as it '
             "is), both from the same runs of combos, GRU, fresh seeds 56 and 57. Means as ItalyPowerDemand / "
             'GunPoint / ArrowHead / OSULeaf: near-tta 0.970 / 0.980 / 0.806 / 0.8625, near2-tta 0.970 / 0.980 / '
             '0.764 / 0.8625 (ArrowHead seed by seed 0.778, 0.750 against 0.861, 0.750; the other datasets seed for '
             'seed the same). Below on ArrowHead and above on none, so not adopted, and no fresh-seed step; the '
             'recipe is unchanged. Command: python benchmarks/classify_search.py --nested 4 --variants combos '
             '--datasets OSULeaf ArrowHead GunPoint ItalyPowerDemand --seeds 56 (and 57).'
             ' A twentieth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND20.md, commit 26678c5): in the logs of rounds seventeen to nineteen the cap of 200 epochs, not '
             "the patience, ended 75 of GunPoint's 200 candidate runs (nearly every run of its rotated candidate) "
             "and 34, 21 and 10 of ItalyPowerDemand's, ArrowHead's and OSULeaf's; combos+ep400, the same five "
             'candidates with 400 epochs at most (patience 50 as before; of its 40 runs per dataset, GunPoint\'s '
             "11, ItalyPowerDemand's 6, ArrowHead's 4 and OSULeaf's 3 went past 200), against combos' near-tta, each from its own runs, GRU, fresh seeds 58 and 59. Means"
             ' as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: --patch auto 0.963 / 0.970 / 0.764 / 0.8475, '
             '400 epochs 0.963 / 0.980 / 0.750 / 0.8475 (ArrowHead seed by seed 0.722, 0.778 against 0.750, '
             '0.778). Above on GunPoint and below on ArrowHead, so not adopted; the recipe is unchanged. Commands:'
             ' python benchmarks/classify_search.py --nested 4 --variants combos (and --variants combos+ep400) '
             '--datasets GunPoint ArrowHead ItalyPowerDemand OSULeaf --seeds 58 59.'
             ' A twenty-first round (nested as in the eighth; TEST not read; its rule written down before the '
             'runs, ROUND21.md, commit 54e5a64): the rotated candidate trained with --diff as well (first '
             'differences as more features), chosen among four settings of it explored on OSULeaf alone on seed '
             '56, seen in round nineteen (its held-out hits over 8 rotations, 4 outer folds: as it is 171 of 200, '
             "about 64 steps 172, --pool meanmax 172, --warp 0.1 174, --diff 176); near-tta/diff, --patch auto's "
             'candidates with that one in place of the rotated one, against near-tta, both from the same runs '
             "(classify_search.py combos,rotdiff: combos' five runs and the sixth), GRU, fresh seeds 60 and 61. "
             'Means as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: near-tta 0.963 / 0.970 / 0.792 / 0.865, '
             'near-tta/diff 0.955 / 0.970 / 0.806 / 0.900 (OSULeaf seed by seed 0.890, 0.910 against 0.860, 0.870;'
             ' ItalyPowerDemand 0.940, 0.970 against 0.940, 0.985: one series of 134 fewer, where the candidate '
             'with --diff, its inner score within one series of the best, joined the mix). Above on ArrowHead and '
             'OSULeaf and below on ItalyPowerDemand, so not adopted. Command: python benchmarks/classify_search.py'
             ' --nested 4 --variants combos,rotdiff --datasets OSULeaf ArrowHead GunPoint ItalyPowerDemand --seeds'
             ' 60 (and 61).'
             ' A twenty-second round (nested as in the eighth; TEST not read; its rule written down before the '
             "runs, ROUND22.md, commit c7b58be; formed after seeing round twenty-one's seeds, so judged on fresh "
             'ones, in one step of four seeds): lead-tta/diff, the rotated candidate trained with --diff and mixed'
             " only when its inner score is above every unrotated candidate's (else near-tta of the unrotated ones"
             ' alone), against near-tta, both from the same runs of combos,rotdiff, GRU, fresh seeds 62-65. Means '
             'as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: near-tta 0.978 / 0.985 / 0.799 / 0.871, lead-'
             'tta/diff 0.978 / 0.975 / 0.806 / 0.894 (OSULeaf higher on all four seeds: 0.900, 0.885, 0.905, 0.885'
             ' against 0.880, 0.870, 0.870, 0.865; GunPoint 0.960, 0.940, 1.000, 1.000 against 0.980, 0.980, '
             '0.980, 1.000). Above on ArrowHead and OSULeaf and below on GunPoint, so not adopted; the recipe is '
             'unchanged. Reported from the same runs, not judged: the rotated candidate as it is, mixed only when '
             "it leads (lead-tta), 0.978 / 0.980 / 0.792 / 0.871; near-tta/diff (round twenty-one's way) 0.974 / "
             '0.995 / 0.8125 / 0.894, below on ItalyPowerDemand again (one series of 268 fewer over the four '
             'seeds). Over seeds 60-65 the rotated candidate with --diff scored above the one without on OSULeaf '
             'in every seed (0.865 -> 0.900 on 60-61, 0.871 -> 0.894 on 62-65) and changed the other datasets by a'
             ' series or two either way, depending on how it is mixed. Command: python '
             'benchmarks/classify_search.py --nested 4 --variants combos,rotdiff --datasets OSULeaf ArrowHead '
             'GunPoint ItalyPowerDemand --seeds 62 63 (and 64 65).'
             ' A twenty-third round (nested as in the eighth; TEST not read; its rule written down before the '
             'runs, ROUND23.md, commit 3144bbc): near-tta/diff again, on fresh seeds 66-69 in one step, under a '
             'rule changed from this round on and said so before the runs: the rule "above on one dataset and '
             'below on none" had rejected it twice for one ItalyPowerDemand series (over seeds 60-65 it held out, '
             'as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf, -2 / +2 / +3 / +32 series against near-tta), '
             'and on TRAIN sets of 36 to 200 series a nested score moves by a series from the seed alone; a way '
             "is now adopted if the mean of the four datasets' held-out accuracies is higher and on no dataset "
             'does it hold out fewer series than the recipe by more than one over all the seeds of the step (a '
             'rule formed after seeing seeds 60-65, on which near-tta/diff would have passed it; seeds 66-69 '
             'were the test). Means as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: near-tta 0.966 / 0.955 '
             '/ 0.792 / 0.879, near-tta/diff 0.974 / 0.975 / 0.799 / 0.885 (+2 / +4 / +1 / +5 series; seed by '
             'seed never lower on ItalyPowerDemand, GunPoint or ArrowHead, OSULeaf 0.900, 0.880, 0.890, 0.870 '
             'against 0.875, 0.880, 0.885, 0.875), above on all four datasets, which the old rule would have '
             'passed too. Adopted: the rotated candidate of --patch auto trains with --diff as well '
             '(classify_run.AUTO_DIFF, in RUN/patch-K-roll0.5-diff/) and is mixed as before; as its '
             'standardisation differs from the other candidates\', a ProbabilityMean standardises the series for '
             'each part in its own way (in Python and in the ONNX graph), and the table above is the first run of '
             'it. Command: python benchmarks/classify_search.py --nested 4 --variants combos,rotdiff --datasets '
             'OSULeaf ArrowHead GunPoint ItalyPowerDemand --seeds 66 67 (and 68 69).'
             ' A twenty-fourth round (nested as in the eighth; TEST not read; its rule written down before the '
             'runs, ROUND24.md, commit 6f4d63e; formed after seeing seeds 62-69, so judged on fresh ones in one '
             'step): in those seeds\' logs the rotated candidate with --diff, alone over 8 rotations, held out '
             "all 400 of GunPoint's outer-fold series against near-tta's 394, its inner score at the best (tied "
             "or above) in 29 of GunPoint's 32 outer folds (OSULeaf's 32, ItalyPowerDemand's 8, ArrowHead's 3). "
             'first-tta: the rotated candidate alone whenever its inner score is at the best, tied or above, else '
             'near-tta; against near-tta (--patch auto as it is), both from the same runs of the search variant '
             "auto (--patch auto's five candidates since round twenty-three), GRU, fresh seeds 70-73, under round "
             "twenty-three's rule. Means as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: near-tta 0.955 / "
             '0.980 / 0.868 / 0.881, first-tta 0.944 / 1.000 / 0.847 / 0.881 (-3 / +4 / -3 / 0 series: GunPoint '
             'seed by seed 1.000 on all four against 1.000, 1.000, 0.940, 0.980; ArrowHead three series fewer '
             'in one seed, ItalyPowerDemand two and one in two). The four-dataset mean lower and two datasets '
             'three series down, so not adopted; the recipe is unchanged (the code it would have needed, the '
             'rotated candidate as RUN/best when tied, is on the unmerged branch first). Reported from the same '
             'runs, not judged: tie-tta 0.963 / 0.990 / 0.840 / 0.881, lead-tta 0.963 / 0.965 / 0.854 / 0.881, '
             'near2-tta 0.959 / 0.955 / 0.868 / 0.881, sel-tta 0.940 / 0.980 / 0.813 / 0.881. Command: python '
             'benchmarks/classify_search.py --nested 4 --variants auto23 (then named auto) --datasets OSULeaf '
             'ArrowHead GunPoint ItalyPowerDemand --seeds 70 71 (and 72 73).'
             ' Explored after it, not a round (OSULeaf alone, GRU, seeds 66 and 67, seen in round '
             'twenty-three; the rotated candidate alone, its held-out series over 8 rotations of 200: python '
             'benchmarks/classify_search.py --nested 4 --variants V --datasets OSULeaf --seeds 66, the line '
             '"held-out accuracy over 8 rotations"): as it is (roll0.5,diff) 180 on seed 66 and 176 on 67; with '
             '--warp 0.1 177; with 96 hidden units 178; with 2 layers 176; with its epochs scored as it predicts, '
             'each out-of-fold series over 8 rotations (roll0.5,diff,vtta8, a search-only patch, its epochs some '
             '65% longer) 176 and 178. None above the rotated candidate as it is, so no round was run.'
             ' Explored later in the same way (seeds 66 and 67, against 180 and 176): batch 32 '
             '(roll0.5,diff,batch32) 178 and 177; 6 members (roll0.5,diff,ens6) 177 and 177; --pool meanmax '
             '(roll0.5,diff,meanmax) 182 and 178; and, from a temporary change in which each member read only the '
             'series outside its fold (the same training but for float32 rounding; not kept, as it did not shorten '
             'the OSULeaf runs), the rotated candidate as it is 176 and 178, --schedule cosine 177 and 173, lr 0.002 '
             '176 and 174. At most six series of 400 apart, no more than the seed alone moves them, so no round was run.'
             ' Explored later still, in the same way (each run reproduced 180 and 176 for the candidate as it is): its '
             'members trained again on every outer-train series for E* epochs (roll0.5,diff,refit, as in round six) '
             '180 and 178, and those with the out-of-fold members 180 and 179; the same candidate with finer or '
             'coarser patches (roll0.5,diff,scales and roll0.5,diff,fine; OSULeaf\'s K is 14, 31 steps): K/2 (patch 7, '
             '61 steps) 183 and 179, K/3 (patch 5, 86 steps) 183 and 184, K/4 (patch 4, 107 steps) 183 and 181, 2K '
             '(patch 28, 16 steps) 177 and 176, and mixed with '
             'the one as it is within two series of the finer one alone (K with K/3 183 and 180, K with K/4 184 and 179, K, K/3 and K/4 184 and 181); '
             'with 32 hidden units instead of 64 (roll0.5,diff,hidden32,fine) K 180 and 175, K/3 175 and 184, K/4 180 '
             'and 179. K/3 with 64 units is the largest gain on OSULeaf since --diff (+11 series of 400), but its '
             'steps cost time: alone on all of OSULeaf\'s TRAIN (bptt train --task classify --patch 5 --roll 0.5 --diff '
             '--tta 8 and the recipe\'s other settings, seed 0, --threads 1, two runs at a time) it took 94 s for the '
             'LSTM (200 epochs, the best 168th) and 79 s for the GRU (200, the best 178th), against 33 s (139, the '
             'best 89th) and 42 s (200, the best 173rd) with K; with K/2 (patch 7) 81 s and 83 s (200 epochs each, the '
             'best 171st and 170th). A finer rotated candidate trains to the cap of 200 epochs, each about twice as '
             'long, so an OSULeaf run of --patch auto with it would take well over a minute; no round was run.'
             ' A twenty-fifth round (nested as in the eighth; TEST not read; its rule written down before the runs, '
             'ROUND25.md, commit 070aa39; formed after seeing OSULeaf\'s seeds 66 and 67 only, so judged on fresh '
             'ones in one step). From this round on each member of an ensemble computes only the series outside '
             'its fold (EnsembleClassifier.forward\'s rows: the temporary change above, now kept; the same training '
             'but for float32 rounding, each epoch of OSULeaf\'s rotated candidates 15-23% shorter for the LSTM and '
             '4-8% for the GRU), and this round ran with it. Explored first on OSULeaf (GRU, seeds 66 and 67, the '
             'rotated candidate alone over 8 rotations, of 200 series per seed): as it is 176 and 178; K/3 (patch 5) '
             '182 and 181; K/3 with 3 members instead of 4 (roll0.5,diff,ens3,third) 177 and 179; in one direction '
             '(roll0.5,diff,uni,third) K 179 and 180, K/3 180 and 183, at half the work of both directions. '
             'near-tta/uni96: --patch auto\'s rotated candidate in one direction with the patch for about 96 steps '
             '(K = ceil(median length / 96), a third of the first candidate\'s patch: OSULeaf 5, GunPoint 2, ArrowHead '
             '3, ItalyPowerDemand 1) instead of both directions at about 32, all else as before, against near-tta '
             '(--patch auto as it was), both from the same runs (classify_search.py auto23,rotuni96: the five runs of '
             '--patch auto as it was, auto23, and a sixth), GRU, fresh seeds 74-77, under round twenty-three\'s '
             'rule. Means as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: near-tta 0.966 / 0.980 / 0.819 / '
             '0.876, near-tta/uni96 0.963 / 0.975 / 0.826 / 0.919 (-1 / -1 / +1 / +34 series over the four seeds; '
             'OSULeaf higher in every seed, 0.920, 0.925, 0.905, 0.925 against 0.885, 0.885, 0.860, 0.875), the '
             'four-dataset mean 0.921 against 0.911 and no dataset more than one series down. Adopted: --patch '
             'auto\'s rotated candidate trains so (classify_run.AUTO_FINER and AUTO_ONE_WAY, in '
             'RUN/patch-K-roll0.5-diff-uni/), and the table was run again with it (OSULeaf LSTM 0.893 / GRU 0.888 '
             'in 44 / 34 s, the others as before; 2 of 4 within 2 points of ROCKET). Reported from the same '
             'runs, not judged: lead-tta/uni96 0.970 / 0.960 / 0.806 / 0.919. Command: python '
             'benchmarks/classify_search.py --nested 4 --variants auto23,rotuni96 (then named auto,rotuni96) --datasets ItalyPowerDemand '
             'GunPoint ArrowHead OSULeaf --seeds 74 75 (and 76 77).'
             ' Explored after it, not a round (OSULeaf alone, GRU, seeds 66 and 67, seen; the rotated candidate '
             'in one direction over 8 rotations, of 200 series per seed, with K = 14 and K/3 = 5 from the same '
             'runs: python benchmarks/classify_search.py --nested 4 --variants roll0.5,diff,uni,V,third --datasets '
             'OSULeaf --seeds 66): as adopted, K/3 180 and 183, K 179 and 180, the mean of the two 182 and 183; '
             'with 80 hidden units (hidden80) K/3 181 and 181, K 181 and 178; with --pool meanmax (meanmax) K/3 179 '
             'and 186, K 185 and 180, the mean of the two 184 and 187. The last, two rotated candidates with '
             'meanmax at two patches, is the highest of these ways but was picked among six on seen seeds, so it '
             'went to a round.'
             ' A twenty-sixth round (nested as in the eighth; TEST not read; its rule written down before the '
             'runs, ROUND26.md, commit 65fcc12; formed after seeing OSULeaf\'s seeds 66 and 67 and round '
             'twenty-five\'s seeds, so judged on fresh ones in one step): near-tta/mm2, --patch auto with two '
             'rotated candidates in place of its one, both in one direction with --roll 0.5 --tta 8 --diff and '
             '--pool meanmax, one with the patch for about 32 steps and one for about 96, each a candidate like the '
             'others; against near-tta (--patch auto as round twenty-five left it), both from the same runs '
             '(classify_search.py auto25,rotmm2, then named auto,rotmm2), GRU, fresh seeds 78-81, under round '
             'twenty-three\'s rule. Means as ItalyPowerDemand / GunPoint / ArrowHead / OSULeaf: near-tta 0.948 / '
             '0.980 / 0.799 / 0.914, near-tta/mm2 0.948 / 0.995 / 0.819 / 0.914 (0 / +3 / +3 / 0 series over the '
             'four seeds; OSULeaf seed by seed 0.900, 0.920, 0.910, 0.925 against 0.920, 0.915, 0.915, 0.905), the '
             'four-dataset mean 0.919 against 0.910 and no dataset a series down. Adopted: --patch auto trains the '
             'two rotated candidates (classify_run.AUTO_ROTATED_POOL, RUN/patch-K-roll0.5-diff-uni-meanmax/; one '
             'when both patches are equal, as on ItalyPowerDemand, where the search ran the same run twice), and '
             'the table above is the first run of it. Reported from the same runs, not judged: lead-tta/mm2 0.948 / '
             '0.960 / 0.806 / 0.914. Command: python benchmarks/classify_search.py --nested 4 --variants '
             'auto25,rotmm2 --datasets ItalyPowerDemand GunPoint ArrowHead OSULeaf --seeds 78 79 (and 80 81).'
             ' Then the training was made faster without changing what it computes, so no round: the passes '
             'around the recurrent loops compiled and equal to the bit to NumPy\'s (bptt._fused: Adam\'s update, the '
             'patching and pooling), the freed memory of each step kept for the next (memory.keep_freed_memory: '
             'about 10,000 page faults an epoch fewer), checkpoints written without reading them back; the table '
             'was run again with the same test accuracies in every run, OSULeaf\'s medians 51 s (LSTM) and 40 s '
             '(GRU) against 60 s and 54 s.')
DATASETS_NOTE = ("Datasets: the archive datasets the issue names that sktime ships, whose 1-NN DTW and ROCKET "
                 "figures both sources below give (the univariate UCR ones), and whose run of the recipe "
                 "trains in about a minute or less on this machine: GunPoint, ItalyPowerDemand, ArrowHead, "
                 "OSULeaf (OSULeaf added in the second round, on this rule, before any of its test accuracies "
                 "was seen: one GRU run took 49 s then, on a busy machine; the table's seconds say whether "
                 "each cell's runs stay under a minute). Not in the table: PLAID (unequal lengths, 537 series up to 1,344 steps: about 1 s "
                 "per epoch here, some 150 s for the 150 epochs), BasicMotions (multivariate: neither source "
                 "has it).")


def patch_rule(train_lengths):
    """K = ceil(median TRAIN length / 32): about 32 steps of K values each (1 for short series)."""
    return max(1, -(-int(np.median(train_lengths)) // STEPS))


def data_dir():
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.origin:
        raise SystemExit("sktime is not installed (pip install -e '.[test]'): it ships the archive files")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data")


def one_run(name, cell, seed, epochs, jobs=1):
    """One run of the recipe (--patch auto: a run per candidate patch, the best by its out-of-fold
    accuracy kept) on TRAIN, scored on TEST as RUN predicts (the mean of the candidates within one
    series of the best) -> (accuracy, seconds, the chosen patches, joined by '+')."""
    from bptt.classify_run import ClassifyConfig, evaluate_file, fit_select, new_select
    from bptt.memory import keep_freed_memory

    d = os.path.join(data_dir(), name)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        cfg = ClassifyConfig(data=os.path.join(d, f"{name}_TRAIN.ts"), cell=cell, epochs=epochs, seed=seed,
                             out=os.path.join(out, "run"), **SETUP)
        new_select(cfg)
        keep_freed_memory()  # as the command does (its --jobs workers do it themselves)
        sel = fit_select(cfg.out, progress=False, jobs=jobs)
        s, _, _ = evaluate_file(os.path.join(d, f"{name}_TEST.ts"), cfg.out)
        return s["accuracy"], time.perf_counter() - t0, "+".join(_short(sel["candidates"][i]) for i in sel["mixed"])


def _short(c):
    """A candidate of --patch auto in the table: its patch K, 'Kr' for a rotated one (--roll 0.5 --tta 8 --diff
    --pool meanmax, one direction)."""
    return f"{c['patch']}" + ("r" if "roll" in c else "")


def describe(name):
    from bptt.data import read_ts

    d = os.path.join(data_dir(), name)
    tr, _ = read_ts(os.path.join(d, f"{name}_TRAIN.ts"))
    te, _ = read_ts(os.path.join(d, f"{name}_TEST.ts"))
    lens = [len(x) for x in tr + te]
    span = str(min(lens)) if min(lens) == max(lens) else f"{min(lens)}-{max(lens)}"
    from bptt.classify_run import auto_candidates

    return len(tr), len(te), span, tr[0].shape[1], [_short(c) for c in auto_candidates([len(x) for x in tr])]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(PUBLISHED))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--threads", default="1")
    p.add_argument("--jobs", type=int, default=2, help="candidates of --patch auto trained at a time, each in "
                   "its own process with one thread (default 2: this machine's cores)")
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for name in args.datasets:
        ntr, nte, span, D, patches = describe(name)
        res, chosen = {}, {}
        for cell in ("lstm", "gru"):
            accs, secs, chosen[cell] = [], [], []
            for seed in range(args.seeds):
                acc, sec, k = one_run(name, cell, seed, args.epochs, args.jobs)
                accs.append(acc)
                secs.append(sec)
                chosen[cell].append(k)
                print(f"{name} {cell} seed {seed}: test accuracy {acc:.4f}, {sec:.1f} s, patch {k} chosen",
                      file=sys.stderr)
            res[cell] = (float(np.median(accs)), float(np.median(secs)))
        patch = f"{', '.join(map(str, patches))} (LSTM {', '.join(map(str, chosen['lstm']))}; GRU " \
                f"{', '.join(map(str, chosen['gru']))})"
        dtw, rocket = PUBLISHED.get(name, (None, None))
        rows.append((name, ntr, nte, span, D, patch, res, dtw, rocket))
    body = table(rows, args)
    print(body)
    if args.write:
        print(f"written to {write_section('classify', body)}")
    return 0


def _f(v):
    return "-" if v is None else f"{v:.3f}"


def table(rows, args):
    from bptt.classify_run import (AUTO_DIFF, AUTO_FINER, AUTO_MIX, AUTO_ONE_WAY, AUTO_ROLL, AUTO_ROTATED_POOL,
                                   AUTO_STEPS, AUTO_TTA)

    lines = [
        "## Sequence classification on archive datasets (`benchmarks/classify.py`)",
        "",
        f"`python benchmarks/classify.py --write`: each dataset's own train/test split (sktime's shipped "
        f".ts files); one recipe for all (`bptt train --task classify --preset ucr`, with `--cell lstm` for the "
        f"LSTM): bidirectional, {SETUP['hidden_size']} hidden units, mean over the "
        f"valid steps, `--patch auto`: one such run for each patch K = ceil(median TRAIN length / N) "
        f"consecutive values per step, N = {', '.join(map(str, AUTO_STEPS))} (about N recurrent steps), and two "
        f"rotated ones with about {AUTO_STEPS[0]} and {AUTO_FINER * AUTO_STEPS[0]} steps (the first K and K = "
        f"ceil(median / {AUTO_FINER * AUTO_STEPS[0]}))" + (" in one direction" if AUTO_ONE_WAY else "")
        + f", `--pool {AUTO_ROTATED_POOL}` (the mean and the max of the steps side by side) and --roll {AUTO_ROLL:g} (each training series rotated in time by up to half its length, "
        f"new every epoch, and predicting by its mean probability over {AUTO_TTA} rotations of each series, "
        f"`--tta {AUTO_TTA}`" + (", with each value's first difference as one more feature, `--diff`" if AUTO_DIFF
                                  else "")
        + f"), and the candidates whose out-of-fold accuracy is within {AUTO_MIX} series of the best "
        f"predict by their mean probability; in each run "
        + ("each value's first difference as one more feature (`--diff`), " if SETUP.get("diff") else "")
        + f"{args.epochs} epochs"
        + (f" at most (`--patience {SETUP['patience']}`: stop {SETUP['patience']} epochs after the best "
           f"out-of-fold score)" if SETUP.get("patience") else "")
        + (f", input dropout {SETUP['input_dropout']:g} (`--input-dropout`: each value of a training batch zeroed "
           f"with that probability, the others scaled up)" if SETUP.get("input_dropout") else "")
        + f", Adam lr {SETUP['lr']:g}"
        + (f" with the `--schedule {SETUP['schedule']}` over the epochs" if SETUP.get("schedule", "constant") != "constant" else "")
        + f", batch {SETUP['batch_size']}, an ensemble of "
        f"{SETUP['ensemble']} (`--ensemble {SETUP['ensemble']}`: TRAIN in {SETUP['ensemble']} folds, model m trained "
        f"on all but fold m, the best epoch chosen by the out-of-fold accuracy on all of TRAIN, the models' mean "
        f"probability predicts); median test accuracy "
        f"of {args.seeds} seeds; seconds per run (every candidate trained, then TEST scored) "
        + (f"with {args.jobs} candidates at a time (`--jobs {args.jobs}`), each process on one thread. " if args.jobs > 1
           else f"on {args.threads} thread(s). ")
        + f"Machine: {machine_line()}.",
        "",
        "| dataset | train | test | length | dims | patch K: candidates, Kr the rotated ones (chosen, by seed; K+K: their mean) | LSTM acc | LSTM s | GRU acc | GRU s | 1-NN DTW | ROCKET "
        "| best >= DTW | best within 2 pts of ROCKET |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    n_dtw = n_rocket = 0
    for name, ntr, nte, span, D, patch, res, dtw, rocket in rows:
        (la, ls), (ga, gs) = res["lstm"], res["gru"]
        best = max(la, ga)
        ok_dtw = None if dtw is None else best >= round(dtw, 3)
        ok_rocket = None if rocket is None else best >= round(rocket, 3) - 0.02
        n_dtw, n_rocket = n_dtw + bool(ok_dtw), n_rocket + bool(ok_rocket)
        yn = lambda ok: "-" if ok is None else ("yes" if ok else "no")  # noqa: E731
        lines.append(f"| {name} | {ntr} | {nte} | {span} | {D} | {patch} | {la:.3f} | {ls:.0f} | {ga:.3f} | {gs:.0f} | "
                     f"{_f(dtw)} | {_f(rocket)} | {yn(ok_dtw)} | {yn(ok_rocket)} |")
    slow = [f"{name} {cell.upper()} ({res[cell][1]:.0f} s)" for name, *_, res, _, _ in rows
            for cell in ("lstm", "gru") if res[cell][1] >= 60]
    goal = n_dtw == len(rows) and n_rocket > len(rows) / 2 and not slow
    lines += ["", f"The better of LSTM and GRU reaches 1-NN DTW on {n_dtw} of {len(rows)} datasets and comes within "
              f"2 points of ROCKET on {n_rocket} of {len(rows)}; "
              + (f"runs of a minute or more (median): {', '.join(slow)}" if slow else "each median run under a minute")
              + ": the goal (DTW on every dataset, ROCKET on most, each in under a minute) is "
              + ("met." if goal else "not met.")]
    lines += ["", DATASETS_NOTE, "", SELECTION]
    lines += ["", f"Sources: {DTW_SRC}; {ROCKET_SRC}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
