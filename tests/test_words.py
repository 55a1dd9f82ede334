"""The word-level text dataset: the tokenization rule, the vocabulary, the bits-per-char facts."""

import json
import math

import numpy as np
import pytest

from rnnlab import config as config_lib
from rnnlab import data as data_lib
from rnnlab import train
from rnnlab.data import words

TEXT = (
    "Once upon a time. "
    + (
        "The cat sat on the mat. The dog didn't.\n\tThe cat, the dog: ünïcode_ok 42!\n"
        "the cat sat; the dog sat. "
    )
    * 30
    + "zebra quokka the cat sat on the mat.\n" * 6
)


def test_tokenize_is_lossless_and_follows_the_rule():
    text = "Don't  stop,\n\n    x_1=3.5 ünï!  \t"
    toks = words.tokenize(text)
    assert "".join(toks) == text
    assert toks[:5] == ["Don", "'", "t", "  ", "stop"]
    assert "\n\n    " in toks and "x_1" in toks and "ünï" in toks and "  \t" in toks
    assert toks.count("3") == 1 and "." in toks  # numbers split at the symbol
    assert words.tokenize("The the") == ["The", " ", "the"]  # case kept


def test_vocabulary_from_the_training_split_with_min_count():
    d = words.make(text=TEXT, seq_length=4, batch_size=2, min_count=3)
    vocab = d.vocab.tokens
    assert vocab[0] == words.UNK
    # "zebra"/"quokka" occur only in the validation tail: unknown
    assert "zebra" not in vocab and "quokka" not in vocab
    train_tokens = words.tokenize(TEXT)[: d.n_train_tokens]
    counts = {t: train_tokens.count(t) for t in set(train_tokens)}
    assert set(vocab[1:]) == {t for t, c in counts.items() if c >= 3}
    kept = [counts[t] for t in vocab[1:]]
    assert kept == sorted(kept, reverse=True)  # by count
    d1 = words.make(text=TEXT, seq_length=4, batch_size=2, min_count=1)
    assert "Once" in d1.vocab.tokens and "Once" not in vocab


def test_split_is_the_character_split_moved_to_a_token_boundary():
    d = words.make(text=TEXT, seq_length=4, batch_size=2, val_fraction=0.2)
    cut = len(TEXT) - round(len(TEXT) * 0.2)
    assert cut <= d.n_train_chars < cut + max(len(t) for t in words.tokenize(TEXT))
    assert d.n_train_chars + d.n_val_chars == len(TEXT)
    train_text = "".join(words.tokenize(TEXT)[: d.n_train_tokens])
    assert len(train_text) == d.n_train_chars


@pytest.mark.parametrize("eval_batches", [0, 3])
def test_metadata_counts_the_evaluated_targets(eval_batches):
    """N, C, the unknown rate and the spelling total are those of exactly the eval targets."""
    d = words.make(text=TEXT, seq_length=5, batch_size=3, min_count=4, eval_batches=eval_batches)
    m = d.metadata()
    val_tokens = words.tokenize(TEXT)[d.n_train_tokens :]
    L = (len(val_tokens) - 1) // 3
    K = d.num_eval_batches
    assert K == (3 if eval_batches else sum(1 for _ in d.eval_batches()))
    spell = words.speller(
        [t for t in words.tokenize(TEXT)[: d.n_train_tokens] if t not in d.vocab.index],
        "".join(sorted(set(TEXT))),
    )
    targets = [val_tokens[b * L + 1 : b * L + 1 + K * 5] for b in range(3)]
    flat = [t for row in targets for t in row]
    unknown = [t for t in flat if t not in d.vocab.index]
    assert m["val_eval_tokens"] == len(flat) == K * 5 * 3
    assert m["val_eval_chars"] == sum(len(t) for t in flat)
    assert m["val_unk_rate"] == pytest.approx(len(unknown) / len(flat))
    assert m["val_unk_rate"] > 0  # the tail holds unseen words
    assert m["val_unk_char_rate"] == pytest.approx(sum(map(len, unknown)) / m["val_eval_chars"])
    assert m["val_unk_spelling_nats"] == pytest.approx(sum(spell(t) for t in unknown))
    ids = np.concatenate([b["targets"] for b in d.eval_batches()], axis=1)
    assert ids.size == len(flat) and int((ids == 0).sum()) == len(unknown)


def test_bits_per_char_formula_and_speller_is_a_distribution():
    m = {"val_eval_tokens": 100, "val_eval_chars": 250, "val_unk_spelling_nats": 30.0}
    assert words.bits_per_char(2.0, m) == pytest.approx((200 + 30) / (250 * math.log(2)))
    assert words.bits_per_char(2.0, m, spell_unknowns=False) == pytest.approx(
        200 / (250 * math.log(2))
    )
    # q(c) over the alphabet plus q(end) sums to one: spell() is a code over all strings
    spell = words.speller(["ab", "ba", "c"], "abcd")
    end = math.exp(-spell(""))
    assert sum(math.exp(-(spell(c) - spell(""))) for c in "abcd") + end == pytest.approx(1.0)
    assert spell("abab") > spell("ab") > spell("")
    with pytest.raises(ValueError, match="not a word-level run"):
        words.bits_per_char(2.0, {"vocab": {"chars": "ab"}})


def test_bad_input_is_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="min_count must be an int >= 1, got 0"):
        words.make(text=TEXT, seq_length=4, batch_size=2, min_count=0)
    with pytest.raises(ValueError, match="word tokens"):
        words.make(text="a b c", seq_length=4, batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        words.make(text="", seq_length=4, batch_size=2)
    assert "words" in data_lib.names()


@pytest.mark.slow
def test_the_trainer_and_char_lm_model_run_on_words(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    c = config_lib.get_config()
    c.data.name = "words"
    c.data.path = str(path)
    c.data.seq_length, c.data.batch_size = 8, 4
    c.data.options.min_count = 2
    c.model.hidden_size, c.model.embed_dim = 8, 4
    c.train.num_steps, c.train.eval_every, c.train.log_every = 6, 3, 3
    c.train.checkpoint_every, c.train.progress = 0, False
    out = train.train_and_evaluate(c, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "data.json").read_text())
    V = len(meta["word_vocab"]["tokens"])
    assert meta["model_spec"]["vocab_size"] == V and meta["min_count"] == 2
    assert 0 < out["val_loss"] < 2 * math.log(V) and math.isfinite(out["val_loss"])
    bpc = words.bits_per_char(out["val_loss"], meta)
    assert bpc > words.bits_per_char(out["val_loss"], meta, spell_unknowns=False) > 0


@pytest.mark.slow
def test_char_vs_word_smoke_matches_parameters_and_reports_bits_per_char(tmp_path):
    from rnnlab import registry

    out = registry.run("char-vs-word:smoke", [], workdir=tmp_path)
    c, w = out["char"], out["word"]
    # matched: the char model's H was solved to the word model's count (within one unit)
    assert abs(c["num_params"] - w["num_params"]) < 4 * (c["hidden_size"] + 70)
    assert c["hidden_size"] != registry.load("char-vs-word").get_config("smoke").model.hidden_size
    assert c["bits_per_char"] == pytest.approx(c["val_loss_nats_per_char"] / math.log(2))
    assert w["bits_per_char"] > w["bits_per_char_unk_free"] > 0
    assert w["bits_per_char"] - w["bits_per_char_unk_free"] == pytest.approx(
        w["unk_spelling_bits_per_char"]
    )
    assert 0 < w["val_unk_rate"] < w["val_unk_char_rate"] < 1
    assert "| char |" in out["table"] and "unknown tokens" in out["table"]
    assert (tmp_path / "figures" / "char_vs_word.png").is_file()
    assert json.loads((tmp_path / "word" / "data.json").read_text())["min_count"] == 20


@pytest.mark.slow
def test_char_vs_word_refuses_what_it_cannot_do(tmp_path):
    from rnnlab import registry

    with pytest.raises(ValueError, match="experiment.match must be 'char' or 'word', got 'both'"):
        registry.run("char-vs-word:smoke", ["experiment.match=both"], workdir=tmp_path / "a")
    # the word model's embedding + softmax alone outweigh a tiny char model: said, not looped
    with pytest.raises(ValueError, match="no hidden size reaches .* raise experiment.min_count"):
        registry.run(
            "char-vs-word:smoke",
            ["experiment.match=word", "model.hidden_size=4", "experiment.word_embed_dim=64"],
            workdir=tmp_path / "b",
        )
