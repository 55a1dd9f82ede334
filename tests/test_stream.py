"""rnnlab.stream: the state kept across feed/sample calls, surprise, errors, the CLI."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cli
from rnnlab import config as config_lib
from rnnlab.data import text
from rnnlab.stream import Stream, serve
from rnnlab.train import load_run, train_and_evaluate

pytestmark = pytest.mark.slow  # every test trains or loads a tiny char model

TEXT = "the quick brown fox jumps over the lazy dog\n" * 40


def tiny_run(workdir, cell="gru", num_layers=2):
    c = config_lib.get_config()
    c.model.cell, c.model.hidden_size, c.model.embed_dim = cell, 16, 8
    c.model.num_layers = num_layers
    c.data.seq_length, c.data.batch_size = 16, 4
    c.train.num_steps = c.train.eval_every = c.train.log_every = 3
    c.train.checkpoint_every, c.train.progress = 3, False
    train_and_evaluate(c, workdir, dataset=text.make(text=TEXT, seq_length=16, batch_size=4))
    return workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("stream") / "gru", cell="gru", num_layers=2)


def test_feeding_in_pieces_equals_feeding_at_once(workdir):
    a, b = Stream(workdir, warmup_chars=0), Stream(workdir, warmup_chars=0)
    a.feed("the la")
    a.feed("z")
    pa = a.feed("y dog\nthe")
    pb = b.feed("the lazy dog\nthe")
    np.testing.assert_array_equal(pa, pb)
    assert pa.shape == (len(a.vocab),) and pa.sum() == pytest.approx(1.0, abs=1e-5)
    assert a.consumed == b.consumed == 16
    assert set(a.distribution()) == set(a.vocab)


def test_stream_equals_the_model_over_the_whole_text(workdir):
    chars = "over the quick fox"
    s = Stream(workdir, warmup_chars=0)
    before = [s.probabilities]
    for c in chars:
        before.append(s.feed(c))
    run = load_run(workdir)
    ids = jnp.asarray([[s.vocab.index(c) for c in chars]], jnp.int32)
    logits, _, _ = run.model.apply({"params": run.params}, ids)
    np.testing.assert_allclose(before[1:], jax.nn.softmax(logits[0]), atol=1e-5)
    np.testing.assert_allclose(before[0], 1 / len(s.vocab), rtol=1e-6)  # uniform at the start


def test_surprise_is_minus_log2_of_the_prediction(workdir):
    a, b = Stream(workdir, warmup_chars=0), Stream(workdir, warmup_chars=0)
    bits = a.surprise("fox")
    b.feed("fo")
    p = b.distribution()["x"]
    assert bits.shape == (3,) and bits[2] == pytest.approx(-np.log2(p), rel=1e-4)
    assert bits[0] == pytest.approx(np.log2(len(a.vocab)), rel=1e-5)
    np.testing.assert_allclose(a.probabilities, b.feed("x"), atol=1e-6)


def test_sample_is_seeded_and_advances_the_state_or_not(workdir):
    a, b = Stream(workdir, warmup_chars=0, seed=3), Stream(workdir, warmup_chars=0, seed=3)
    a.feed("the ")
    b.feed("the ")
    p0 = a.probabilities
    peek = a.sample(12, 0.7, advance=False)
    np.testing.assert_array_equal(a.probabilities, p0)  # a look-ahead leaves the state
    assert len(peek) == 12 and set(peek) <= set(a.vocab)
    text = b.sample(12, 0.7)  # draw 0 of an equal stream: the same characters
    assert text == peek
    c = Stream(workdir, warmup_chars=0)
    c.feed("the " + text)
    np.testing.assert_allclose(b.probabilities, c.probabilities, atol=1e-6)
    assert a.sample(0) == ""
    with pytest.raises(ValueError, match="temperature must be a number > 0, got 0"):
        a.sample(3, 0)
    with pytest.raises(ValueError, match="n must be an integer >= 0, got -1"):
        a.sample(-1)


def test_characters_outside_the_vocabulary_are_named(workdir):
    s = Stream(workdir, warmup_chars=0)
    with pytest.raises(ValueError, match=r"outside the model's vocabulary: 'Q', '€'"):
        s.feed("a Quick €")
    assert s.consumed == 0


def test_serve_and_cli(workdir, monkeypatch, capsys):
    s = Stream(workdir, warmup_chars=0)
    out = io.StringIO()
    serve(s, iter(["the\n", "fox\n"]), out, surprise=True, length=0, temperature=1.0)
    lines = out.getvalue().splitlines()
    expected = Stream(workdir, warmup_chars=0).surprise("the\nfox\n")[4:].mean()
    assert len(lines) == 2 and lines[1].startswith(f"{expected:.3f} bits/char | 'f':")
    monkeypatch.setattr("sys.stdin", io.StringIO("the lazy\ndog\n"))
    assert cli.main(["stream", str(workdir), "--length", "7", "--warmup", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all(len(line) <= 7 for line in printed)
    monkeypatch.setattr("sys.stdin", io.StringIO("the\n"))
    assert cli.main(["stream", str(workdir), "--temperature", "0"]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("THE\n"))
    assert cli.main(["stream", str(workdir), "--surprise"]) == 2
    assert "'E', 'H', 'T'" in capsys.readouterr().err
