"""ONNX export: a trained model as a graph of standard ONNX operators, for runtimes where neither
bptt nor PyTorch is installed (ONNX Runtime in a C++ service, on a phone, in a browser).

    to_onnx(model, path, vocab=None)    a CharModel or an RNN / LSTM / GRU layer -> path
    build_onnx(model, vocab=None)       the same as an in-memory onnx.ModelProto

The graphs (opset 17, float32, T and B dynamic):

    CharModel   ids (T, B) int64 [, h0 (L*K, B, H) [, c0]]  ->  logits (T, B, V), h_n [, c_n]
                Gather (embedding) -> one ONNX RNN/LSTM/GRU node per layer -> MatMul + Add (head)
    RNN/LSTM/GRU  x (T, B, D) [(B, T, D) if batch_first] [, h0 [, c0]]
                ->  out (T, B, K*H) [(B, T, K*H)], h_n [, c_n]

``h0``/``c0`` are optional in the ONNX sense: each graph input has an initializer of the same name
(zeros of shape (L*K, 1, H)), which the ONNX IR defines as the input's default value, and the
graph expands it to the batch. Leave them out of the feed for a zero initial state; feed the
previous call's ``h_n``/``c_n`` to carry the state on.

Orders differ from PyTorch's and are converted here: ONNX's LSTM gates are i, o, f, c (torch
i, f, g, o); its GRU gates are z, r, h (torch r, z, n), and PyTorch's GRU, which applies r after
the recurrent product and its bias, is ONNX's ``linear_before_reset=1``. ONNX's bias ``B`` is
[input bias, recurrent bias] per direction; its output ``Y`` is (T, K, B, H), transposed and
reshaped to (T, B, K*H) for the next layer and the head (forward half first, as in PyTorch).

The model's arguments (and a character model's vocabulary) go into ``metadata_props`` as JSON
under the keys ``model`` and ``vocab``. ``onnx`` is imported only here (``pip install 'bptt[onnx]'``).

Dimensions: T time, B batch, D input, E embedding, H hidden, V vocabulary, L layers,
K directions, G gates.
"""

import json
import os

import numpy as np

OPSET = 17
IR_VERSION = 8  # the IR that opset 17 came with: runtimes from 2022 on read it

# ONNX's gate blocks as indices into torch's: LSTM torch (i, f, g, o) -> ONNX (i, o, f, c);
# GRU torch (r, z, n) -> ONNX (z, r, h); RNN has one block
GATE_ORDER = {"RNN": (0,), "LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2)}


class ExportError(ValueError):
    """A model that cannot be exported; the message is one line."""


def require_onnx():
    """-> the onnx module, or ModuleNotFoundError with the command that installs it."""
    try:
        import onnx
    except ImportError:
        raise ModuleNotFoundError(
            "ONNX export needs the onnx package, which is not installed: pip install 'bptt[onnx]'"
        ) from None
    return onnx


# ----------------------------------------------------------------------------- weights (pure)
def reorder_gates(w, order):
    """w (G*H, ...) with gate blocks in torch's order -> the blocks in ``order`` (ONNX's)."""
    blocks = np.split(np.asarray(w), len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def onnx_layer_weights(params, kind, k, num_directions, bias=True):
    """Layer k of a torch-named parameter dict -> ONNX's W (K, G*H, D), R (K, G*H, H) and
    B (K, 2*G*H) = [bias_ih, bias_hh] per direction (None without bias), float32."""
    order = GATE_ORDER[kind]
    Ws, Rs, Bs = [], [], []
    for d in range(num_directions):
        s = f"_l{k}" + ("_reverse" if d == 1 else "")
        Ws.append(reorder_gates(params[f"weight_ih{s}"], order))
        Rs.append(reorder_gates(params[f"weight_hh{s}"], order))
        if bias:
            Bs.append(np.concatenate([reorder_gates(params[f"bias_ih{s}"], order),
                                      reorder_gates(params[f"bias_hh{s}"], order)]))
    f32 = lambda arrays: np.stack(arrays).astype(np.float32)  # noqa: E731
    return f32(Ws), f32(Rs), (f32(Bs) if bias else None)


# ----------------------------------------------------------------------------- graph builder
class _Graph:
    """Nodes, initializers, inputs and outputs of one ONNX graph, with generated names."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self._n = 0

    def name(self, base):
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base, array):
        name = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, n_out=1, name=None, outputs=None, **attrs):
        outputs = outputs or [self.name(f"{name or op.lower()}_out{i}") for i in range(n_out)]
        self.nodes.append(self.h.make_node(op, inputs, outputs, name=self.name(name or op), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def input(self, name, elem_type, shape):
        self.inputs.append(self.h.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name, elem_type, shape):
        self.outputs.append(self.h.make_tensor_value_info(name, elem_type, shape))

    def optional_state(self, name, n, H, batch):
        """Graph input ``name`` (n, B, H) whose default (an initializer of the same name) is
        zeros (n, 1, H); -> the name of it expanded to (n, B, H). ``batch``: a (1,) int64 tensor."""
        self.input(name, self.onnx.TensorProto.FLOAT, [n, "batch", H])
        self.inits.append(self.onnx.numpy_helper.from_array(np.zeros((n, 1, H), np.float32), name))
        shape = self.node("Concat", [self.const("n", np.array([n], np.int64)), batch,
                                     self.const("H", np.array([H], np.int64))], axis=0)
        return self.node("Expand", [name, shape], name=f"{name}_to_batch")

    def model(self, graph_name, metadata):
        h = self.h
        graph = h.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.inits)
        m = h.make_model(graph, producer_name="bptt", opset_imports=[h.make_opsetid("", OPSET)])
        m.ir_version = IR_VERSION
        h.set_model_props(m, {k: json.dumps(v, ensure_ascii=False) for k, v in metadata.items()})
        return m


def layer_kind(layer):
    """'RNN' | 'LSTM' | 'GRU': the ONNX operator of a bptt recurrent layer (subclasses included)."""
    from .recurrent import GRU, LSTM, RNN

    for cls in (RNN, LSTM, GRU):
        if isinstance(layer, cls):
            return cls.__name__
    raise ExportError(f"{type(layer).__name__} is not an RNN, LSTM or GRU layer")


def recurrent_nodes(g, layer, x, batch, prefix="rnn", seq_lens="", initial_states=True, state_names=("h_n", "c_n")):
    """Add ``layer``'s stack to graph g: x (T, B, D) -> (out (T, B, K*H), final-state names).

    With ``initial_states`` the graph inputs ``h0`` (and ``c0``) (L*K, B, H) are added as
    optional inputs (else the states start at zero); the final states are (L*K, B, H) under the
    names ``h_n`` (and ``c_n``), index k*K + direction. ``seq_lens``: the name of a (B,) int32
    tensor of lengths, given to every layer (ONNX's ``sequence_lens``), or "" for full length;
    ``state_names``: the names of the final states."""
    kind, L, K, H = layer_kind(layer), layer.num_layers, layer.num_directions, layer.hidden_size
    n_states = 2 if kind == "LSTM" else 1
    states0 = ([g.optional_state(s, L * K, H, batch) for s in ("h0", "c0")[:n_states]]
               if initial_states else [])
    attrs = {"hidden_size": H, "direction": "bidirectional" if K == 2 else "forward"}
    if kind == "GRU":
        attrs["linear_before_reset"] = 1
    if kind == "RNN":
        attrs["activations"] = [layer.cell_kwargs.get("nonlinearity", "tanh").capitalize()] * K
    finals = [[] for _ in range(n_states)]
    for k in range(L):
        W, R, B = onnx_layer_weights(layer.params, kind, k, K, layer.bias)
        lk = f"{prefix}_l{k}"
        inits = [s if L == 1 else g.node(  # this layer's (K, B, H) slice of the stacked states
            "Slice", [s, g.const("start", np.array([k * K], np.int64)),
                      g.const("end", np.array([(k + 1) * K], np.int64)),
                      g.const("axis", np.array([0], np.int64))]) for s in states0]
        ins = [x, g.const(f"{lk}_W", W), g.const(f"{lk}_R", R),
               g.const(f"{lk}_B", B) if B is not None else "", seq_lens] + inits
        Y, *states = g.node(kind, ins, n_out=1 + n_states, name=lk, **attrs)
        # Y (T, K, B, H) -> (T, B, K, H) -> (T, B, K*H): the forward half first, as in torch
        Yt = g.node("Transpose", [Y], perm=[0, 2, 1, 3])
        x = g.node("Reshape", [Yt, g.const("shape", np.array([0, 0, K * H], np.int64))])
        for f, s in zip(finals, states):
            f.append(s)
    names = tuple(state_names)[:n_states]
    for f, name in zip(finals, names):
        g.node("Concat", f, outputs=[name], axis=0) if L > 1 else g.node("Identity", f, outputs=[name])
    return x, list(names)


def _batch_of(g, x, axis):
    """The size of axis ``axis`` of tensor x, as a (1,) int64 tensor."""
    return g.node("Shape", [x], start=axis, end=axis + 1)


# ----------------------------------------------------------------------------- per model kind
def _layer_args(layer):
    args = {"class": layer_kind(layer), "input_size": layer.input_size,
            "hidden_size": layer.hidden_size, "num_layers": layer.num_layers, "bias": layer.bias,
            "batch_first": layer.batch_first, "bidirectional": layer.bidirectional}
    return {**args, **layer.cell_kwargs}


def _layer_graph(g, layer, vocab):
    """An RNN / LSTM / GRU layer: x [, h0 [, c0]] -> out, h_n [, c_n]."""
    if vocab is not None:
        raise ExportError("a vocabulary belongs to a character model, not to a recurrent layer")
    F = g.onnx.TensorProto.FLOAT
    KH, LK, H = layer.num_directions * layer.hidden_size, layer.num_layers * layer.num_directions, layer.hidden_size
    if layer.batch_first:
        g.input("x", F, ["batch", "time", layer.input_size])
        x = g.node("Transpose", ["x"], perm=[1, 0, 2])  # (T, B, D)
    else:
        x = g.input("x", F, ["time", "batch", layer.input_size])
    out, states = recurrent_nodes(g, layer, x, _batch_of(g, x, 1))
    if layer.batch_first:
        g.node("Transpose", [out], outputs=["out"], perm=[1, 0, 2])
        g.output("out", F, ["batch", "time", KH])
    else:
        g.node("Identity", [out], outputs=["out"])
        g.output("out", F, ["time", "batch", KH])
    for s in states:
        g.output(s, F, [LK, "batch", H])
    return {"model": _layer_args(layer)}


def _char_model_graph(g, model, vocab):
    """A CharModel: ids [, h0 [, c0]] -> logits, h_n [, c_n]."""
    c, P = model.config, model.params
    chars = None if vocab is None else list(getattr(vocab, "chars", vocab))
    if chars is not None and len(chars) != c.vocab_size:
        raise ExportError(f"the vocabulary has {len(chars)} characters but the model was built for {c.vocab_size}")
    F = g.onnx.TensorProto.FLOAT
    ids = g.input("ids", g.onnx.TensorProto.INT64, ["time", "batch"])
    x = g.node("Gather", [g.const("embedding", P["embedding.weight"].astype(np.float32)), ids],
               name="embedding", axis=0)  # (T, B, E)
    out, states = recurrent_nodes(g, model.rnn, x, _batch_of(g, ids, 1))  # (T, B, H)
    W = g.const("head_weight_T", np.ascontiguousarray(P["head.weight"].T, np.float32))  # (H, V)
    y = g.node("MatMul", [out, W], name="head_matmul")
    g.node("Add", [y, g.const("head_bias", P["head.bias"].astype(np.float32))], outputs=["logits"], name="head_bias")
    g.output("logits", F, ["time", "batch", c.vocab_size])
    for s in states:
        g.output(s, F, [c.num_layers, "batch", c.hidden_size])
    meta = {"model": {"class": "CharModel", **c.to_dict()}}
    if chars is not None:
        meta["vocab"] = chars
    return meta


def _classifier_graph(g, model, vocab, norm=None):
    """A SequenceClassifier, an EnsembleClassifier of them, a RotationTTA of either, or a
    ProbabilityMean of those: series (T, B, D) float32, sequence_lens (B,) int32 -> logits (B, C).

    In the graph, as in ``bptt predict``: with diff, the first differences appended as D more
    features (0 at t = 0); standardise with the checkpoint's statistics (a ProbabilityMean with
    norms: each part with its own, with diff or not; a missing
    value, NaN, becomes 0), zero every step at or past each series' length, K consecutive steps
    as one (patch K: pad T to a multiple of K, (T/K, B, K*D), lengths ceil(len/K)), the recurrent
    stack with ``sequence_lens``, the top layer's final states (pool last) or its outputs averaged
    over the valid steps (pool mean), their max over the valid steps (pool max), both side by
    side (pool meanmax), or weighted by the softmax over the valid steps of out . w (pool attn),
    then the Linear head; an ensemble: each member so, then the log of the members' mean
    softmax. A RotationTTA (--tta R): its R rotated copies of each series side by side in the
    batch, the log of the mean of their probabilities. A ProbabilityMean (--patch auto's mix):
    each part's probability so (its own patch), the log of their mean. ``vocab``: the class
    labels."""
    from .classify import ProbabilityMean

    onnx = g.onnx
    F = onnx.TensorProto.FLOAT
    parts = model.parts if isinstance(model, ProbabilityMean) else [model]
    # one standardisation for all the parts, or (a ProbabilityMean with norms) each part its own
    norms = model.norms if isinstance(model, ProbabilityMean) and model.norms else [norm] * len(parts)
    C = parts[0].num_classes
    F2 = [2 if n is not None and n.diff else 1 for n in norms]  # features per value: itself (and its difference)
    Ds = {_input_size(_unwrap(p)[0]) // f for p, f in zip(parts, F2)}
    if len(Ds) > 1:
        raise ExportError(f"the classifiers of a ProbabilityMean read different numbers of features: {sorted(Ds)}")
    D = Ds.pop()
    classes = list(vocab) if vocab is not None else [str(c) for c in range(C)]
    if len(classes) != C:
        raise ExportError(f"{len(classes)} class labels given for a model of {C} classes")
    if norm is None:
        raise ExportError("a classifier is exported with its run's standardisation (the checkpoint's "
                          "statistics): export the run with bptt export RUN --onnx FILE")
    x = g.input("series", F, ["time", "batch", D])
    lens = g.input("sequence_lens", onnx.TensorProto.INT32, ["batch"])
    lens64 = g.node("Cast", [lens], to=onnx.TensorProto.INT64)
    zs = {}  # the standardised series (T, B, F2*D) of each distinct standardisation

    def standardised(n):
        if id(n) not in zs:
            f = 2 if n.diff else 1
            mean, std = (np.asarray(a, np.float32).reshape(f * D) for a in (n.mean, n.std))
            feats = _diff_nodes(g, x) if n.diff else x  # (T, B, f*D)
            z = g.node("Div", [g.node("Sub", [feats, g.const("norm_mean", mean)]), g.const("norm_std", std)])
            z = g.node("Where", [g.node("IsNaN", [z]), g.const("zero", np.array(0.0, np.float32)), z])
            zs[id(n)] = g.node("Mul", [z, _step_mask(g, z, lens64)])  # zero past each length
        return zs[id(n)]

    inner, R = _unwrap(parts[0])
    if len(parts) == 1 and R == 1:
        logits = _classifier_nodes(g, inner, standardised(norms[0]), lens64, F2[0] * D)
        if len(logits) == 1:
            g.node("Identity", logits, outputs=["logits"])
        else:
            g.node("Log", [_mean_softmax(g, logits)], outputs=["logits"])
    else:
        probs = [_part_probs(g, p, standardised(n), lens64, f * D, C, f"p{k}" if len(parts) > 1 else "")
                 for k, (p, n, f) in enumerate(zip(parts, norms, F2))]
        p = probs[0] if len(probs) == 1 else _mean_of(g, probs)
        g.node("Log", [p], outputs=["logits"])
    g.output("logits", F, ["batch", C])
    args = []
    for p, n in zip(parts, norms):
        inner, R = _unwrap(p)
        args.append({**_classifier_args(inner, D, C, n), **({"rotations": R} if R > 1 else {})})
    return {"model": args[0] if len(args) == 1 else {"class": "ProbabilityMean", "parts": args}, "classes": classes}


def _input_size(model):
    """A SequenceClassifier or EnsembleClassifier -> the features per time step it reads (before its patch)."""
    return getattr(model, "members", [model])[0].rnn.input_size // model.patch


def _unwrap(model):
    """A classifier -> (the SequenceClassifier or EnsembleClassifier, its rotations R: 1 unless a RotationTTA)."""
    from .classify import RotationTTA

    return (model.model, model.rotations) if isinstance(model, RotationTTA) else (model, 1)


def _part_probs(g, part, z, lens64, D, C, prefix):
    """One classifier (a RotationTTA: over its R rotations of each series) on the standardised z
    (T, B, D) -> its probability (B, C)."""
    inner, R = _unwrap(part)
    if R == 1:
        return _mean_softmax(g, _classifier_nodes(g, inner, z, lens64, D, prefix))
    zr, lr = _rotation_nodes(g, z, lens64, R)  # (T, R*B, D), (R*B,)
    p = _mean_softmax(g, _classifier_nodes(g, inner, zr, lr, D, prefix))  # (R*B, C)
    p = g.node("Reshape", [p, g.const("shape", np.array([R, -1, C], np.int64))])  # (R, B, C)
    return g.node("ReduceMean", [p], axes=[0], keepdims=0)


def _mean_of(g, probs):
    """Probabilities, each (B, C) -> their mean (B, C)."""
    axis0 = g.const("axis", np.array([0], np.int64))
    return g.node("ReduceMean", [g.node("Concat", [g.node("Unsqueeze", [p, axis0]) for p in probs], axis=0)],
                  axes=[0], keepdims=0)


def _classifier_args(model, D, C, norm):
    first = getattr(model, "members", [model])[0]
    return {"class": type(model).__name__, "cell": model.cell, "input_size": D, "num_classes": C,
            "hidden_size": first.rnn.hidden_size, "num_layers": first.rnn.num_layers,
            "bidirectional": first.rnn.bidirectional, "pool": model.pool, "patch": model.patch,
            "members": len(getattr(model, "members", [model])), "diff": bool(norm.diff)}


def _classifier_nodes(g, model, z, lens64, D, prefix=""):
    """One classifier (its patch, then each member) on the standardised z (T, B, D) -> the
    members' logits, each (B, C). prefix: before the members' names (the parts of a mean)."""
    if model.patch > 1:
        z, lens64 = _patch_nodes(g, z, lens64, model.patch, D)  # (T/K, B, K*D), ceil(len / K)
    seq_lens = g.node("Cast", [lens64], to=g.onnx.TensorProto.INT32)
    members = getattr(model, "members", [model])
    return [_member_nodes(g, m, z, lens64, seq_lens, f"{prefix}m{i}") for i, m in enumerate(members)]


def _mean_softmax(g, logits):
    """Members' logits, each (B, C) -> their mean softmax (B, C)."""
    probs = [g.node("Softmax", [v], axis=1) for v in logits]
    return probs[0] if len(probs) == 1 else _mean_of(g, probs)


def _rotation_nodes(g, z, lens64, R):
    """z (T, B, D) zero past each length -> its R rotations side by side, (T, R*B, D), and their
    lengths (R*B,): copy j holds each series rotated by r = round(j L / R) steps (halves to even,
    as ``classify.rotation_steps``): step t < L reads step (t - r) mod L, the padding stays."""
    onnx = g.onnx
    I64, F64 = onnx.TensorProto.INT64, onnx.TensorProto.DOUBLE
    T = g.node("Squeeze", [g.node("Shape", [z], start=0, end=1)])
    t = g.node("Unsqueeze", [g.node("Range", [g.const("t0", np.array(0, np.int64)), T,
                                              g.const("dt", np.array(1, np.int64))]),
                             g.const("axis", np.array([1], np.int64))])  # (T, 1)
    lens_f = g.node("Cast", [lens64], to=F64)
    copies = []
    for j in range(R):
        r = g.node("Cast", [g.node("Round", [g.node("Div", [g.node("Mul", [lens_f, g.const("j", np.array(float(j)))]),
                                                              g.const("R", np.array(float(R)))])])], to=I64)  # (B,)
        src = g.node("Mod", [g.node("Sub", [t, r]), lens64])  # (T, B): (t - r) mod L
        idx = g.node("Where", [g.node("Less", [t, lens64]), src, g.node("Expand", [t, g.node("Shape", [src])])])
        idx = g.node("Expand", [g.node("Unsqueeze", [idx, g.const("axis", np.array([2], np.int64))]),
                                g.node("Shape", [z])])  # (T, B, D)
        copies.append(g.node("GatherElements", [z, idx], axis=0))
    return g.node("Concat", copies, axis=1), g.node("Concat", [lens64] * R, axis=0)


def _member_nodes(g, model, z, lens64, seq_lens, prefix):
    """One SequenceClassifier's recurrent stack, pooling and head on z (T, B, K*D) -> (B, C)."""
    rnn, P = model.rnn, model.params
    out, states = recurrent_nodes(g, rnn, z, _batch_of(g, z, 1), prefix=f"{prefix}_rnn", seq_lens=seq_lens,
                                  initial_states=False, state_names=(f"{prefix}_h_n", f"{prefix}_c_n"))
    nd, H = rnn.num_directions, rnn.hidden_size
    if model.pool == "last":
        top = g.node("Slice", [states[0], g.const("start", np.array([-nd], np.int64)),
                               g.const("end", np.array([rnn.num_layers * nd], np.int64)),
                               g.const("axis", np.array([0], np.int64))])  # (K, B, H)
        feat = g.node("Reshape", [g.node("Transpose", [top], perm=[1, 0, 2]),
                                  g.const("shape", np.array([0, nd * H], np.int64))])  # (B, K*H)
    else:
        mask = _step_mask(g, out, lens64)  # (T, B, 1)
        feats = []
        if model.pool in ("mean", "meanmax"):
            summed = g.node("ReduceSum", [g.node("Mul", [out, mask]),
                                          g.const("axis", np.array([0], np.int64))], keepdims=0)  # (B, K*H)
            count = g.node("Unsqueeze", [g.node("Cast", [lens64], to=g.onnx.TensorProto.FLOAT),
                                         g.const("axis", np.array([1], np.int64))])
            feats.append(g.node("Div", [summed, count]))
        if model.pool in ("max", "meanmax"):  # padded steps at -inf never win
            valid = g.node("Cast", [mask], to=g.onnx.TensorProto.BOOL)
            masked = g.node("Where", [valid, out, g.const("minus_inf", np.array(-np.inf, np.float32))])
            feats.append(g.node("ReduceMax", [masked], axes=[0], keepdims=0))  # (B, K*H)
        if model.pool == "attn":  # softmax over the valid steps of out . w, then the weighted sum
            w = g.const(f"{prefix}_attn_weight", P["attn.weight"].astype(np.float32).reshape(-1, 1))  # (K*H, 1)
            score = g.node("MatMul", [out, w])  # (T, B, 1)
            valid = g.node("Cast", [mask], to=g.onnx.TensorProto.BOOL)
            score = g.node("Where", [valid, score, g.const("minus_inf", np.array(-np.inf, np.float32))])
            a = g.node("Softmax", [score], axis=0)  # (T, B, 1), 0 past each length
            feats.append(g.node("ReduceSum", [g.node("Mul", [a, out]), g.const("axis", np.array([0], np.int64))],
                                keepdims=0))  # (B, K*H)
        feat = feats[0] if len(feats) == 1 else g.node("Concat", feats, axis=1)  # meanmax (B, 2*K*H)
    W = g.const(f"{prefix}_head_weight_T", np.ascontiguousarray(P["head.weight"].T, np.float32))  # (K*H, C)
    y = g.node("MatMul", [feat, W], name=f"{prefix}_head_matmul")
    return g.node("Add", [y, g.const(f"{prefix}_head_bias", P["head.bias"].astype(np.float32))], name=f"{prefix}_head_bias")


def _diff_nodes(g, x):
    """x (T, B, D) -> (T, B, 2D): x, then x[t] - x[t-1] (0 at t = 0), as ``classify.with_diff``."""
    c = lambda base, v: g.const(base, np.array(v, np.int64))  # noqa: E731
    prev = g.node("Slice", [x, c("start", [0]), c("end", [-1]), c("axis", [0])])  # (T-1, B, D)
    later = g.node("Slice", [x, c("start", [1]), c("end", [2 ** 62]), c("axis", [0])])  # (T-1, B, D)
    first = g.node("ConstantOfShape", [g.node("Shape", [g.node("Slice", [x, c("start", [0]), c("end", [1]),
                                                                          c("axis", [0])])])])  # (1, B, D) zeros
    d = g.node("Concat", [first, g.node("Sub", [later, prev])], axis=0)  # (T, B, D)
    return g.node("Concat", [x, d], axis=2)


def _step_mask(g, x, lens64):
    """(T, B, 1) float32: 1 where t < length of series b, for x (T, B, ...)."""
    T = g.node("Squeeze", [g.node("Shape", [x], start=0, end=1)])
    t = g.node("Range", [g.const("t0", np.array(0, np.int64)), T, g.const("dt", np.array(1, np.int64))])
    valid = g.node("Less", [g.node("Unsqueeze", [t, g.const("axis", np.array([1], np.int64))]), lens64])  # (T, B)
    return g.node("Unsqueeze", [g.node("Cast", [valid], to=g.onnx.TensorProto.FLOAT),
                                g.const("axis", np.array([2], np.int64))])


def _patch_nodes(g, z, lens64, K, D):
    """z (T, B, D) -> (ceil(T/K), B, K*D) (zeros appended to a multiple of K), lens -> ceil(lens/K)."""
    c = lambda base, v: g.const(base, np.array(v, np.int64))  # noqa: E731
    T = g.node("Shape", [z], start=0, end=1)  # (1,)
    extra = g.node("Mod", [g.node("Sub", [c("K", [K]), g.node("Mod", [T, c("K", [K])])]), c("K", [K])])
    pads = g.node("Concat", [c("zeros", [0, 0, 0]), extra, c("zeros", [0, 0])], axis=0)  # (6,)
    z = g.node("Pad", [z, pads])  # (T', B, D), T' a multiple of K
    shape = g.node("Concat", [c("m1", [-1, K]), _batch_of(g, z, 1), c("D", [D])], axis=0)
    z = g.node("Transpose", [g.node("Reshape", [z, shape])], perm=[0, 2, 1, 3])  # (T'/K, B, K, D)
    z = g.node("Reshape", [z, c("shape", [0, 0, K * D])])
    lens64 = g.node("Div", [g.node("Add", [lens64, c("Km1", K - 1)]), c("K", K)])
    return z, lens64


def _exporter(model):
    """The graph builder for this kind of model. A new kind is one function
    ``(graph, model, vocab) -> metadata`` and one line here."""
    from .classify import EnsembleClassifier, ProbabilityMean, RotationTTA, SequenceClassifier
    from .model import CharModel
    from .recurrent import GRU, LSTM, RNN

    if isinstance(model, CharModel):
        return _char_model_graph
    if isinstance(model, (SequenceClassifier, EnsembleClassifier, RotationTTA, ProbabilityMean)):
        return _classifier_graph
    if isinstance(model, (RNN, LSTM, GRU)):
        return _layer_graph
    raise ExportError(f"cannot export a {type(model).__name__} to ONNX: "
                      "supported are CharModel, SequenceClassifier and RNN, LSTM, GRU layers")


# ----------------------------------------------------------------------------- entry points
def build_onnx(model, vocab=None, norm=None):
    """-> an ``onnx.ModelProto`` (checked with ``onnx.checker``) computing ``model``'s forward
    in float32. vocab: a ``bptt.data.Vocab`` or list of characters (a classifier: its class
    labels), stored in the metadata; norm: a classifier's ``Standardizer``."""
    build = _exporter(model)
    onnx = require_onnx()
    g = _Graph(onnx)
    if norm is not None and build is not _classifier_graph:
        raise ExportError("standardisation statistics belong to a sequence classifier")
    meta = build(g, model, vocab, norm) if build is _classifier_graph else build(g, model, vocab)
    m = g.model(f"bptt_{type(model).__name__}", meta)
    onnx.checker.check_model(m, full_check=True)
    return m


def to_onnx(model, path, vocab=None, norm=None):
    """Write ``model`` (a CharModel, a SequenceClassifier with its ``norm``, or an RNN / LSTM /
    GRU layer) to ``path`` as ONNX; the file is written under a temporary name and renamed, so a
    failure leaves no half file. -> path."""
    data = build_onnx(model, vocab, norm).SerializeToString()
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise OSError(e.errno, e.strerror or str(e), path) from None
    return path
