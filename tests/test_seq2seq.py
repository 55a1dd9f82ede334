"""Seq2seq / one-to-many models (rnnlab/seq2seq.py) and their string datasets (data/strings.py)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import data
from rnnlab.data.strings import CLASSES, ConditionalStrings, held_out
from rnnlab.seq2seq import BOS, EOS, PAD, Conditional, Seq2Seq

STATIC = ("method", "max_length", "beam_size", "temperature")


def _jit(model):
    """``model.apply`` compiled once per method/shape (much faster than op-by-op dispatch)."""
    return jax.jit(model.apply, static_argnames=STATIC)


def test_string_tasks_are_correct_deterministic_and_held_out():
    ds = data.make("strings", task="reverse", max_len=5, batch_size=16)
    b, reset = ds.train_batch(3)
    assert reset and b["inputs"].shape == (16, 5) and b["targets"].shape == (16, 6)
    for src, n, tgt, mask in zip(b["inputs"], b["seq_lengths"], b["targets"], b["mask"]):
        text = ds.decode(src)
        assert len(text) == n and ds.decode(tgt) == text[::-1] and not held_out(text)
        assert tgt[n] == EOS and mask.sum() == n + 1
    np.testing.assert_array_equal(ds.train_batch(3)[0]["inputs"], b["inputs"])  # step-indexed
    for batch in ds.eval_batches():
        assert all(held_out(ds.decode(s)) for s in batch["inputs"])
    add = data.make("strings", task="add", max_len=3, batch_size=8)
    for src, tgt in zip(*(add.train_batch(0)[0][k] for k in ("inputs", "targets"))):
        a, c = add.decode(src).split("+")
        assert int(add.decode(tgt)) == int(a) + int(c)
    with pytest.raises(ValueError, match="unknown string task"):
        data.make("strings", task="rot13")


def test_conditional_strings_classify_their_own_class():
    ds = data.make("class_strings", batch_size=32)
    b, _ = ds.train_batch(0)
    texts = [ds.decode(t) for t in b["targets"]]
    assert [ds.classify(t) for t in texts] == b["condition"].tolist()
    np.testing.assert_array_equal(b["inputs"][:, 0], BOS)
    np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
    assert [ConditionalStrings.classify(t) for t in ("1234", "9876", "zzz", "abab")] == [0, 1, 2, 3]
    assert ConditionalStrings.classify("abba") == -1 and len(CLASSES) == 4


def _tiny(attention, vocab=6, **kw):
    model = Seq2Seq(vocab_size=vocab, cell="gru", hidden_size=8, embed_dim=4,
                    attention=attention, attention_size=4, **kw)  # fmt: skip
    src = jnp.array([[3, 4, 5, 0], [5, 3, 0, 0]], jnp.int32)
    lengths = jnp.array([3, 2], jnp.int32)
    tgt = jnp.array([[5, 4, 3, EOS], [3, 5, EOS, PAD]], jnp.int32)
    batch = {"inputs": src, "targets": tgt, "seq_lengths": lengths}
    variables = jax.jit(model.init, static_argnames="method")(jax.random.key(0), batch, method="loss")  # fmt: skip
    return model, variables, src, lengths, tgt


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.slow
def test_beam_search_is_exact_with_enough_beams_and_greedy_with_one(attention):
    model, variables, src, lengths, _ = _tiny(attention)
    T, V = 3, 6
    apply = _jit(model)
    greedy = apply(variables, src, lengths, max_length=T, method="greedy")
    one, _ = apply(variables, src, lengths, max_length=T, beam_size=1, method="beam_search")
    np.testing.assert_array_equal(greedy, one)
    if not attention:
        return  # the exhaustive check below once, on the richer model
    best, score = apply(variables, src, lengths, max_length=T, beam_size=V**T, method="beam_search")
    # Brute force: score every sequence a decoder can emit (PAD only after EOS) by teacher forcing.
    seqs = [s for s in itertools.product(range(V), repeat=T)
            if all(s[i] == PAD for i in range(T) if EOS in s[:i])]  # fmt: skip
    cand = jnp.array(seqs, jnp.int32)  # [N, T]
    n = len(seqs)
    logits = apply(variables, jnp.repeat(src, n, 0), jnp.tile(cand, (2, 1)),
                         jnp.repeat(lengths, n, 0))  # fmt: skip
    logp = jax.nn.log_softmax(logits).reshape(2, n, T, V)
    tok = jnp.take_along_axis(logp, jnp.tile(cand, (2, 1)).reshape(2, n, T, 1), -1)[..., 0]
    after_eos = jnp.cumsum(jnp.concatenate([jnp.zeros((n, 1)), cand[:, :-1] == EOS], 1), 1) > 0
    totals = jnp.where(after_eos[None], 0.0, tok).sum(-1)  # [2, n]
    np.testing.assert_allclose(score, totals.max(-1), rtol=1e-5)
    np.testing.assert_array_equal(best, cand[jnp.argmax(totals, -1)])


@pytest.mark.slow
def test_attention_ignores_padding_and_bidirectional_bridge_runs():
    model, variables, src, lengths, tgt = _tiny(True, bidirectional=True)
    apply = _jit(model)
    logits = apply(variables, src, tgt, lengths)
    noisy = src.at[1, 2:].set(4)  # change only the padded source positions
    np.testing.assert_allclose(apply(variables, noisy, tgt, lengths), logits, atol=1e-6)
    loss, aux, carry = apply(
        variables, {"inputs": src, "targets": tgt, "seq_lengths": lengths}, method="loss"
    )
    assert carry is None and np.isfinite(loss) and 0 <= aux["exact_match"] <= 1


@pytest.mark.slow
def test_conditional_generation_shapes_and_pad_after_eos():
    model = Conditional(vocab_size=7, num_classes=3, cell="lstm", hidden_size=8, embed_dim=4)
    tgt = jnp.array([[3, 4, EOS], [5, EOS, PAD]], jnp.int32)
    batch = {"inputs": tgt, "targets": tgt, "condition": jnp.array([0, 2], jnp.int32)}
    variables = jax.jit(model.init, static_argnames="method")(
        jax.random.key(1), batch, method="loss"
    )
    apply = _jit(model)
    loss, aux, _ = apply(variables, batch, method="loss")
    assert np.isfinite(loss) and set(aux) == {"loss", "accuracy"}
    out = apply(variables, jnp.arange(3), max_length=6, rng=jax.random.key(2),
                      temperature=2.0, method="generate")  # fmt: skip
    assert out.shape == (3, 6)
    for row in np.asarray(out):
        if EOS in row.tolist():
            assert np.all(row[row.tolist().index(EOS) + 1 :] == PAD)
    with pytest.raises(ValueError, match="class ids"):
        apply(variables, jnp.zeros((2, 2), jnp.int32), max_length=3, method="generate")
