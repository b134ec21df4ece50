"""The classic BPTT experiments as tasks, each a function that builds its data and model, trains
with ``bptt.optim`` and returns a result dict (metrics, loss curve, the trained model):

    run_binary_add   Trask's binary addition, judged on held-out pairs and on 16/32-bit numbers
    run_echo         nicodjimenez's LSTM echo of four targets
    run_next_prime   the next prime after windows of 50 primes
    run_copy         copy-memory over ``lag`` blanks (Hochreiter & Schmidhuber 1997; Arjovsky 2016)
    run_adding       the adding problem over ``lag`` steps (H&S 1997; Le et al. 2015)
    run_series       next-value forecasting of a CSV column against the naive last value

Every function takes ``seed`` (the same seed gives the same result) and ``progress`` (a tqdm bar on
stderr). The model is ``SeqModel``: bptt.RNN | LSTM | GRU and a bptt.Linear head at every step.
"""

from ._common import CELLS, SeqModel, TaskError, load_run, save_run, summary
from .binary_add import run_binary_add
from .echo import run_echo
from .long_lag import run_adding, run_copy
from .next_prime import run_next_prime
from .series import forecast, forecast_run, load_series, run_series, save_series_run

TASKS = {
    "binary-add": run_binary_add,
    "echo": run_echo,
    "next-prime": run_next_prime,
    "copy": run_copy,
    "adding": run_adding,
    "series": run_series,
}

__all__ = ["TASKS", "CELLS", "SeqModel", "TaskError", "run_binary_add", "run_echo",
           "run_next_prime", "run_copy", "run_adding", "run_series", "forecast", "forecast_run",
           "load_series", "load_run", "save_run", "save_series_run", "summary"]
