"""bptt: recurrent networks with backpropagation through time written by hand in NumPy.

The data flow, one module per step:
    data -> encoding (Embedding, one_hot) -> recurrent (RNN, LSTM, GRU over bptt.cells)
    -> head (Linear) -> loss -> (optimizer -> training loop -> checkpoint -> sampling)
"""

from . import cells
from .encoding import Embedding, one_hot
from .gradcheck import GradcheckError, GradcheckResult, gradcheck
from .head import Linear
from .loss import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    bce_with_logits_backward,
    bce_with_logits_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
)
from .model import CharModel, ModelConfig
from .module import Module, Sequential, cast_inputs, no_grad
from .optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    clip_grad_norm,
    clip_grad_norm_,
    clip_grad_value,
    clip_grad_value_,
)
from .recurrent import GRU, LSTM, RNN
from .step_cells import GRUCell, LSTMCell, RNNCell

__version__ = "0.1.0"

__all__ = [
    "Module", "Sequential", "no_grad", "cast_inputs",
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Embedding", "Linear", "one_hot", "cells",
    "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss",
    "cross_entropy_forward", "cross_entropy_backward", "mse_forward", "mse_backward",
    "bce_with_logits_forward", "bce_with_logits_backward",
    "gradcheck", "GradcheckResult", "GradcheckError", "CharModel", "ModelConfig",
    "SGD", "Adagrad", "RMSprop", "Adam", "AdamW",
    "clip_grad_norm", "clip_grad_norm_", "clip_grad_value", "clip_grad_value_",
]
