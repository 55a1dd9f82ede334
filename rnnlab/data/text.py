"""Character-level text as contiguous streams (karpathy/char-rnn style), registered as "text".

Split: the **last** ``val_fraction`` of the characters (default 0.1) is the validation text, the
rest the training text (a tail split, like the usual char-LM recipe; the whole file defines the
vocabulary, so every validation character is known).

Streams: the training ids ``x [N]`` are cut into ``B`` contiguous streams of ``L = (N - 1) // B``
characters each (plus one for the last target); there are ``S = L // T`` chunks per stream
(``steps_per_epoch``). Train step ``s`` gives chunk ``k = s mod S`` of every stream:

    inputs[b]  = x[b*L + k*T     : b*L + (k+1)*T]          # [B, T] int32
    targets[b] = x[b*L + k*T + 1 : b*L + (k+1)*T + 1]      # inputs shifted by one

and ``reset = (k == 0)``: the trainer zeroes the carry at the start of every epoch and carries it
across the chunks of an epoch (truncated BPTT). Validation text is laid out the same way and
:meth:`TextDataset.eval_batches` yields its chunks in order (the carry is carried across them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

DEFAULT_VAL_FRACTION = 0.1


class Vocab:
    """Characters sorted by code point; id ``i`` is ``chars[i]``."""

    def __init__(self, chars: str | list[str]):
        chars = sorted(set(chars))
        if not chars:
            raise ValueError("a vocabulary needs at least one character; got none")
        self.chars = "".join(chars)
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``str -> [N] int32``; characters outside the vocabulary are an error listing them."""
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(
                f"{len(unknown)} character(s) not in the vocabulary of {len(self)}: "
                f"{''.join(unknown)!r} ({', '.join(repr(c) for c in unknown[:20])})"
            )
        return np.fromiter((self.index[c] for c in text), dtype=np.int32, count=len(text))

    def decode(self, ids) -> str:
        """``[N] int -> str``."""
        ids = np.asarray(ids).reshape(-1)
        bad = (ids < 0) | (ids >= len(self))
        if bad.any():
            raise ValueError(f"ids must lie in [0, {len(self)}), got {ids[bad][:10].tolist()}")
        return "".join(self.chars[i] for i in ids.tolist())

    def to_json(self) -> dict:
        return {"chars": self.chars}

    @classmethod
    def from_json(cls, data: dict | str) -> Vocab:
        if isinstance(data, str):
            data = json.loads(data)
        return cls(data["chars"])


def _streams(ids: np.ndarray, B: int, T: int, what: str) -> np.ndarray:
    """``[N] -> [B, S*T + 1]``: B contiguous streams with one extra id for the last target."""
    L = (len(ids) - 1) // B
    if L < T:
        raise ValueError(
            f"{what} text too short for one batch: batch_size * seq_length + 1 = {B * T + 1} "
            f"characters are needed, {len(ids)} given"
        )
    S = L // T
    return np.stack([ids[b * L : b * L + S * T + 1] for b in range(B)])


class TextDataset:
    """A corpus as ``batch_size`` contiguous streams (see the module docstring)."""

    kind = "stream"

    def __init__(self, text, *, seq_length, batch_size, val_fraction, eval_batches, seed, source):
        if not isinstance(text, str) or not text:
            raise ValueError(f"the text corpus is empty (source: {source})")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        if seq_length < 1 or batch_size < 1:
            raise ValueError(
                f"seq_length and batch_size must be >= 1, got {seq_length}, {batch_size}"
            )
        B, T = batch_size, seq_length
        self.vocab = Vocab.from_text(text)
        from rnnlab.data.corpora import text_sha256

        self.text_sha256 = text_sha256(text)  # data.json: readers check they read this text
        ids = self.vocab.encode(text)
        n_val = int(round(len(ids) * val_fraction))
        n_train = len(ids) - n_val
        need = B * T + 1
        if n_train < need or n_val < need:
            total = int(np.ceil(need / min(val_fraction, 1 - val_fraction)))
            raise ValueError(
                f"text too short for one batch of batch_size={B} x seq_length={T}: the train "
                f"and validation parts each need {need} characters (about {total} characters "
                f"in all with val_fraction={val_fraction}); {len(ids)} characters given "
                f"({n_train} train, {n_val} val)"
            )
        self.seq_length, self.batch_size, self.seed = T, B, seed
        self.val_fraction, self.source = val_fraction, source
        self.n_train, self.n_val = n_train, n_val
        self.train = _streams(ids[:n_train], B, T, "training")  # [B, S*T + 1]
        self.val = _streams(ids[n_train:], B, T, "validation")
        self.steps_per_epoch = (self.train.shape[1] - 1) // T
        val_chunks = (self.val.shape[1] - 1) // T
        self.num_eval_batches = val_chunks if not eval_batches else min(eval_batches, val_chunks)
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
            "vocab": self.vocab.to_json(),
            "split": (
                f"tail split: the last {self.val_fraction:g} of the characters is validation, "
                "the rest training"
            ),
            "source": self.source,
            "text_sha256": self.text_sha256,
            "train_chars": self.n_train,
            "val_chars": self.n_val,
            "steps_per_epoch": self.steps_per_epoch,
            "uniform_nats": float(np.log(len(self.vocab))),
        }


def make(
    path: str | None = None,
    text: str | None = None,
    *,
    seq_length: int = 50,
    batch_size: int = 50,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    eval_batches: int | None = None,
    seed: int = 0,
) -> TextDataset:
    """The "text" dataset: ``text`` if given, else ``rnnlab.data.corpora.load(path)``.

    ``path``: ``""``/``None`` the embedded default corpus, ``"tinyshakespeare"``, or a file.
    ``val_fraction`` (default 0.1): the tail of the text held out. ``eval_batches``: validation
    chunks per eval (``None``/0: all). ``seed`` is accepted for the protocol (streams need none).
    """
    if text is None:
        from rnnlab.data import corpora  # resolves names, downloads, decodes

        text = corpora.load(path or None)
        source = path or "default corpus"
    else:
        source = "text given in memory"
    return TextDataset(
        text,
        seq_length=seq_length,
        batch_size=batch_size,
        val_fraction=val_fraction,
        eval_batches=eval_batches,
        seed=seed,
        source=source,
    )
