"""Pictures of the inside of a network: the gradient-norm numbers against direct computations,
the expected behaviour of RNN / LSTM / GRU at initialisation, the images (headless PNGs of the
expected size), the HTML page in headless Chromium, and the commands end to end."""

import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

import bptt
from bptt import inspect, plots
from bptt.cli import main
from bptt.model import CharModel, ModelConfig


def png_size(path):
    """(width, height) from the PNG header; also checks it is a PNG at all."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------- exact numbers
def test_linear_rnn_gradient_norms_match_the_closed_form():
    """h_t = W_ih x_t + b + s Q h_{t-1}, Q orthogonal: dL/dh_t = v^T (sQ)^(T-t), whose norm is
    exactly s^(T-t) |v| whatever the inputs."""
    rng = np.random.default_rng(0)
    T, B, D, H = 40, 2, 3, 6
    Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    v = rng.standard_normal(H)
    x = rng.standard_normal((T, B, D))
    for s in (0.8, 1.0, 1.25):
        params = {"weight_ih": rng.standard_normal((H, D)), "weight_hh": s * Q,
                  "bias_ih": rng.standard_normal(H), "bias_hh": rng.standard_normal(H)}
        norms = inspect.gradient_norms("rnn", params, x, v, nonlinearity="linear")["h"]
        expected = s ** np.arange(T + 1) * np.linalg.norm(v)
        np.testing.assert_allclose(norms, expected, rtol=1e-10, atol=0)
    # and with zero input weights and biases and h0 = 0, as the issue puts it
    params = {"weight_ih": np.zeros((H, D)), "weight_hh": 0.9 * Q}
    norms = inspect.gradient_norms("rnn", params, x, v, nonlinearity="linear")["h"]
    np.testing.assert_allclose(norms, 0.9 ** np.arange(T + 1) * np.linalg.norm(v), rtol=1e-10, atol=0)


def _rnn_step(x, h, p, relu=False):
    a = p["weight_ih"] @ x + p["bias_ih"] + p["weight_hh"] @ h + p["bias_hh"]
    h_new = np.maximum(a, 0) if relu else np.tanh(a)
    d = (a > 0).astype(float) if relu else 1 - np.tanh(a) ** 2
    return h_new, d[:, None] * p["weight_hh"]  # J = dh_t/dh_{t-1} (H, H)


def _lstm_step(x, state, p):
    h, c = state
    H = h.size
    z = p["weight_ih"] @ x + p["bias_ih"] + p["weight_hh"] @ h + p["bias_hh"]
    i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
    W = p["weight_hh"]
    Wi, Wf, Wg, Wo = W[:H], W[H:2 * H], W[2 * H:3 * H], W[3 * H:]
    c_new = f * c + i * g
    # dc_t/dh_{t-1}, dc_t/dc_{t-1}, dh_t/dh_{t-1}, dh_t/dc_{t-1}: the full (2H, 2H) Jacobian
    dc_dh = (c * f * (1 - f))[:, None] * Wf + (g * i * (1 - i))[:, None] * Wi + (i * (1 - g ** 2))[:, None] * Wg
    dc_dc = np.diag(f)
    tc = np.tanh(c_new)
    dh_dh = (tc * o * (1 - o))[:, None] * Wo + (o * (1 - tc ** 2))[:, None] * dc_dh
    dh_dc = (o * (1 - tc ** 2))[:, None] * dc_dc
    J = np.block([[dh_dh, dh_dc], [dc_dh, dc_dc]])
    return (o * tc, c_new), J, o * (1 - tc ** 2)  # last: dh_t/dc_t (diagonal)


def _gru_step(x, h, p):
    H = h.size
    gx = p["weight_ih"] @ x + p["bias_ih"]
    gh = p["weight_hh"] @ h + p["bias_hh"]
    W = p["weight_hh"]
    r = sigmoid(gx[:H] + gh[:H])
    z = sigmoid(gx[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gx[2 * H:] + r * gh[2 * H:])
    dr = (r * (1 - r))[:, None] * W[:H]
    dz = (z * (1 - z))[:, None] * W[H:2 * H]
    dn = (1 - n ** 2)[:, None] * (r[:, None] * W[2 * H:] + gh[2 * H:][:, None] * dr)
    J = (1 - z)[:, None] * dn + np.diag(z) + (h - n)[:, None] * dz
    return (1 - z) * n + z * h, J


def _direct(kind, params, x, v, state0):
    """dL/dh_t (and total dL/dc_t) for every t from explicit Jacobian products, one sequence."""
    T = x.shape[0]
    H = v.size
    state, jacs, dhdc = state0, [], []
    for t in range(T):
        if kind == "lstm":
            state, J, d = _lstm_step(x[t], state, params)
            dhdc.append(d)
        elif kind == "gru":
            state, J = _gru_step(x[t], state, params)
        else:
            state, J = _rnn_step(x[t], state, params, relu=kind == "rnn_relu")
        jacs.append(J)
    g = np.concatenate([v, np.zeros(H)]) if kind == "lstm" else v.copy()  # on the state at T
    gh, gc = np.empty((T + 1, H)), np.empty((T + 1, H))
    for t in range(T, -1, -1):
        if t < T:
            g = g @ jacs[t]  # jacs[t] is d state_{t+1} / d state_t
        gh[t] = g[:H]
        if kind == "lstm":  # the total derivative on c_t adds the path through h_t = o tanh(c_t)
            gc[t] = g[H:] + (g[:H] * dhdc[t - 1] if t >= 1 else 0.0)
    return gh, gc


@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "lstm", "gru"])
def test_state_gradients_equal_explicit_jacobian_products(kind):
    rng = np.random.default_rng(1)
    T, B, D, H = 12, 2, 3, 4
    G = {"lstm": 4, "gru": 3}.get(kind, 1)
    params = {"weight_ih": rng.standard_normal((G * H, D)) * 0.8, "weight_hh": rng.standard_normal((G * H, H)) * 0.8,
              "bias_ih": rng.standard_normal(G * H) * 0.3, "bias_hh": rng.standard_normal(G * H) * 0.3}
    x = rng.standard_normal((T, B, D))
    v = rng.standard_normal(H)
    h0 = rng.standard_normal((B, H)) * 0.5
    c0 = rng.standard_normal((B, H)) * 0.5
    state0 = (h0, c0) if kind == "lstm" else h0
    grads = inspect.state_gradients(kind, params, x, v, state0)
    for b in range(B):
        s0 = (h0[b], c0[b]) if kind == "lstm" else h0[b]
        gh, gc = _direct(kind, params, x[:, b], v, s0)
        scale = np.abs(gh).max(axis=1, keepdims=True)
        assert np.all(np.abs(grads["h"][:, b] - gh) <= 1e-10 * scale)
        if kind == "lstm":
            scale = np.abs(gc).max(axis=1, keepdims=True)
            assert np.all(np.abs(grads["c"][:, b] - gc) <= 1e-10 * scale)
    norms = inspect.norms_by_lag(grads)
    assert norms["h"][0] == pytest.approx(np.linalg.norm(v))  # lag 0: dL/dh_T = v
    np.testing.assert_allclose(norms["h"], np.linalg.norm(grads["h"], axis=2).mean(axis=1)[::-1], rtol=1e-15)


def test_state_gradients_agree_with_the_layer_backward():
    """The gradient on h0 after T steps is what the fast layer backward gives for dh_T = v."""
    rng = np.random.default_rng(2)
    for kind, cls in (("rnn", bptt.RNN), ("lstm", bptt.LSTM), ("gru", bptt.GRU)):
        layer = cls(3, 5, dtype="float64", seed=3)
        x = rng.standard_normal((9, 2, 3))
        v = rng.standard_normal(5)
        out, _ = layer.forward(x)
        dhT = np.broadcast_to(v, (1, 2, 5)).copy()
        dstate = (dhT, np.zeros_like(dhT)) if kind == "lstm" else dhT
        _, ds0 = layer.backward(np.zeros_like(out), dstate)
        dh0 = ds0[0] if kind == "lstm" else ds0
        g = inspect.state_gradients(kind, layer._cell_params(0, 0), x, v)
        np.testing.assert_allclose(g["h"][0], dh0[0], rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("seed", [0, 1])
def test_rnn_gradient_vanishes_orders_of_magnitude_faster_than_lstm(seed):
    rnn = inspect.init_gradient_norms("rnn", hidden=64, seq_len=100, seed=seed)["h"]
    lstm = inspect.init_gradient_norms("lstm", hidden=64, seq_len=100, seed=seed)
    gru = inspect.init_gradient_norms("gru", hidden=64, seq_len=100, seed=seed)["h"]
    assert rnn[0] == lstm["h"][0] == gru[0]  # the same v for every cell
    assert rnn[50] < 1e-3 * lstm["c"][50]
    assert rnn[50] < 1e-3 * lstm["h"][50]
    assert rnn[50] < 1e-3 * gru[50]
    assert rnn[50] < 1e-10 * rnn[0]  # vanished


def test_scale_makes_the_rnn_gradient_explode():
    big = inspect.init_gradient_norms("rnn", hidden=64, seq_len=100, scale=4.0, seed=0)["h"]
    assert big[50] > 100 * big[0]
    assert big[100] > big[50] > big[10] > big[0]
    small = inspect.init_gradient_norms("rnn", hidden=64, seq_len=100, scale=1.0, seed=0)["h"]
    assert small[100] < small[0]


def test_gate_activations_match_the_layer_forward():
    for cell in ("lstm", "gru", "rnn"):
        model = CharModel(ModelConfig(7, cell, hidden_size=6, num_layers=2, embedding_dim=4),
                          dtype="float64", seed=4)
        ids = np.array([0, 3, 6, 2, 2, 5, 1])
        _, _ = model.forward(ids[:, None])
        out, _ = model.rnn.forward(model.embedding.forward(ids[:, None]))
        top = inspect.gate_activations(model, ids, layer=1)
        assert list(top) == list(inspect.GATE_NAMES[cell])
        np.testing.assert_allclose(top["h"], out[:, 0], rtol=1e-12, atol=1e-14)
        # layer 0 against the sequence cache of the fast path
        x = model.embedding.forward(ids[:, None]).astype(np.float64)
        params = model.rnn._cell_params(0, 0)
        g0 = inspect.gate_activations(model, ids, layer=0)
        if cell == "lstm":
            z = np.zeros((1, 6))
            _, _, cache = bptt.cells.lstm.forward(x, (z, z), params)
            gates = cache[3][:, 0]  # (T, 4H) activated i, f, g, o
            for k, name in enumerate("ifgo"):
                np.testing.assert_allclose(g0[name], gates[:, k * 6:(k + 1) * 6], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(g0["c"], cache[2][1:, 0], rtol=1e-12, atol=1e-14)
        elif cell == "gru":
            _, _, cache = bptt.cells.gru.forward(x, np.zeros((1, 6)), params)
            gates = cache[2][:, 0]  # (T, 3H) activated r, z, n
            for k, name in enumerate("rzn"):
                np.testing.assert_allclose(g0[name], gates[:, k * 6:(k + 1) * 6], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="layer must be in"):
        inspect.gate_activations(model, ids, layer=2)


def test_parse_units():
    assert inspect.parse_units("0,5,7", 8) == [0, 5, 7]
    assert inspect.parse_units("3-5,1", 8) == [1, 3, 4, 5]
    with pytest.raises(ValueError, match="out of range"):
        inspect.parse_units("9", 8)
    with pytest.raises(ValueError, match="integers"):
        inspect.parse_units("a", 8)


# ----------------------------------------------------------------------------- images
def test_gradflow_figure_is_a_png_of_the_expected_size(tmp_path):
    curves = [{"label": "a", "norms": np.array([1.0, 0.1, 0.0, 1e-3])},
              {"label": "b", "norms": np.array([1.0, 2.0, 4.0, 8.0]), "linestyle": "--"}]
    out = plots.gradflow_figure(curves, str(tmp_path / "g.png"))
    assert png_size(out) == (800, 500)
    assert os.path.getsize(out) > 10_000
    text = plots.lag_table(curves, [0, 2, 3])
    assert "1.000e+00" in text and "8.000e+00" in text and text.splitlines()[0].split() == ["lag", "a", "b"]


def test_gates_heatmap_size_follows_the_text(tmp_path):
    text = "to be or not to be\n"
    acts = {"i": np.random.default_rng(0).random((len(text), 5)),
            "c": np.random.default_rng(1).standard_normal((len(text), 5))}
    out = plots.gates_heatmap(text, acts, [0, 3], str(tmp_path / "h.png"))
    w, h = plots.heatmap_figsize(len(text), [2, 2])
    assert (w, h) == (6.0, 2.48)  # 19 characters: the minimum width; 0.9 + 2 * (2 * 0.22 + 0.35)
    assert png_size(out) == (600, 248)
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[:2] == (248, 600) and img[..., :3].std() > 0.05  # not blank


# ----------------------------------------------------------------------------- HTML in Chromium
def find_chromium():
    """A Chromium on PATH. Without one the test is skipped with the reason, unless
    BPTT_REQUIRE_BROWSER=1 (as ``.ci/run`` sets after installing Chromium): then it fails, so CI
    never skips it. Nothing is installed from here."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        reason = ("the HTML page test needs Chromium: no 'chromium' or 'chromium-browser' on PATH "
                  "(install it, e.g. apt-get install chromium; .ci/run does)")
        if os.environ.get("BPTT_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; BPTT_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    return exe


@pytest.fixture(scope="session")
def chromium():
    return find_chromium()


def test_without_chromium_the_page_test_skips_unless_required(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BPTT_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs Chromium: no 'chromium'"):
        find_chromium()
    monkeypatch.setenv("BPTT_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match=r"needs Chromium.*BPTT_REQUIRE_BROWSER=1 requires it"):
        find_chromium()
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_chromium() == str(fake)


def run_chromium(exe, url, tmp_path, *, screenshot=None, dump_dom=False):
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=800,600"]
    if screenshot:
        args.append(f"--screenshot={screenshot}")
    if dump_dom:
        args.append("--dump-dom")
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"chromium exited {r.returncode}: {r.stderr[-1500:]}"
    return r.stdout


def colour_counts(png):
    """(red, blue) pixel counts of a screenshot: red for positive, blue for negative."""
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    red = (r > 0.6) & (r - g > 0.3) & (r - b > 0.3)
    blue = (b > 0.45) & (b - r > 0.25) & (b - g > 0.1)
    return int(red.sum()), int(blue.sum())


def test_html_page_colours_the_text_in_headless_chromium(chromium, tmp_path):
    text = "The quick brown fox\njumps over the lazy dog. " * 2
    T = len(text)
    acts = {"h": np.stack([np.where(np.arange(T) < T // 2, 0.9, -0.9),  # unit 0: red then blue
                           np.full(T, 0.9), np.zeros(T)], axis=1),       # unit 1: all red; 2: white
            "f": np.tile(np.linspace(0, 1, T)[:, None], (1, 3))}
    page = tmp_path / "page.html"
    plots.write_text(str(page), plots.gates_html(text, acts, units=[0, 1], title="test <page> & co"))
    body = page.read_text(encoding="utf-8")
    assert "http://" not in body and "https://" not in body and "src=" not in body  # self-contained
    url = page.as_uri()

    def shoot(view):
        shot = tmp_path / f"{view}.png"
        run_chromium(chromium, f"{url}#{view}", tmp_path, screenshot=str(shot))
        assert png_size(shot) == (800, 600)
        return colour_counts(shot)

    # unit 2 is all zeros: white text, so what is red or blue there is the page's colour key
    key_red, key_blue = shoot("gate=h&unit=2")
    assert key_red < 2500 and key_blue < 2500  # at most the 160 x 14 pixel key
    red, blue = shoot("gate=h&unit=0")  # the default view is the same as this one
    red, blue = red - key_red, blue - key_blue  # the text alone
    assert red > 3000 and blue > 3000, (red, blue)
    assert shoot("")[0] - key_red == red
    red1, blue1 = shoot("gate=h&unit=1")  # the address chooses the view: all positive, all red
    assert red1 - key_red > 1.5 * red and blue1 - key_blue < 0.05 * blue, (red1, blue1)

    dom = run_chromium(chromium, url + "#gate=f&unit=0", tmp_path, dump_dom=True)
    assert 'data-ready="1"' in dom
    assert dom.count('class="ch') == T
    assert "rgba(214, 39, 40" in dom and "rgba(31, 119, 180" in dom  # f runs from 0 (blue) to 1 (red)
    assert "test &lt;page&gt; &amp; co" in dom
    assert '<option value="f">' in dom


def test_html_page_refuses_bad_input():
    with pytest.raises(ValueError, match="characters but the activations"):
        plots.gates_html("abc", {"h": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="NaN"):
        plots.gates_html("ab", {"h": np.array([[0.0], [np.nan]])})


# ----------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("viz")
    data = d / "tiny.txt"
    data.write_text("the cat sat on the mat. the dog sat on the log.\n" * 40, encoding="utf-8")
    out = d / "run"
    rc = main(["train", "--data", str(data), "--steps", "20", "--hidden", "16", "--layers", "1",
               "--seq-len", "8", "--batch", "2", "--out", str(out), "--quiet", "--eval-every", "10"])
    assert rc == 0
    return out


def test_training_writes_its_loss_plot(run_dir, tmp_path, monkeypatch):
    """The run's loss.png is the plot of its own metrics: its curves carry the logged losses at
    the logged steps (raw and smoothed), the validation points, and the picture is the one
    drawn from metrics.jsonl now, byte for byte."""
    assert png_size(run_dir / "loss.png") == (1000, 400)
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps, losses = [r["step"] for r in recs], [r["loss"] for r in recs]
    assert steps == list(range(1, 21)) and all(np.isfinite(losses))
    figs = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figs.append(fig), real_save(fig, out))[1])
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    os.remove(copy / "loss.png")
    plots.write_loss_plot(str(copy))
    assert (copy / "loss.png").read_bytes() == (run_dir / "loss.png").read_bytes()
    (ax_step, ax_time), = [figs[0].axes[:2]]
    raw, smoothed, val = ax_step.lines[:3]
    np.testing.assert_array_equal(raw.get_xdata(), steps)
    np.testing.assert_array_equal(raw.get_ydata(), losses)
    np.testing.assert_allclose(smoothed.get_ydata(), plots.smooth(np.array(losses)), rtol=0, atol=0)
    vals = [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r]
    assert [s for s, _ in vals] == [10, 20]
    np.testing.assert_array_equal(val.get_xdata(), [s for s, _ in vals])
    np.testing.assert_array_equal(val.get_ydata(), [v for _, v in vals])
    np.testing.assert_array_equal(ax_time.lines[0].get_ydata(), losses)


def test_cli_plot(run_dir, tmp_path, capsys):
    out = tmp_path / "runs.png"
    assert main(["plot", str(run_dir), str(run_dir), "--out", str(out)]) == 0
    assert png_size(out) == (1200, 800)
    assert str(out) in capsys.readouterr().out


def test_cli_gradflow_with_checkpoint(run_dir, tmp_path, capsys):
    out = tmp_path / "gf.png"
    rc = main(["gradflow", "--cells", "rnn,lstm", "--seq-len", "30", "--hidden", "16", "--scale", "1,4",
               "--checkpoint", str(run_dir), "--out", str(out)])
    assert rc == 0
    assert png_size(out) == (800, 500)
    text = capsys.readouterr().out
    header = text.splitlines()[1]
    for label in ("rnn h ×1", "lstm c ×4", "run: lstm h (trained)"):
        assert label in header
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:] if line.strip()[:1].isdigit()}
    assert sorted(rows, key=int) == ["0", "1", "2", "5", "10", "20", "30"]
    assert float(rows["30"][3]) > float(rows["0"][3])  # rnn x4 explodes ...
    assert float(rows["30"][0]) < float(rows["0"][0])  # ... rnn x1 vanishes


def test_cli_gates(run_dir, tmp_path, capsys):
    out_dir = tmp_path / "gates"
    rc = main(["gates", str(run_dir), "--text", "the cat sat on the log.", "--units", "0,5,7",
               "--out-dir", str(out_dir)])
    assert rc == 0
    w, h = png_size(out_dir / "gates.png")
    assert (w, h) == tuple(round(100 * s) for s in plots.heatmap_figsize(23, [3] * 6))
    page = (out_dir / "gates.html").read_text(encoding="utf-8")
    data = json.loads(page.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    assert "".join(data["chars"]) == "the cat sat on the log."
    assert data["gates"] == ["i", "f", "o", "g", "c", "h"] and data["units"] == [0, 5, 7]
    assert len(data["values"]["f"]) == 16 and len(data["values"]["f"][0]) == 23
    # the default text is a sample of the model's own
    assert main(["gates", str(run_dir), "--out-dir", str(out_dir / "default")]) == 0
    assert (out_dir / "default" / "gates.html").exists()


def test_cli_gates_errors(run_dir, tmp_path, capsys):
    assert main(["gates", str(run_dir), "--text", "the cat", "--units", "99", "--out-dir", str(tmp_path)]) == 1
    assert "unit 99 is out of range" in capsys.readouterr().err
    assert main(["gates", str(run_dir), "--text", "ZZZ", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not in the model's vocabulary" in err and len(err.strip().splitlines()) == 1
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_cli_gradcheck_passes_and_fails(capsys):
    rc = main(["gradcheck", "--cell", "lstm", "--layers", "2", "--bidirectional", "--seq-len", "3",
               "--batch", "2", "--input", "3", "--hidden", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("weight_ih_l0", "weight_hh_l1_reverse", "bias_hh_l0", "x", "h0", "c0", "passed"):
        assert name in out
    assert main(["gradcheck", "--cell", "gru", "--layers", "1", "--seq-len", "2", "--eps", "0.5"]) == 1
    assert "FAIL" in capsys.readouterr().out
