"""Word-level text as contiguous token streams, registered as "words" (``data.name=words``).

The same corpora, split and stream layout as the character dataset (:mod:`rnnlab.data.text`),
with words as the tokens, so the char-LM model and the trainer run on it unchanged (token
inputs ``[B, T]`` int32, per-step softmax cross-entropy over the word vocabulary).

**Tokenization rule** (lossless): the text is cut by the regular expression
:data:`TOKEN_PATTERN`, ``\\w+|\\s+|[^\\w\\s]`` (Python ``re``, Unicode), scanning left to right:

* a *word* is a maximal run of word characters (letters and digits of any script, and ``_``);
* a *space* token is a maximal run of whitespace (``" "``, ``"\\n"``, ``"\\n    "``, ...):
  whitespace is kept, so the word model predicts the layout, as the character model does;
* every other character (punctuation, symbols) is a token of its own: ``"don't."`` is
  ``don`` ``'`` ``t`` ``.``.

Case is kept (``The`` and ``the`` are two words). Every character belongs to exactly one token
and joining the tokens gives the text back exactly.

**Split**: by characters, like ``text``: with ``n`` characters, validation starts at the first
token that starts at or after character ``n - round(n * val_fraction)`` (the character
dataset's cut, moved forward to a token boundary), so both models hold out the same tail.

**Vocabulary**: the tokens that occur at least ``min_count`` times (data option
``data.options.min_count``, default :data:`DEFAULT_MIN_COUNT`) in the *training* split, by
count (descending), ties by code point order; id 0 is :data:`UNK` (``"<unk>"``), which every
other token (a rare word, space run or symbol, or one never seen in training) maps to.

**Bits per character** (:func:`bits_per_char`). The trainer's ``val_loss`` is the mean over
the ``N`` evaluated validation tokens (the targets of the eval chunks) of ``-ln p(token)``,
where an unknown token is scored as ``p(<unk>)``. Those ``N`` tokens cover ``C`` characters
(the sum of their lengths; spaces count, being tokens). Naming ``<unk>`` does not say which
word it was, so the honest figure adds the cost of spelling every unknown token ``w`` with a
character unigram model ``q`` over the corpus characters and an end mark, fitted with add-one
smoothing on the training split's unknown tokens:

    spell(w)  = -sum_i ln q(w_i) - ln q(end)
    bpc       = (N * val_loss + sum_{w unknown} spell(w)) / (C ln 2)    # a complete code
    bpc_free  = N * val_loss / (C ln 2)                                 # unknowns spelt free

``bpc`` is the code length of the exact validation text under "word model, then speller"
(an upper bound on what the word model costs); ``bpc_free`` ignores the unknown words'
spelling (a lower bound, optimistic by about the unknown tokens' share of the characters).
:meth:`WordDataset.metadata` records ``N``, ``C``, the spelling total and the unknown-token
rates of the evaluated validation tokens, so both follow from the run's ``val_loss`` alone.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from rnnlab.data.text import DEFAULT_VAL_FRACTION, _streams

TOKEN_PATTERN = re.compile(r"\w+|\s+|[^\w\s]")
UNK = "<unk>"
DEFAULT_MIN_COUNT = 2


def tokenize(text: str) -> list[str]:
    """``str -> list of tokens`` by the rule in the module docstring; ``"".join`` inverts it."""
    return TOKEN_PATTERN.findall(text)


class WordVocab:
    """``tokens[0]`` is :data:`UNK`; ``tokens[i]`` for ``i >= 1`` the kept training tokens."""

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != UNK:
            raise ValueError(f"a word vocabulary starts with {UNK!r}; got {tokens[:3]!r}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_tokens(cls, tokens: list[str], min_count: int) -> WordVocab:
        """The tokens seen at least ``min_count`` times, by count then code point order."""
        counts = collections.Counter(tokens)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t)
        )
        return cls([UNK, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> np.ndarray:
        """``list of tokens -> [N] int32``, unknown tokens as 0."""
        return np.fromiter((self.index.get(t, 0) for t in tokens), np.int32, count=len(tokens))

    def decode(self, ids) -> str:
        """``[N] int -> str`` (unknown tokens come back as ``<unk>``)."""
        ids = np.asarray(ids).reshape(-1)
        bad = (ids < 0) | (ids >= len(self))
        if bad.any():
            raise ValueError(f"ids must lie in [0, {len(self)}), got {ids[bad][:10].tolist()}")
        return "".join(self.tokens[i] for i in ids.tolist())

    def to_json(self) -> dict:
        return {"tokens": self.tokens}


def speller(rare: list[str], alphabet: str):
    """``spell(token) -> nats`` under the add-one character unigram of the rare tokens (above)."""
    counts = collections.Counter("".join(rare))
    total = sum(counts.values()) + len(rare) + len(alphabet) + 1  # + end marks + add-one
    log_q = {c: np.log((counts[c] + 1) / total) for c in alphabet}
    log_end = np.log((len(rare) + 1) / total)
    return lambda token: -float(sum(log_q[c] for c in token)) - float(log_end)


class WordDataset:
    """A corpus as ``batch_size`` contiguous streams of word ids (see the module docstring)."""

    kind = "stream"

    def __init__(
        self, text, *, seq_length, batch_size, val_fraction, eval_batches, min_count, source
    ):
        if not isinstance(text, str) or not text:
            raise ValueError(f"the text corpus is empty (source: {source})")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        if seq_length < 1 or batch_size < 1:
            raise ValueError(
                f"seq_length and batch_size must be >= 1, got {seq_length}, {batch_size}"
            )
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"data.options.min_count must be an int >= 1, got {min_count!r}")
        B, T = batch_size, seq_length
        tokens = tokenize(text)
        starts = np.cumsum([0] + [len(t) for t in tokens[:-1]])  # [N] first character of each
        cut = len(text) - int(round(len(text) * val_fraction))
        n_train = int(np.searchsorted(starts, cut))  # first token starting at or after cut
        train_tokens, val_tokens = tokens[:n_train], tokens[n_train:]
        need = B * T + 1
        if len(train_tokens) < need or len(val_tokens) < need:
            raise ValueError(
                f"text too short for one batch of batch_size={B} x seq_length={T}: the train "
                f"and validation parts each need {need} word tokens; {len(tokens)} tokens "
                f"given ({len(train_tokens)} train, {len(val_tokens)} val, "
                f"val_fraction={val_fraction})"
            )
        self.vocab = WordVocab.from_tokens(train_tokens, min_count)
        self.seq_length, self.batch_size, self.min_count = T, B, min_count
        self.val_fraction, self.source = val_fraction, source
        self.train = _streams(self.vocab.encode(train_tokens), B, T, "training")
        val_ids = self.vocab.encode(val_tokens)
        self.val = _streams(val_ids, B, T, "validation")
        self.steps_per_epoch = (self.train.shape[1] - 1) // T
        val_chunks = (self.val.shape[1] - 1) // T
        self.num_eval_batches = val_chunks if not eval_batches else min(eval_batches, val_chunks)
        # the evaluated targets: stream b's tokens 1 .. K*T (laid out exactly like the ids)
        K = self.num_eval_batches
        lengths = _streams(np.array([len(t) for t in val_tokens]), B, T, "validation")
        rare = [t for t in train_tokens if t not in self.vocab.index]
        spell = speller(rare, "".join(sorted(set(text))))
        costs = np.array([spell(t) if i == 0 else 0.0 for t, i in zip(val_tokens, val_ids)])
        costs = _streams(costs, B, T, "validation")
        target = np.s_[:, 1 : K * T + 1]
        unk = self.val[target] == 0
        self.eval_tokens = int(unk.size)
        self.eval_chars = int(lengths[target].sum())
        self.eval_unk_rate = float(unk.mean())
        self.eval_unk_char_rate = float(lengths[target][unk].sum() / self.eval_chars)
        self.eval_spelling_nats = float(costs[target].sum())
        self.n_train_tokens, self.n_val_tokens = len(train_tokens), len(val_tokens)
        self.n_train_chars = int(sum(len(t) for t in train_tokens))
        self.n_val_chars = len(text) - self.n_train_chars
        self.train_unk_rate = float(np.mean(self.vocab.encode(train_tokens) == 0))
        self.model_spec = {
            "architecture": "sequence",
            "out_features": len(self.vocab),
            "vocab_size": len(self.vocab),
            "readout": "all",
            "loss": "xent",
        }

    def _chunk(self, streams: np.ndarray, k: int) -> dict[str, np.ndarray]:
        T = self.seq_length
        window = streams[:, k * T : (k + 1) * T + 1]
        return {"inputs": window[:, :-1], "targets": window[:, 1:]}

    def train_batch(self, step: int) -> tuple[dict[str, np.ndarray], bool]:
        """Chunk ``step mod steps_per_epoch`` of every stream; reset at each epoch's start."""
        k = int(step) % self.steps_per_epoch
        return self._chunk(self.train, k), k == 0

    def eval_batches(self) -> Iterator[dict[str, np.ndarray]]:
        """The first ``num_eval_batches`` validation chunks, in order (carry the state)."""
        for k in range(self.num_eval_batches):
            yield self._chunk(self.val, k)

    def metadata(self) -> dict[str, Any]:
        return {
            "word_vocab": self.vocab.to_json(),
            "tokenizer": "words: \\w+ | \\s+ | one other character; case kept (rnnlab.data.words)",
            "min_count": self.min_count,
            "split": (
                f"tail split: the last {self.val_fraction:g} of the characters (moved to a "
                "token boundary) is validation, the rest training"
            ),
            "source": self.source,
            "train_tokens": self.n_train_tokens,
            "val_tokens": self.n_val_tokens,
            "train_chars": self.n_train_chars,
            "val_chars": self.n_val_chars,
            "train_unk_rate": self.train_unk_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "uniform_nats": float(np.log(len(self.vocab))),
            "val_eval_tokens": self.eval_tokens,
            "val_eval_chars": self.eval_chars,
            "val_unk_rate": self.eval_unk_rate,
            "val_unk_char_rate": self.eval_unk_char_rate,
            "val_unk_spelling_nats": self.eval_spelling_nats,
        }


def bits_per_char(val_loss: float, metadata: dict[str, Any], *, spell_unknowns: bool = True):
    """A word run's validation loss (nats/token) in bits per character (module docstring).

    ``metadata``: the run's ``data.json`` (or :meth:`WordDataset.metadata`).
    ``spell_unknowns``: add the unknown tokens' spelling cost (``bpc``) or not (``bpc_free``).
    """
    for key in ("val_eval_tokens", "val_eval_chars", "val_unk_spelling_nats"):
        if key not in metadata:
            raise ValueError(f"not a word-level run's metadata: it has no {key!r}")
    nats = val_loss * metadata["val_eval_tokens"]
    if spell_unknowns:
        nats += metadata["val_unk_spelling_nats"]
    return float(nats / (metadata["val_eval_chars"] * np.log(2.0)))


def make(
    path: str | None = None,
    text: str | None = None,
    *,
    seq_length: int = 50,
    batch_size: int = 50,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    eval_batches: int | None = None,
    seed: int = 0,
    min_count: int = DEFAULT_MIN_COUNT,
) -> WordDataset:
    """The "words" dataset: ``text`` if given, else ``rnnlab.data.corpora.load(path)``.

    ``path``, ``val_fraction``, ``eval_batches``: as for ``text`` (:func:`rnnlab.data.text.make`).
    ``min_count`` (``data.options.min_count``): training count a token needs to be in the
    vocabulary. ``seed`` is accepted for the protocol (streams need none).
    """
    if text is None:
        from rnnlab.data import corpora

        text = corpora.load(path or None)
        source = path or "default corpus"
    else:
        source = "text given in memory"
    return WordDataset(
        text,
        seq_length=seq_length,
        batch_size=batch_size,
        val_fraction=val_fraction,
        eval_batches=eval_batches,
        min_count=min_count,
        source=source,
    )
