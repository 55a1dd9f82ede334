"""The residual block architecture (rnnlab/blocks.py, ``model.architecture=block``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import blocks, data, models, probes, sample, train
from rnnlab import config as config_lib

TEXT = "".join(f"{i % 4} we few, we happy few, we band of brothers;\n" for i in range(12))


def block(cell="gru", **kw):
    kw = {"out_features": 5, "hidden_size": 8, "cell": cell, "block_depth": 2, **kw}
    return blocks.BlockModel(**kw)


def init(model, inputs):
    return model.init(jax.random.key(0), inputs)


def features(B=3, T=9, D=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((B, T, D)), jnp.float32)


@pytest.mark.slow
def test_build_from_config_and_every_registered_cell_runs():
    c = config_lib.get_config()
    c.model.architecture = "block"
    c.model.hidden_size = 4
    c.model.block_depth = 1
    x = features(B=2, T=5)
    for cell in rnnlab.cells.names():
        c.model.cell = cell
        m = models.build(c.model, {"out_features": 3, "readout": "all", "loss": "mse"})
        assert isinstance(m, blocks.BlockModel) and m.cell == cell
        shapes = jax.eval_shape(lambda: m.apply(init(m, x), x)[0])
        assert shapes.shape == (2, 5, 3), cell


@pytest.mark.slow
def test_causal_conv_and_model_are_causal():
    m = block(cell="lstm", conv_width=4)
    x = features()
    v = init(m, x)
    y0 = m.apply(v, x)[0]
    t = 5
    y1 = m.apply(v, x.at[:, t].add(3.0))[0]
    np.testing.assert_array_equal(np.asarray(y0[:, :t]), np.asarray(y1[:, :t]))
    assert np.abs(np.asarray(y0[:, t:] - y1[:, t:])).min(axis=-1).max() > 1e-4
    # the conv alone: a width-3 conv of an impulse at t is its kernel at t, t+1, t+2, then 0
    conv = blocks.CausalConv1D(3, 2)
    cv = conv.init(jax.random.key(1), jnp.zeros((1, 6, 2)))
    imp = jnp.zeros((1, 6, 2)).at[0, 2].set(1.0)
    y, _ = conv.apply(cv, imp)
    k, b = cv["params"]["kernel"], cv["params"]["bias"]
    np.testing.assert_allclose(np.asarray(y[0]) - np.asarray(b), np.asarray(jnp.zeros((6, 2)).at[2:5].set(k)),
                               atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("conv_width", [0, 4])
@pytest.mark.slow
def test_stream_chunks_equal_one_long_sequence(conv_width):
    """Truncated BPTT: chunks with the carried state (recurrence and the conv's last w-1
    inputs) give the outputs and final carry of one pass over the whole sequence."""
    m = block(cell="lstm", conv_width=conv_width)
    x = features(T=10)
    v = init(m, x)
    y_all, c_all, _ = m.apply(v, x)
    y_a, c_a, _ = m.apply(v, x[:, :3])
    y_b, c_b, _ = m.apply(v, x[:, 3:], c_a)
    np.testing.assert_allclose(np.concatenate([y_a, y_b], 1), y_all, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), c_b, c_all)
    assert set(c_all[0]) == ({"rnn", "conv"} if conv_width else {"rnn"})


@pytest.mark.parametrize("readout", ["all", "last", "mean"])
@pytest.mark.slow
def test_masking_equals_running_each_sequence_alone(readout):
    m = block(cell="mingru", readout=readout)
    x, lengths = features(T=8), [8, 3, 0]
    v = init(m, x)
    y, carry, _ = m.apply(v, x, seq_lengths=jnp.array(lengths))
    for b, L in enumerate(lengths[:2]):
        y_b, c_b, _ = m.apply(v, x[b : b + 1, :L])
        got = y[b : b + 1, :L] if readout == "all" else y[b : b + 1]
        np.testing.assert_allclose(got, y_b, rtol=1e-5, atol=1e-5)
        row = jax.tree.map(lambda a, b=b: a[b : b + 1], carry)
        jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, atol=1e-5), row, c_b)
    empty = jax.tree.map(lambda a: a[2], carry)  # a length-0 sequence keeps the zero carry
    assert all(float(jnp.abs(a).max()) == 0.0 for a in jax.tree.leaves(empty))


@pytest.mark.slow
def test_perturbation_reaches_every_block_and_the_probes_see_through():
    m = block(cell="gru", readout="last")
    x = features(T=6)
    v = init(m, x)
    zeros = [jnp.zeros((3, 6, 8)) for _ in range(2)]
    base = m.apply(v, x, perturbation=zeros)[0]
    np.testing.assert_allclose(base, m.apply(v, x)[0], atol=1e-6)
    for l in range(2):
        eps = list(zeros)
        eps[l] = eps[l].at[:, 2].set(0.5)
        assert float(jnp.abs(m.apply(v, x, perturbation=eps)[0] - base).max()) > 1e-4
    batch = {"inputs": np.asarray(x), "targets": np.zeros((3, 5), np.float32)}
    norms = probes.model_grad_norms(m, v, batch, loss="mse")
    assert set(norms) == {"layer_0", "layer_1"}
    for layer in norms.values():  # nonzero at every t: the gradient flows back through blocks
        assert np.all(np.asarray(layer["total"]) > 0) and np.asarray(layer["total"]).shape == (6,)


@pytest.mark.slow
def test_bad_settings_are_refused():
    for kw, match in [({"norm": "batch"}, "norm must be one of"),
                      ({"block_depth": 0}, "block_depth must be"),
                      ({"conv_width": -1}, "conv_width must be"),
                      ({"cell": "lsmt"}, "Did you mean 'lstm'")]:  # fmt: skip
        with pytest.raises((ValueError, KeyError), match=match):
            block(**kw)
    m = block()
    x = features()
    v = init(m, x)
    with pytest.raises(ValueError, match="one entry per block"):
        m.apply(v, x, [None])
    with pytest.raises(ValueError, match="expected float features"):
        m.apply(v, jnp.zeros((3, 9), jnp.int32))


def tiny(*overrides):
    return config_lib.apply_overrides(config_lib.get_config(), [
        "model.architecture=block", "model.cell=gru", "model.hidden_size=8",
        "model.block_depth=2", "model.mlp_width=8", "data.seq_length=8", "data.batch_size=4",
        "optim.learning_rate=1e-2", "train.num_steps=6", "train.eval_every=6",
        "train.log_every=6", "train.checkpoint_every=0", "train.progress=false", *overrides,
    ])  # fmt: skip


@pytest.mark.slow
def test_char_lm_trains_with_seeds_and_samples(tmp_path):
    config = tiny("train.num_seeds=2", "model.dropout=0.1", "model.norm=layer")
    ds = data.make("text", text=TEXT, seq_length=8, batch_size=4, val_fraction=0.2)
    summary = train.train_and_evaluate(config, tmp_path, dataset=ds)
    per_seed = summary["val_loss_per_seed"]
    assert len(per_seed) == 2 and per_seed[0] != per_seed[1]
    assert all(np.isfinite(per_seed)) and max(per_seed) < np.log(ds.model_spec["vocab_size"])
    run = train.load_run(tmp_path, which="latest", seed_index=1)
    assert isinstance(run.model, blocks.BlockModel)
    ids = sample.generate(run.model, run.params, [1, 2, 3], length=7, seed=0)
    assert ids.shape == (7,) and ids.min() >= 0 and ids.max() < run.model.out_features


@pytest.mark.slow
def test_adding_trains_and_the_probe_hook_reads_block_zero(tmp_path):
    config = tiny("data.name=adding", "model.cell=lru")
    hook = probes.make_hook(("grad_norms", "state_norms"), batch_size=4)
    summary = train.train_and_evaluate(config, tmp_path, hooks=[hook])
    assert np.isfinite(summary["val_loss"])
    records = (tmp_path / "metrics.jsonl").read_text()
    assert '"probe/grad_norms/first"' in records and '"probe/state_norms/mean"' in records
