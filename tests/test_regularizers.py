"""Recurrent regularizers (rnnlab.regularizers) and the layer-normalized LSTM (cells/lnlstm.py).

Tiny sizes throughout. What is checked: the mask shapes each method prescribes (one per
sequence, constant over time; zoneout fresh per step; weight-drop one per batch), expectation
preserved, evaluation deterministic, zoneout p=0 equals the plain cell, masking (seq_lengths)
and truncated BPTT carries, per-step determinism, and every refusal.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import config as config_lib
from rnnlab import models, regularizers
from rnnlab.engine import RNN, make_cell, unroll
from rnnlab.engine import plan as plan_lib

B, T, D, H = 3, 6, 4, 5
KEY = jax.random.key(0)


def _x(seed=0, shape=(B, T, D)):
    return jax.random.normal(jax.random.key(seed), shape)


def _cell_and_params(name, d=D):
    cell = make_cell(name, H)
    params = cell.init(jax.random.key(1), cell.initialize_carry(None, (B, d)), jnp.zeros((B, d)))
    return cell, params


# ------------------------------------------------------------------------------ lnlstm


def _layer_norm(z, a, b):
    mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
    return a * (z - mu) / np.sqrt(var + 1e-5) + b


@pytest.mark.slow
def test_lnlstm_step_matches_the_papers_equations():
    cell, v = _cell_and_params("lnlstm")
    p = jax.tree.map(np.asarray, v["params"])
    p["ln_h"]["scale"] = np.linspace(0.5, 1.5, 4 * H)  # gains away from 1 so they matter
    p["ln_c"]["bias"] = np.linspace(-0.3, 0.3, H)
    x, c, h = np.asarray(_x(1, (B, D))), np.asarray(_x(2, (B, H))), np.asarray(_x(3, (B, H)))
    (c1, h1), y = cell.apply({"params": p}, (c, h), x)
    pre = _layer_norm(x @ p["input"]["kernel"], p["ln_x"]["scale"], p["ln_x"]["bias"])
    pre = pre + _layer_norm(h @ p["w_h"], p["ln_h"]["scale"], 0.0)
    i, f, g, o = np.split(pre, 4, axis=-1)
    sig = lambda a: 1 / (1 + np.exp(-a))
    c_want = sig(f) * c + sig(i) * np.tanh(g)
    h_want = sig(o) * np.tanh(_layer_norm(c_want, p["ln_c"]["scale"], p["ln_c"]["bias"]))
    np.testing.assert_allclose(c1, c_want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h1, h_want, rtol=1e-5, atol=1e-5)
    assert y is h1
    # forget-gate bias starts at forget_bias, the other gates at 0
    np.testing.assert_array_equal(np.asarray(v["params"]["ln_x"]["bias"]).reshape(4, H)[1], 1.0)


def test_lnlstm_runs_the_autodiff_loop_and_says_why():
    plan = plan_lib.plan(make_cell("lnlstm", 64), (B, T, D))
    assert plan.loop == "autodiff"
    assert "dense_recurrence is False" in plan.describe()


# --------------------------------------------------------------------- the mask functions


@pytest.mark.slow
def test_locked_dropout_is_one_mask_per_sequence_and_unbiased():
    x = jnp.ones((B, T, 50))
    y = regularizers.locked_dropout(KEY, x, 0.4)
    np.testing.assert_array_equal(y, jnp.broadcast_to(y[:, :1], y.shape))  # same every step
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.6], rtol=1e-6)
    assert not np.array_equal(y[0, 0], y[1, 0])  # each sequence its own mask
    mean = jnp.mean(
        jax.vmap(lambda k: regularizers.locked_dropout(k, x, 0.4))(jax.random.split(KEY, 400)), 0
    )
    assert abs(float(mean.mean()) - 1.0) < 0.01 and float(jnp.abs(mean - 1).max()) < 0.3


@pytest.mark.slow
def test_embedding_dropout_drops_whole_rows_and_is_unbiased():
    table = _x(0, (200, 3)) + 2.0
    dropped = regularizers.embedding_dropout(KEY, table, 0.5)
    zero_rows = np.all(np.asarray(dropped) == 0, axis=1)
    kept = ~zero_rows
    assert 60 < zero_rows.sum() < 140  # about half the word types
    np.testing.assert_allclose(dropped[kept], table[kept] * 2.0, rtol=1e-6)
    means = jax.vmap(lambda k: regularizers.embedding_dropout(k, table, 0.5))(
        jax.random.split(KEY, 2000)
    )
    np.testing.assert_allclose(means.mean(0), table, atol=0.25)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "lnlstm"])
def test_weight_drop_masks_only_the_recurrent_matrix_once_per_batch(name):
    cell, v = _cell_and_params(name, d=H)  # D == H: the input kernel has W_h's shape too
    dropped = regularizers.weight_drop(cell, v, 0.5, KEY)
    changed = [
        "/".join(str(getattr(k, "key", k)) for k in path)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(v), jax.tree.leaves(dropped))
        if not np.array_equal(a, b)
    ]
    assert changed == ["params/w_h"]
    w, w2 = np.asarray(v["params"]["w_h"]), np.asarray(dropped["params"]["w_h"])
    assert np.all((w2 == 0) | np.isclose(w2, 2 * w))
    runs = jax.vmap(lambda k: regularizers.weight_drop(cell, v, 0.5, k)["params"]["w_h"])
    np.testing.assert_allclose(runs(jax.random.split(KEY, 2000)).mean(0), w, atol=0.1)


# --------------------------------------------------------------------- through the layer


def _rnn(cell="lstm", **kw):
    return RNN(cell, H, num_layers=2, **kw)


def _apply(model, v, x, seed=None, **kw):
    rngs = None if seed is None else {"dropout": jax.random.key(seed)}
    return model.apply(v, x, deterministic=seed is None, rngs=rngs, **kw)


ALL = dict(
    variational_dropout_in=0.3,
    variational_dropout_out=0.3,
    recurrent_dropout=0.3,
    zoneout_c=0.4,
    zoneout_h=0.2,
    weight_drop=0.3,
)


@pytest.mark.slow
def test_every_option_is_deterministic_per_rng_and_off_at_evaluation():
    x = _x()
    model, plain = _rnn(**ALL), _rnn()
    v = model.init(KEY, x)
    a, b, c = (_apply(model, v, x, s).outputs for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)  # the same step rng: the same masks (resume is exact)
    assert not np.allclose(a, c)
    e1, e2 = _apply(model, v, x).outputs, _apply(model, v, x).outputs
    np.testing.assert_array_equal(e1, e2)
    # without zoneout, evaluation is the plain network (inverted dropout: no rescaling)
    no_zone = _rnn(**{**ALL, "zoneout_c": 0.0, "zoneout_h": 0.0})
    np.testing.assert_array_equal(_apply(no_zone, v, x).outputs, _apply(plain, v, x).outputs)


@pytest.mark.slow
def test_variational_output_dropout_mask_is_constant_over_time():
    x = _x()
    model = _rnn(variational_dropout_out=0.5)
    v = model.init(KEY, x)
    y = np.asarray(_apply(model, v, x, 3).outputs)  # [B, T, H]
    zero = y == 0
    assert zero.any() and np.array_equal(zero.all(axis=1), zero.any(axis=1))


@pytest.mark.slow
def test_recurrent_dropout_is_one_mask_on_h_entering_w_h():
    """The engine's run equals a hand loop that multiplies h_{t-1} by the same mask each step."""
    cell, v = _cell_and_params("lstm")
    x = _x()
    wrapped = regularizers.regularized(
        cell, D, recurrent_dropout=0.5, key=KEY, variables=v, B=B, T=T
    )
    m = wrapped.recurrent_mask
    assert m.shape == (B, H)
    np.testing.assert_array_equal(np.unique(np.asarray(m)), [0.0, 2.0])
    carry = wrapped.wrap(cell.initialize_carry(None, (B, D)))
    _, ys, _ = unroll(wrapped, v, x, carry)
    c, h = cell.initialize_carry(None, (B, D))
    want = []
    for t in range(T):
        (c, h), y = cell.apply(v, (c, h * m), x[:, t])  # LSTM: h enters only through W_h
        want.append(y)
    np.testing.assert_allclose(ys, jnp.stack(want, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru", "lru"])
def test_zoneout_zero_is_the_plain_cell(name):
    cell, v = _cell_and_params(name)
    x = _x()
    wrapped = regularizers.regularized(
        cell, D, zoneout_c=0.0, zoneout_h=0.0, recurrent_dropout=0.0, key=KEY, variables=v, B=B, T=T
    )
    carry = wrapped.wrap(cell.initialize_carry(None, (B, D)))
    final, ys, _ = unroll(wrapped, v, x, carry)
    final0, ys0, _ = unroll(cell, v, x)
    np.testing.assert_array_equal(ys, ys0)
    jax.tree.map(np.testing.assert_array_equal, wrapped.unwrap(final), final0)


@pytest.mark.slow
def test_zoneout_keeps_or_updates_each_unit_fresh_each_step_and_takes_the_mean_at_eval():
    cell, v = _cell_and_params("lstm")
    x = _x(0, (B, 40, D))
    p_c, p_h = 0.5, 0.2
    kw = dict(zoneout_c=p_c, zoneout_h=p_h)
    wrapped = regularizers.regularized(cell, D, **kw, key=KEY, variables=v, B=B, T=40)
    carry = wrapped.wrap(cell.initialize_carry(None, (B, D)))
    _, _, states = unroll(wrapped, v, x, carry, return_states=True)
    (cs, hs), _ = states  # [B, T, H] each
    prev = (jnp.zeros((B, H)), jnp.zeros((B, H)))
    kept = {0: [], 1: []}
    for t in range(40):
        new, _ = cell.apply(v, prev, x[:, t])
        for i, got in enumerate((cs[:, t], hs[:, t])):
            same_old, same_new = (
                np.isclose(got, prev[i], atol=1e-6),
                np.isclose(got, new[i], atol=1e-6),
            )
            assert np.all(same_old | same_new)
            kept[i].append(same_old & ~same_new)
        prev = (cs[:, t], hs[:, t])
    for i, p in ((0, p_c), (1, p_h)):
        k = np.stack(kept[i])  # [T, B, H]
        assert abs(k.mean() - p) < 0.06  # the rate
        assert not np.array_equal(k[1], k[2])  # a fresh mask per step (Krueger et al.)
    evaluation = regularizers.regularized(cell, D, **kw)
    c0 = (_x(4, (B, H)), _x(5, (B, H)))
    (c1, h1), y = evaluation.step(v, c0, cell.apply(v, x[:, 0], method="project"))
    (c_, h_), _ = cell.apply(v, c0, x[:, 0])
    np.testing.assert_allclose(c1, p_c * c0[0] + (1 - p_c) * c_, rtol=1e-6)
    np.testing.assert_allclose(h1, p_h * c0[1] + (1 - p_h) * h_, rtol=1e-6)
    assert y is h1


@pytest.mark.slow
def test_masking_and_truncated_bptt_with_every_option():
    x = _x()
    lengths = jnp.array([T, 3, 0])
    model = _rnn(**ALL)
    v = model.init(KEY, x)
    out = _apply(model, v, x, 7, seq_lengths=lengths, return_states=True)
    y = np.asarray(out.outputs)
    assert np.all(y[1, 3:] == 0) and np.all(y[2] == 0)
    for layer in range(
        2
    ):  # the final carry is the cell's (no step counter), at the last valid step
        c, h = out.final_carry[layer]
        cs, hs = out.states[layer]
        assert c.shape == (B, H)
        np.testing.assert_array_equal(h[1], hs[1, 2])
        np.testing.assert_array_equal(h[2], 0.0)
    # evaluation: a padded sequence gives what it gives alone, and two windows of a stream (the
    # carry passed on) give what one pass gives -- zoneout's expectation included
    ev = _apply(model, v, x, seq_lengths=lengths).outputs
    alone = _apply(model, v, x[1:2, :3]).outputs
    np.testing.assert_allclose(ev[1, :3], alone[0], rtol=1e-5, atol=1e-6)
    first = _apply(model, v, x[:, :3])
    second = _apply(model, v, x[:, 3:], initial_carry=first.final_carry)
    whole = _apply(model, v, x).outputs
    np.testing.assert_allclose(second.outputs, whole[:, 3:], rtol=1e-5, atol=1e-6)
    # training: a window's final carry feeds the next window
    train_first = _apply(model, v, x[:, :3], 8)
    nxt = _apply(model, v, x[:, 3:], 9, initial_carry=train_first.final_carry)
    assert np.isfinite(np.asarray(nxt.outputs)).all()


@pytest.mark.slow
def test_step_options_take_the_autodiff_loop_weight_drop_keeps_the_fast_one():
    x = _x(0, (B, T, 64))
    for kw, loop in (
        ({"weight_drop": 0.5}, ("fused", "native")),
        ({"zoneout_h": 0.1}, ("autodiff",)),
    ):
        model = RNN("lstm", 64, **kw)
        v = model.init(KEY, x)
        with plan_lib.recording() as plans:
            _apply(model, v, x, 1)
        assert plans[0].loop in loop, plans[0].describe()
    assert "zoneout_h=0.1: in the step" in plans[0].describe()


@pytest.mark.slow
def test_sequence_model_embedding_dropout_and_grads():
    model = models.CharLM(11, hidden_size=H, embed_dim=3, embed_dropout=0.5, **ALL)
    ids = jax.random.randint(KEY, (B, T), 0, 11)
    batch = {"inputs": ids, "targets": ids}
    v = model.init(KEY, ids)
    loss = lambda p, s: model.apply(
        p, batch, deterministic=False, rngs={"dropout": jax.random.key(s)}, method="loss"
    )[0]
    g = jax.grad(loss)(v, 2)
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(g))
    assert loss(v, 2) == loss(v, 2) and loss(v, 2) != loss(v, 3)
    e = lambda s: model.apply(v, batch, rngs={"dropout": jax.random.key(s)}, method="loss")[0]
    assert e(1) == e(2)  # evaluation draws nothing


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(cell="gru", zoneout_c=0.3), "zoneout_c=0.3 acts on a memory cell c"),
        (dict(cell="mingru", weight_drop=0.3), "declares no recurrent matrix"),
        (dict(cell="indrnn", weight_drop=0.3), "declares no recurrent matrix"),
        (dict(cell="mingru", recurrent_dropout=0.3), "masks h_\\(t-1\\) where it enters W_h"),
        (dict(cell="lstm", zoneout_h=1.0), "zoneout_h is a drop probability in \\[0, 1\\)"),
        (dict(cell="lstm", variational_dropout_in=-0.1), "variational_dropout_in is a drop"),
        (dict(cell="lstm", zoneout_h=0.1, backward="fused"), "only the autodiff loop runs"),
        (dict(cell="mingru", zoneout_h=0.1, scan="associative"), "only the autodiff loop runs"),
    ],
)
def test_options_refused_where_they_do_not_apply(kw, match):
    cell = kw.pop("cell")
    with pytest.raises(ValueError, match=match):
        RNN(cell, H, **kw)


def test_weight_drop_refused_for_gru_cho_at_run_time():
    model = RNN("gru", H, weight_drop=0.3, cell_options={"convention": "cho"})
    v = model.init(KEY, _x())
    with pytest.raises(ValueError, match="weight_drop=0.3"):
        _apply(model, v, _x(), 1)


def test_config_keys_ranges_and_refusals():
    for key in ("embed_dropout", "variational_dropout_in", "variational_dropout_out",
                "recurrent_dropout", "zoneout_c", "zoneout_h", "weight_drop"):  # fmt: skip
        assert config_lib.SCHEMA[f"model.{key}"].describe() == "a finite float in [0, 1)"
        bad = config_lib.apply_overrides(config_lib.get_config(), [f"model.{key}=1.0"])
        with pytest.raises(config_lib.ConfigError, match=f"model.{key}"):
            config_lib.validate(bad)
    with pytest.raises(ValueError, match="reads features"):
        models.build(
            config_lib.apply_overrides(config_lib.get_config(), ["model.embed_dropout=0.2"]).model,
            {"out_features": 2, "readout": "last"},
        )
    with pytest.raises(config_lib.ConfigError, match="has no 'zoneout_h' field"):
        models.build(
            config_lib.apply_overrides(
                config_lib.get_config(), ["model.zoneout_h=0.2", "model.architecture=block"]
            ).model,
            {"out_features": 2, "vocab_size": 5},
        )
