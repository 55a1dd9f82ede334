"""Hidden-unit view: text features, the feature finder on a known answer, the HTML page."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import viz
from rnnlab.data.text import Vocab
from rnnlab.models import CharLM


def test_text_features_by_hand():
    text = 'a "b" (c[d])\n  # x\ns = """q\n"""'
    f = viz.text_features(text)
    at = lambda name, i: float(f[name][i])
    assert [at("in_quotes", i) for i in range(6)] == [0, 0, 1, 1, 0, 0]
    assert [at("bracket_depth", i) for i in range(6, 12)] == [1, 1, 2, 2, 1, 0]
    assert at("line_position", 0) == 1 and at("line_position", 12) == 0  # after the newline
    assert at("indent", 14) == 2 and at("indent", 17) == 2  # "  # x": two leading spaces
    comment = [i for i, v in enumerate(f["in_comment"]) if v]
    assert "".join(text[i] for i in comment) == "# x"
    string = [i for i, v in enumerate(f["in_string"]) if v]
    assert "".join(text[i] for i in string) == '"b' + '"""q\n'  # opening quote in, closing out


def _synthetic_text(rng, n_lines=300):
    words = ["the", "king", "said", "to", "her", "and", "(aside)", "[exit]", "we", "go"]
    lines = []
    for _ in range(n_lines):
        line = " ".join(rng.choice(words, size=rng.integers(3, 9)))
        if rng.random() < 0.5:
            cut = rng.integers(0, len(line))
            line = f'{line[:cut]} "{line[cut:]} {" ".join(rng.choice(words, 3))}"'
        lines.append(line)
    return "\n".join(lines)


def test_feature_finder_finds_the_quote_unit():
    """A unit built to track quotes (plus noise) ranks first for in_quotes; likewise lines."""
    rng = np.random.default_rng(0)
    text = _synthetic_text(rng)
    f = viz.text_features(text)
    N, U = len(text), 16
    acts = np.tanh(rng.normal(size=(N, U)))  # distractors
    acts[:, 5] = np.tanh(2.0 * f["in_quotes"] - 1.0 + 0.8 * rng.normal(size=N))
    acts[:, 11] = np.tanh(f["line_position"] / 20.0 - 1.0 + 0.5 * rng.normal(size=N))
    acts[:, 2] = 0.0  # a dead unit correlates 0, not NaN
    ranking = viz.rank_units(acts, f)
    unit, r = ranking["in_quotes"][0]
    assert unit == 5 and r > 0.5
    noise = [u for u in range(U) if u not in (5, 11)]  # (quotes sit late in a line: 11 too)
    assert np.abs(viz.correlations(acts[:, noise], f["in_quotes"])).max() < 0.1
    assert ranking["line_position"][0][0] == 11
    assert ranking["in_comment"] == []  # no "#" in the text: constant feature, no ranking
    assert all(u != 2 or c == 0.0 for best in ranking.values() for u, c in best)


def test_anti_correlated_unit_ranks_by_magnitude():
    feature = np.array([0, 0, 1, 1, 0, 1], np.float32)
    acts = np.stack([0.1 * feature, -feature + 0.01, np.arange(6.0)], axis=1)
    ranking = viz.rank_units(acts, {"q": feature}, top=3)
    assert ranking["q"][0][0] in (0, 1) and abs(ranking["q"][0][1]) == pytest.approx(1.0)
    assert ranking["q"][2][0] == 2


@pytest.fixture(scope="module")
def tiny_lm():
    text = _synthetic_text(np.random.default_rng(1), n_lines=40)
    vocab = Vocab.from_text(text)
    model = CharLM(len(vocab), hidden_size=8, num_layers=2, embed_dim=8)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32))
    return model, params, vocab, text


def test_lstm_activations_are_tanh_of_the_cell(tiny_lm):
    model, params, vocab, text = tiny_lm
    acts = viz.hidden_activations(model, params, vocab.encode(text[:50]))
    assert acts.shape == (50, 8)
    apply = jax.jit(lambda p, x: model.apply(p, x, return_states=True))
    _, _, states = apply(params, jnp.asarray(vocab.encode(text[:50]))[None])
    c_last = np.asarray(states[-1][0][0])  # last layer, c, batch 0: [N, H]
    np.testing.assert_allclose(acts, np.tanh(c_last), atol=1e-6)


def test_page_links_the_top_units(tiny_lm, tmp_path):
    model, params, vocab, text = tiny_lm
    out = viz.render(model, params, vocab, text, tmp_path / "v" / "index.html", num_chars=200)
    page = out.read_text()
    ranking = json.loads((tmp_path / "v" / "features.json").read_text())
    best = ranking["in_quotes"][0][0]
    assert f'href="#unit-{best}"' in page and f'id="unit-{best}"' in page
    assert "Feature finder" in page and "in_quotes" in page
    assert page.count('" title="') == 200 * page.count('<h2 id="unit-')

    out = viz.render(model, params, vocab, text, tmp_path / "u.html", units=[3], num_chars=50)
    assert 'id="unit-3"' in out.read_text()
    with pytest.raises(ValueError, match="out of range"):
        viz.render(model, params, vocab, text, tmp_path / "w.html", units=[8])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        viz.render(model, params, vocab, "\u00e9t\u00e9", tmp_path / "x.html")


def test_elman_activations_are_the_state():
    model = CharLM(5, cell="elman", hidden_size=8, embed_dim=4)
    ids = jnp.asarray([[0, 1, 2, 3, 4, 0]], jnp.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), ids)
    acts = viz.hidden_activations(model, params, ids[0])
    apply = jax.jit(lambda p, x: model.apply(p, x, return_states=True))
    _, _, states = apply(params, ids)
    np.testing.assert_allclose(acts, np.asarray(states[-1][0]), atol=1e-6)  # h itself
