"""Sampling: one compiled loop, determinism, temperature/top-k limits, prime warming, vocab errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import sample
from rnnlab.models import CharLM

V = 12


class Chars:
    """A minimal vocabulary: ``chars``, ``encode``, ``decode``."""

    chars = "\nabcdefghij "

    def encode(self, text):
        return [self.chars.index(c) for c in text]

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


@pytest.fixture(scope="module")
def lm():
    model = CharLM(V, hidden_size=16, num_layers=2, embed_dim=8)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.int32))
    # Sharpen the head so the distribution is far from uniform (as in a trained model).
    params = jax.tree.map(lambda p: p * 3.0, params)
    return model, params


def test_same_seed_same_text(lm):
    model, params = lm
    a = sample.generate(model, params, [1, 2], length=30, seed=3)
    b = sample.generate(model, params, [1, 2], length=30, seed=3)
    c = sample.generate(model, params, [1, 2], length=30, seed=4)
    assert a.shape == (30,) and a.dtype == np.int32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_one_compile_for_many_temperatures_and_seeds(lm):
    model, params = lm
    before = sample._generate._cache_size()
    for t, s in [(0.5, 0), (1.0, 1), (1.5, 2)]:
        sample.generate(model, params, [5, 6], length=17, temperature=t, seed=s)
    assert sample._generate._cache_size() == before + 1


def test_argmax_follows_the_model_step_by_step(lm):
    """Greedy token t is the argmax of the model run (one scan) over prime + tokens before t."""
    model, params = lm
    prime = [3, 1]
    ids = sample.generate(model, params, prime, length=30, argmax=True)
    seq = jnp.asarray([prime + ids[:-1].tolist()], jnp.int32)  # teacher forcing
    logits, _, _ = jax.jit(model.apply)(params, seq)  # [1, 31, V]
    np.testing.assert_array_equal(np.argmax(logits[0, 1:], axis=-1), ids)


@pytest.mark.slow
def test_low_temperature_and_top1_equal_argmax(lm):
    model, params = lm
    greedy = sample.generate(model, params, [2, 1], length=30, argmax=True)
    cold = sample.generate(model, params, [2, 1], length=30, temperature=1e-4, seed=7)
    top1 = sample.generate(model, params, [2, 1], length=30, temperature=1.5, top_k=1, seed=7)
    np.testing.assert_array_equal(cold, greedy)
    np.testing.assert_array_equal(top1, greedy)


def test_top_k_restricts_the_draw():
    logits = jnp.asarray([[0.0, 5.0, 1.0, 4.0, -2.0]])
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    draws = jax.vmap(lambda k: sample.draw(k, logits, 5.0, top_k=2))(keys)
    assert set(np.asarray(draws).ravel().tolist()) == {1, 3}


def test_hot_temperature_spreads_the_draw(lm):
    model, params = lm
    cold = sample.generate(model, params, [2, 1], length=30, temperature=0.3, seed=1)
    hot = sample.generate(model, params, [2, 1], length=30, temperature=3.0, seed=1)
    assert len(set(hot.tolist())) > len(set(cold.tolist()))


def test_sample_text_with_prime_and_without(lm):
    model, params = lm
    text = sample.sample_text(model, params, Chars(), "ab", length=30, seed=0)
    assert text.startswith("ab") and len(text) == 32
    assert set(text) <= set(Chars.chars)
    text = sample.sample_text(model, params, Chars(), "", length=30, seed=0)
    assert len(text) == 30


def test_prime_outside_vocab_lists_the_characters(lm):
    model, params = lm
    with pytest.raises(ValueError, match=r"outside the model's vocabulary: 'QZ'"):
        sample.sample_text(model, params, Chars(), "abZcQ", length=5)


def test_bad_arguments(lm):
    model, params = lm
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample.generate(model, params, [1], length=5, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        sample.generate(model, params, [1], length=5, top_k=-1)
    with pytest.raises(ValueError, match="prime ids"):
        sample.generate(model, params, [V], length=5)


def test_warmup_context_is_run_but_not_returned(lm):
    model, params = lm
    cold = sample.sample_text(model, params, Chars(), "ab", length=30, argmax=True)
    warm = sample.sample_text(model, params, Chars(), "ab", warmup="j\n", length=30, argmax=True)
    assert warm.startswith("ab") and len(warm) == 32
    ids = sample.generate(model, params, Chars().encode("j\nab"), length=30, argmax=True)
    assert warm == "ab" + Chars().decode(ids)
    assert cold == "ab" + Chars().decode(
        sample.generate(model, params, Chars().encode("ab"), length=30, argmax=True)
    )
