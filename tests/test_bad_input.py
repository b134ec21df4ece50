"""Bad input to the layers raises ValueError or TypeError naming what was expected and what came."""

import numpy as np
import pytest

import bptt


def test_wrong_input_width():
    with pytest.raises(ValueError, match=r"5 features .*got shape \(4, 2, 3\)"):
        bptt.LSTM(5, 4).forward(np.zeros((4, 2, 3)))


def test_wrong_input_rank():
    with pytest.raises(ValueError, match=r"3-D .* got shape \(3,\)"):
        bptt.GRU(3, 4).forward(np.zeros(3))


def test_wrong_state_shape():
    layer = bptt.RNN(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"initial state must have shape \(2, 5, 4\), got \(1, 5, 4\)"):
        layer.forward(np.zeros((6, 5, 3), np.float32), np.zeros((1, 5, 4), np.float32))


def test_lstm_state_must_be_a_pair():
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        bptt.LSTM(3, 4).forward(np.zeros((6, 5, 3), np.float32), np.zeros((1, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"initial state\[1\] must have shape \(1, 5, 4\)"):
        bptt.LSTM(3, 4).forward(np.zeros((6, 5, 3), np.float32), (np.zeros((1, 5, 4), np.float32), np.zeros((1, 4), np.float32)))


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match=r"floating-point .* got dtype int64"):
        bptt.RNN(3, 4).forward(np.zeros((2, 1, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="floating-point"):
        bptt.Linear(3, 4).forward(np.zeros((2, 3), dtype=bool))


def test_load_state_dict_unknown_missing_and_misshaped_keys():
    layer = bptt.GRU(3, 4)
    sd = layer.state_dict()
    sd["weight_ih_l1"] = sd.pop("weight_ih_l0")
    with pytest.raises(ValueError, match=r"missing \['weight_ih_l0'\], unexpected \['weight_ih_l1'\]"):
        layer.load_state_dict(sd)
    sd = layer.state_dict()
    sd["weight_hh_l0"] = np.zeros((12, 5))
    with pytest.raises(ValueError, match=r"weight_hh_l0 must have shape \(12, 4\), got \(12, 5\)"):
        layer.load_state_dict(sd)
    before = layer.state_dict()
    sd = layer.state_dict()
    sd["bias_hh_l0"] = np.zeros(3)
    sd["weight_ih_l0"] = np.ones((12, 3))
    with pytest.raises(ValueError):
        layer.load_state_dict(sd)
    for k in before:  # a failed load changes nothing
        np.testing.assert_array_equal(layer.params[k], before[k])


def test_backward_before_forward():
    for layer in (bptt.RNN(3, 4), bptt.LSTM(3, 4), bptt.GRU(3, 4), bptt.Linear(3, 4)):
        with pytest.raises(RuntimeError, match=f"{type(layer).__name__}.backward has no forward to go with"):
            layer.backward(np.zeros((2, 1, 4)))
    with pytest.raises(RuntimeError, match="Embedding.backward has no forward to go with"):
        bptt.Embedding(3, 4).backward(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="CrossEntropyLoss.backward has no forward to go with"):
        bptt.CrossEntropyLoss().backward()


def test_gradient_of_the_wrong_shape():
    layer = bptt.LSTM(3, 4, bidirectional=True)
    layer.forward(np.zeros((6, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dout must have shape \(6, 2, 8\), got \(6, 2, 4\)"):
        layer.backward(np.zeros((6, 2, 4)))
    with pytest.raises(ValueError, match=r"final-state gradient\[0\] must have shape \(2, 2, 4\)"):
        layer.backward(np.zeros((6, 2, 8)), (np.zeros((1, 2, 4)), None))
    lin = bptt.Linear(3, 4)
    lin.forward(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 4\)"):
        lin.backward(np.zeros((5, 3)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        bptt.LSTM(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        bptt.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="nonlinearity"):
        bptt.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        bptt.RNN(3, 4, dtype="int32")


def test_loss_bad_input():
    with pytest.raises(ValueError, match=r"targets must have shape \(4, 2\), got \(4, 3\)"):
        bptt.cross_entropy_forward(np.zeros((4, 2, 5)), np.zeros((4, 3), dtype=int))
    with pytest.raises(TypeError, match=r"targets are floats of shape \(4,\): class indices must be integers, "
                                        r"class probabilities of shape \(4, 5\)"):
        bptt.cross_entropy_forward(np.zeros((4, 5)), np.zeros(4))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 5\)"):
        bptt.cross_entropy_forward(np.zeros((2, 5)), np.array([1, 5]))
    with pytest.raises(ValueError, match="indices must lie in"):
        bptt.Embedding(3, 2).forward(np.array([0, 3]))
    with pytest.raises(TypeError, match="indices must be an integer array"):
        bptt.Embedding(3, 2).forward(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="mask"):
        bptt.mse_forward(np.zeros((3, 2)), np.zeros((3, 2)), mask=np.ones(4))
