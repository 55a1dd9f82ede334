"""Optax chains: every optimizer moves every parameter; schedules and clipping by the table."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import config as config_lib
from rnnlab import optim


def _optim(**kw):
    c = config_lib.get_config().optim
    c.unlock()
    c.update(kw)
    return c


PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2), "deep": {"v": jnp.full((4,), 0.5)}}


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("clip", optim.CLIPS)
def test_one_step_changes_every_parameter(name, clip):
    tx, _ = optim.make(_optim(name=name, clip=clip, weight_decay=0.1), num_steps=10)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        assert np.all(np.asarray(u) != 0), (name, clip, path)


@pytest.mark.parametrize(
    "kw, table",
    [
        (dict(schedule="constant"), {0: 1.0, 50: 1.0, 99: 1.0}),
        # warmup 10 steps to the peak, then cosine to 0 at num_steps=100
        (dict(schedule="warmup_cosine", warmup_steps=10), {0: 0.0, 5: 0.5, 10: 1.0, 55: 0.5}),
        # char-rnn: x0.97 at the end of every epoch (20 steps) from epoch 10 on (step 200)
        (
            dict(
                schedule="exponential", decay_rate=0.97, decay_every_steps=20, decay_start_step=200
            ),
            {0: 1.0, 199: 1.0, 200: 0.97, 219: 0.97, 220: 0.97**2, 300: 0.97**6},
        ),
    ],
)
def test_schedules(kw, table):
    fn = optim.schedule(_optim(learning_rate=1.0, **kw), num_steps=100)
    for step, want in table.items():
        np.testing.assert_allclose(float(fn(step)), want, rtol=1e-6, atol=1e-7)


def test_clipping():
    grads = {"a": jnp.array([3.0, -4.0]), "b": jnp.array([12.0])}  # global norm 13
    tx, _ = optim.make(_optim(name="sgd", momentum=0.0, learning_rate=1.0, clip_value=1.3), 1)
    u, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(optax.global_norm(u), 1.3, rtol=1e-6)  # scaled to c
    np.testing.assert_allclose(u["a"], [-0.3, 0.4], rtol=1e-6)
    tx, _ = optim.make(
        _optim(name="sgd", momentum=0.0, learning_rate=1.0, clip="elementwise", clip_value=3.5), 1
    )
    u, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(u["a"], [-3.0, 3.5])
    np.testing.assert_allclose(u["b"], [-3.5])


def test_rmsprop_is_char_rnns():
    # one step: nu = (1 - 0.95) g^2, update = -lr g / sqrt(nu + eps)
    tx, _ = optim.make(_optim(name="rmsprop", clip="none", learning_rate=0.1, eps=0.0), 1)
    g = {"x": jnp.array([2.0])}
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["x"], [-0.1 * 2.0 / np.sqrt(0.05 * 4.0)], rtol=1e-6)


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(name="adamax"), ["optim.name", "adam, adamw"]),
        (dict(schedule="linear"), ["optim.schedule", "warmup_cosine"]),
        (dict(clip="norm"), ["optim.clip", "global_norm"]),
        (dict(clip_value=0.0), ["clip_value"]),
        (dict(schedule="warmup_cosine", warmup_steps=500), ["warmup_steps"]),
    ],
)
def test_bad_optim_config(kw, words):
    with pytest.raises(ValueError) as info:
        optim.make(_optim(**kw), num_steps=100)
    for w in words:
        assert w in str(info.value)


@pytest.mark.slow  # five optimizers, op by op
@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_weight_decay_changes_the_update_of_every_optimizer(name):
    """``optim.weight_decay`` takes effect with every optimizer (issue 15: with adam it did
    nothing): with zero gradients only the decay moves the params, toward 0 (p > 0 here)."""
    params = {"w": jnp.ones((3, 2)), "deep": {"v": jnp.full((4,), 0.5)}}
    zero = jax.tree.map(jnp.zeros_like, params)
    # -0.01 entries: the decay (0.1 * p >= 0.05) outweighs them, so even adam's sign-like
    # first step differs there
    grads = jax.tree.map(
        lambda p: jnp.where(jnp.arange(p.size) % 2, -0.01, 0.3).reshape(p.shape), params
    )
    plain, _ = optim.make(_optim(name=name, weight_decay=0.0), num_steps=10)
    decayed, _ = optim.make(_optim(name=name, weight_decay=0.1), num_steps=10)
    u0, _ = plain.update(zero, plain.init(params), params)
    u1, _ = decayed.update(zero, decayed.init(params), params)
    for a, b in zip(jax.tree.leaves(u0), jax.tree.leaves(u1), strict=True):
        assert np.all(np.asarray(a) == 0) and np.all(np.asarray(b) < 0), name
    g0, _ = plain.update(grads, plain.init(params), params)
    g1, _ = decayed.update(grads, decayed.init(params), params)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        assert not np.allclose(np.asarray(a), np.asarray(b)), name


def test_adamw_decay_is_decoupled_and_the_others_are_l2():
    """adamw: p <- p - lr * (adam(g) + wd * p); the others see g + wd * p (sgd: exactly)."""
    params = {"w": jnp.full((2,), 2.0)}
    grads = {"w": jnp.array([0.5, -0.5])}
    tx, _ = optim.make(
        _optim(name="sgd", momentum=0.0, learning_rate=0.1, weight_decay=0.2, clip="none"), 10
    )
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["w"], -0.1 * (grads["w"] + 0.2 * params["w"]), rtol=1e-6)
    tx, _ = optim.make(_optim(name="adamw", learning_rate=0.1, weight_decay=0.2, clip="none"), 10)
    u, _ = tx.update(grads, tx.init(params), params)
    adam_step = -0.1 * np.sign(np.asarray(grads["w"]))  # the first adam step is lr * sign(g)
    np.testing.assert_allclose(u["w"], adam_step - 0.1 * 0.2 * 2.0, rtol=1e-4)


def test_bad_optimizer_settings_are_config_errors():
    with pytest.raises(config_lib.ConfigError, match="optim.name"):
        optim.make(_optim(name="adamx"), 10)
    with pytest.raises(config_lib.ConfigError, match="optim.weight_decay"):
        optim.make(_optim(weight_decay=-1.0), 10)
