"""Captioning: the digit-strip data (split before composing), the CNN + attention decoder,
decoding through the compiled loops, and the experiment's smoke run."""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import captioning, models
from rnnlab import config as config_lib
from rnnlab.data import digits

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    return digits.make(batch_size=16, eval_batches=3, seed=1)


@pytest.mark.slow
def test_heldout_strips_never_share_a_source_image(data):
    train, held = set(data.train_idx.tolist()), set(data.val_idx.tolist())
    assert not train & held and len(train) + len(held) == 1797
    assert data.metadata()["disjoint"] and data.metadata()["heldout_images"] == len(held)
    for step in range(5):
        rng = digits.seed_for(step, data.seed)
        used = data.compose(rng, data.train_idx, 16)["indices"]
        assert set(used[used >= 0].tolist()) <= train
    for used in data.heldout_indices():
        assert set(used[used >= 0].tolist()) <= held


@pytest.mark.slow
def test_strips_are_the_digits_and_their_words(data):
    rng = np.random.default_rng(0)
    batch = data.compose(rng, data.val_idx, 16)
    x, y, used = batch["inputs"], batch["targets"], batch["indices"]
    assert x.shape == (16, 8, 32) and y.shape == (16, 5) and x.dtype == np.float32
    for b in range(16):
        n = int((used[b] >= 0).sum())
        assert 2 <= n <= 4 and y[b, n] == digits.EOS and np.all(y[b, n + 1 :] == digits.PAD)
        words = [digits.WORDS[data.labels[i]] for i in used[b, :n]]
        assert data.decode(y[b]) == " ".join(words)
        # the ink of the strip is exactly the digits' ink, side by side, somewhere in the strip
        cols = np.concatenate([data.images[i] for i in used[b, :n]], axis=1)
        at = [s for s in range(33 - 8 * n) if np.array_equal(x[b, :, s : s + 8 * n], cols)]
        assert at and x[b].sum() == pytest.approx(cols.sum(), rel=1e-6)


@pytest.mark.slow
def test_batches_are_pure_functions_of_the_step(data):
    a, _ = data.train_batch(3)
    b, _ = data.train_batch(3)
    c, _ = data.train_batch(4)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(
        a["inputs"], c["inputs"]
    )
    assert set(a) == {"inputs", "targets"}


def test_bad_options_name_what_was_expected():
    with pytest.raises(ValueError, match="min_digits <= max_digits, got min_digits=5"):
        digits.make(min_digits=5, max_digits=3)
    with pytest.raises(ValueError, match="val_fraction must lie in"):
        digits.make(val_fraction=1.5)


def build(attention=True, **model):
    c = config_lib.get_config().model
    c.cell, c.hidden_size, c.embed_dim, c.attention, c.attention_size = "gru", 16, 8, attention, 8
    for k, v in model.items():
        c[k] = v
    return models.build(c, {"architecture": "captioning", "vocab_size": len(digits.VOCAB)})


def init(model, B=3, W=24):
    x = jax.random.uniform(jax.random.PRNGKey(0), (B, 8, W))
    y = jnp.asarray(np.tile([[3, 4, 5, 2]], (B, 1)), jnp.int32)
    return model.init(jax.random.PRNGKey(1), x, y), x, y


@pytest.mark.slow
def test_attention_and_show_and_tell_modes():
    with_att, without = build(True), build(False)
    (v1, x, y), (v0, _, _) = init(with_att), init(without)
    assert "w_q" in v1["params"]["decoder"] and "w_q" not in v0["params"]["decoder"]
    assert with_att.apply(v1, x, y).shape == (3, 4, 13) == without.apply(v0, x, y).shape
    alpha = with_att.apply(v1, x, y, method="attention_maps")
    assert alpha.shape == (3, 4, 24 // 4)  # two 2x2 pools: a column every 4 pixels
    np.testing.assert_allclose(alpha.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="does not attend"):
        without.apply(v0, x, y, method="attention_maps")
    with pytest.raises(ValueError, match="float images"):
        with_att.apply(v1, y, y)


@pytest.mark.slow
def test_greedy_follows_the_teacher_forced_argmax_and_beam1_equals_greedy():
    model = build(True)
    v, x, _ = init(model)
    g = model.apply(v, x, max_length=5, method="greedy")
    logits = model.apply(v, x, g)  # the decoder fed its own greedy output
    first_eos = [int(np.argmax(np.r_[np.asarray(r) == 2, True])) for r in g]
    for b, e in enumerate(first_eos):
        np.testing.assert_array_equal(
            np.argmax(logits[b, : e + 1], -1)[:5], np.asarray(g[b, : e + 1])
        )
    beam1, _ = model.apply(v, x, max_length=5, beam_size=1, method="beam_search")
    np.testing.assert_array_equal(beam1, g)


@pytest.mark.slow
def test_encoder_settings_without_effect_are_refused():
    with pytest.raises(ValueError, match="model.num_layers has no effect"):
        build(num_layers=2)
    with pytest.raises(ValueError, match="model.bidirectional"):
        build(bidirectional=True)


def test_word_scores():
    t = np.array([[3, 4, 2, 0], [5, 6, 7, 2]])
    p = np.array([[3, 4, 2, 0], [5, 9, 7, 2]])
    assert captioning.word_scores(p, t) == (1, 4, 5)


@pytest.mark.slow
def test_smoke_experiment_reports_and_draws(tmp_path):
    spec = importlib.util.spec_from_file_location("cap", ROOT / "experiments" / "captioning.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.VARIANTS == ("default", "smoke") and "Measured" in mod.__doc__
    res = mod.run(mod.get_config("smoke"), tmp_path)
    for key in ("exact_match_greedy", "exact_match_beam4", "word_accuracy_greedy"):
        assert 0.0 <= res[key] <= 1.0
    assert res["num_heldout"] == 16 and res["attention"] is True
    png = tmp_path / "figures" / "captions.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((tmp_path / "data.json").read_text())
    assert meta["model_spec"]["architecture"] == "captioning" and meta["disjoint"]
