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
