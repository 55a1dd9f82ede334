"""The selective cells rglru (Hawk's RG-LRU) and mamba (S6): their equations against plain numpy,
their initializations, and that their decay depends on the input (selectivity); and the
selective copying task they are meant for."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import cells, data, train
from rnnlab import config as config_lib

H, D, B, T = 4, 3, 2, 6


def make(name, **kw):
    cell = cells.get(name)(hidden_size=H, **kw)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, D)), jnp.float32)
    v = cell.init(jax.random.key(0), cell.initialize_carry(None, (B, D)), x[:, 0])
    return cell, v, x


def run(cell, v, x):
    carry, ys = cell.initialize_carry(None, (B, D)), []
    for t in range(x.shape[1]):
        carry, y = cell.apply(v, carry, x[:, t])
        ys.append(y)
    return np.stack(ys, axis=1)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_rglru_matches_the_paper_equations_and_its_init():
    cell, v, x = make("rglru")
    p = jax.tree.map(np.asarray, v["params"])
    a_c = sigmoid(p["lam"]) ** 8  # a^c at r_t = 1
    assert a_c.min() >= 0.9 - 1e-6 and a_c.max() <= 0.999 + 1e-6
    W, b = p["input"]["kernel"], p["input"]["bias"]
    h, want = np.zeros((B, H)), []
    for t in range(T):
        ra, ix, u = np.split(np.asarray(x[:, t]) @ W + b, 3, axis=-1)
        a_t = sigmoid(p["lam"]) ** (8 * sigmoid(ra))
        h = a_t * h + np.sqrt(1 - a_t**2) * (sigmoid(ix) * u)
        want.append(h)
    np.testing.assert_allclose(run(cell, v, x), np.stack(want, 1), rtol=1e-5, atol=1e-6)
    _, v2, _ = make("rglru", ring="a")
    a = sigmoid(np.asarray(v2["params"]["lam"]))  # recurrentgemma's code: a itself on the ring
    assert a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6


@pytest.mark.slow
def test_rglru_is_stable_when_a_rounds_to_one():
    """L = 30: sigmoid(L) is 1 in float32, yet log a_t stays finite and so does the gradient
    (softplus form, and the bounded derivative of sqrt(1 - a_t^2))."""
    cell, v, x = make("rglru")
    v = jax.tree.map(lambda a: a, v)
    v["params"]["lam"] = jnp.full((H,), 30.0)

    def loss(params):
        return jnp.sum(cell.apply(params, cell.initialize_carry(None, (B, D)), x[:, 0])[1])

    grads = jax.grad(loss)(v)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match="0 < r_min < r_max < 1"):
        cells.get("rglru")(hidden_size=H, r_min=0.99, r_max=0.9)


@pytest.mark.slow
def test_mamba_matches_the_reference_selective_scan_and_its_init():
    cell, v, x = make("mamba", state_size=5)
    p = jax.tree.map(np.asarray, v["params"])
    np.testing.assert_allclose(-np.exp(p["A_log"]), -np.tile(np.arange(1, 6), (H, 1)), rtol=1e-6)
    dt0 = np.log1p(np.exp(p["dt_proj"]["bias"]))
    assert dt0.min() >= 1e-4 - 1e-9 and dt0.max() <= 0.1 + 1e-6
    np.testing.assert_array_equal(p["D"], np.ones(H))
    R = cell.rank
    s, want = np.zeros((B, H, 5)), []
    for t in range(T):  # selective_scan_ref of state-spaces/mamba, one step at a time
        xt = np.asarray(x[:, t])
        u = xt @ p["u_proj"]["kernel"] + p["u_proj"]["bias"]
        rbc = xt @ p["x_proj"]["kernel"]
        delta = np.log1p(np.exp(rbc[:, :R] @ p["dt_proj"]["kernel"] + p["dt_proj"]["bias"]))
        Bt, Ct = rbc[:, R : R + 5], rbc[:, R + 5 :]
        A = -np.exp(p["A_log"])
        s = np.exp(delta[..., None] * A) * s + delta[..., None] * Bt[:, None] * u[..., None]
        want.append(np.einsum("bhn,bn->bh", s, Ct) + p["D"] * u)
    np.testing.assert_allclose(run(cell, v, x), np.stack(want, 1), rtol=1e-4, atol=1e-5)
    assert cell.initialize_carry(None, (B, D)).shape == (B, H * 5)


@pytest.mark.parametrize("name, selective", [("mamba", True), ("rglru", True), ("lru", False)])
def test_decay_depends_on_the_input_only_for_selective_cells(name, selective):
    cell, v, x = make(name)
    xp = cell.apply(v, x, method="project")
    a, _ = cell.apply(v, xp, method="linear_coeffs")
    a = np.asarray(jnp.abs(jnp.broadcast_to(a, a.shape)))
    spread = np.abs(a[:, 1:] - a[:, :1]).max()  # how much the decay moves over time
    assert (spread > 1e-4) == selective


def test_selective_copy_batches_and_baseline():
    task = data.make("selective_copy", seq_length=12, batch_size=5, num_memorize=3, vocab=4)
    batch, reset = task.train_batch(0)
    x, y, m = batch["inputs"], batch["targets"], batch["mask"]
    assert x.shape == y.shape == m.shape == (5, 15) and reset
    for b in range(5):  # the answer is the data tokens in order of appearance
        shown = x[b, :12][x[b, :12] > 0]
        assert len(shown) == 3 and set(shown) <= {1, 2, 3, 4}
        np.testing.assert_array_equal(y[b, 12:], shown)
        np.testing.assert_array_equal(x[b, 12:], [5, 5, 5])
    np.testing.assert_array_equal(m, np.repeat([[0.0] * 12 + [1.0] * 3], 5, axis=0))
    np.testing.assert_array_equal(task.train_batch(0)[0]["inputs"], x)  # a function of the step
    # uniform over the V symbols at the answer steps scores exactly the baseline ln V
    logp = np.full((5, 15, 6), -np.inf)
    logp[..., 1:5] = -np.log(4)
    nll = -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    assert nll[m > 0].mean() == pytest.approx(task.metadata()["baseline"]["xent"])
    with pytest.raises(ValueError, match="must be >= num_memorize"):
        data.make("selective_copy", seq_length=2, num_memorize=3)


@pytest.mark.slow
def test_selective_copy_trains_mamba_in_blocks(tmp_path):
    config = config_lib.apply_overrides(config_lib.get_config(), [
        "data.name=selective_copy", "data.seq_length=8", "data.batch_size=4",
        "data.options.num_memorize=2", "data.options.vocab=4", "model.architecture=block",
        "model.cell=mamba", "model.hidden_size=8", "model.block_depth=1", "model.mlp_width=8",
        "train.num_steps=3", "train.eval_every=3", "train.log_every=3",
        "train.checkpoint_every=0", "train.progress=false",
    ])  # fmt: skip
    summary = train.train_and_evaluate(config, tmp_path)
    assert np.isfinite(summary["val_loss"]) and 0.0 <= summary["val_accuracy"] <= 1.0


@pytest.mark.slow
def test_indrnn_bound_is_a_projection_after_the_update_not_a_forward_clip():
    cell = cells.get("indrnn")(hidden_size=H, max_len=4)  # bound 2^(1/4) = 1.189
    x = jnp.ones((B, D))
    v = cell.init(jax.random.key(0), cell.initialize_carry(None, (B, D)), x)
    v["params"]["u"] = jnp.full((H,), 1.5)  # past the bound
    h0 = jnp.ones((B, H))
    xp = cell.apply(v, x, method="project")
    np.testing.assert_allclose(cell.apply(v, h0, xp, method="step")[1],
                               jax.nn.relu(xp + 1.5 * h0), rtol=1e-6)  # fmt: skip
    grad_u = jax.grad(lambda u: cell.apply({"params": {**v["params"], "u": u}}, h0, xp,
                                           method="step")[1].sum())(v["params"]["u"])  # fmt: skip
    assert np.all(np.abs(np.asarray(grad_u)) > 0)  # the forward clip would give exactly 0
    projected = cell.project_params(v)["params"]["u"]
    np.testing.assert_allclose(projected, np.full(H, 2**0.25), rtol=1e-6)

    # one real train step (rnnlab.steps) with an update of +1 on every parameter: u crosses
    def stepped_u(bound):
        from rnnlab import models, optim, steps

        model = models.SequenceModel(out_features=1, hidden_size=H, cell="indrnn", readout="last",
                                     loss_type="mse",
                                     cell_options={"max_len": 4, "bound": bound})  # fmt: skip
        plus_one = optax.stateless(lambda g, p: jax.tree.map(jnp.ones_like, g))
        init, train_step, _ = steps.make_steps(model, plus_one, optim.schedule(
            config_lib.get_config().optim, 1), stream=False, num_seeds=1)  # fmt: skip
        batch = {"inputs": jnp.ones((B, T, D)), "targets": jnp.ones((B, 1))}
        state = init(jax.random.key(0), batch)
        u0 = state["params"]["rnn"]["layer_0"]["fwd"]["params"]["u"]
        state, _ = train_step(state, batch, True, jax.random.key(1)[None])
        return u0, state["params"]["rnn"]["layer_0"]["fwd"]["params"]["u"]

    u0, u = stepped_u("projection")
    np.testing.assert_allclose(u, np.minimum(u0 + 1, 2**0.25), rtol=1e-6)
    assert np.isclose(np.asarray(u).max(), 2**0.25)
    u0, old = stepped_u("forward_clip")  # the old way: the weight stays past the bound
    np.testing.assert_allclose(old, u0 + 1, rtol=1e-6)


def test_lr_groups_scale_their_updates_and_refuse_unknown_patterns():
    from rnnlab import optim

    params = {"rnn": {"nu_log": jnp.ones(3), "w": jnp.ones(3)}}
    grads = jax.tree.map(lambda a: 0.1 * a, params)

    def first_update(*overrides):
        c = config_lib.apply_overrides(config_lib.get_config(), list(overrides))
        tx, _ = optim.make(c.optim, 10)
        return tx.update(grads, tx.init(params), params)[0]

    plain = first_update()
    grouped = first_update("optim.lr_groups=(('nu_log', 0.25),)")
    np.testing.assert_allclose(grouped["rnn"]["nu_log"], 0.25 * plain["rnn"]["nu_log"], rtol=1e-6)
    np.testing.assert_allclose(grouped["rnn"]["w"], plain["rnn"]["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="match no parameter"):
        first_update("optim.lr_groups=(('theta_log', 0.5),)")
    with pytest.raises(ValueError, match="factor > 0"):
        first_update("optim.lr_groups=(('nu_log', 0),)")


def test_every_paper_protocol_names_a_cell_and_valid_config_keys():
    from rnnlab import registry

    mh = registry.load("memory-horizon")
    assert {p["cell"] for p in mh.PROTOCOLS.values()} <= set(cells.names())
    for name in mh.PROTOCOLS:
        overrides = mh.protocol_overrides(name, 100)
        assert not any("{T}" in o for o in overrides)
        config = config_lib.apply_overrides(mh.get_config("paper"), overrides)
        assert config.model.cell == mh.PROTOCOLS[name]["cell"] and config.experiment.protocols
    assert "model.cell_options.max_len=100" in mh.protocol_overrides("indrnn", 100)
    with pytest.raises(KeyError, match="unknown protocol"):
        mh.protocol_overrides("lsmt", 10)
