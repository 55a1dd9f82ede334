"""Generated text-to-text tasks (sequence-to-sequence) and class-conditioned strings (one-to-many).

Token ids: ``PAD = 0``, ``BOS = 1``, ``EOS = 2``, then the characters (:mod:`rnnlab.seq2seq`
uses the same ids). All are ``kind="batch"`` datasets (:class:`rnnlab.data.Dataset`) whose train
batch ``step`` is a pure function of ``(seed, step)``.

**Held out by construction** (text-to-text tasks): a string belongs to the validation split iff
``crc32(source) % 10 == 0``; train batches never contain a validation source (rows that land
in it are redrawn), so validation exact-match measures generalization, not recall.

Sequence to sequence (``make_transduce``; batch ``inputs [B, S]`` source ids, ``seq_lengths
[B]``, ``targets [B, T]`` = answer + EOS + PAD, ``mask [B, T]``):

=========  ==========================================================  ====================
task       source -> target                                            lengths
=========  ==========================================================  ====================
reverse    a string over ``alphabet`` -> the same string reversed      ``min_len..max_len``
sort       a string over ``alphabet`` -> its characters sorted         ``min_len..max_len``
add        ``"a+b"`` with a, b < 10^``max_len`` -> ``str(a + b)``       digits only
=========  ==========================================================  ====================

One to many (``make_conditional``; ``condition [B]`` class ids, ``targets [B, T]``): four
classes of short strings, each checkable by :meth:`ConditionalStrings.classify`:
``ascending`` digit runs (``"3456"``), ``descending`` runs (``"8765"``), ``repeat`` of one letter
(``"kkkk"``), ``alternating`` two distinct letters (``"qzqzq"``); lengths 3..``max_len``.
"""

from __future__ import annotations

import string
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from rnnlab.data import seed_for

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
TASKS = ("reverse", "sort", "add")
CLASSES = ("ascending", "descending", "repeat", "alternating")
Batch = dict[str, np.ndarray]


def held_out(source: str) -> bool:
    """Whether ``source`` belongs to the validation split (10% of all strings, by crc32)."""
    return zlib.crc32(source.encode()) % 10 == 0


class _Strings:
    """Shared: vocabulary, encoding, step-indexed batches of ``_pairs(rng, n, held)``."""

    kind = "batch"

    def __init__(self, chars: str, batch_size: int, eval_batches: int | None, seed: int):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.vocab = list(SPECIALS) + list(chars)
        self.ids = {c: i for i, c in enumerate(self.vocab)}
        self.B, self.seed, self.num_eval = int(batch_size), int(seed), int(eval_batches or 4)

    def encode(self, text: str, length: int, eos: bool = False) -> list[int]:
        ids = [self.ids[c] for c in text] + ([EOS] if eos else [])
        if len(ids) > length:
            raise ValueError(f"{text!r} does not fit in {length} tokens")
        return ids + [PAD] * (length - len(ids))

    def decode(self, ids) -> str:
        """Ids -> text, stopping at the first EOS (PAD and BOS dropped)."""
        out = []
        for i in np.asarray(ids).tolist():
            if i == EOS:
                break
            if i > EOS:
                out.append(self.vocab[i])
        return "".join(out)

    #: whether train and validation sources are disjoint (the crc32 split)
    disjoint = True

    def _draw(self, rng, n: int, held: bool) -> list:
        rows = []
        while len(rows) < n:  # rejection keeps the two splits disjoint
            item = self._sample(rng)
            if not self.disjoint or held_out(item[0]) == held:
                rows.append(item)
        return rows

    def train_batch(self, step: int) -> tuple[Batch, bool]:
        return self._batch(self._draw(seed_for(step, self.seed), self.B, False)), True

    def eval_batches(self) -> Iterator[Batch]:
        for i in range(self.num_eval):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i, 0x5E02]))
            yield self._batch(self._draw(rng, self.B, True))


class Transduce(_Strings):
    """Text-to-text: ``reverse``, ``sort`` or ``add`` (see the module docstring)."""

    def __init__(self, *, task: str = "reverse", min_len: int = 1, max_len: int = 10,
                 alphabet: str = string.digits + "abcdefghij", batch_size: int = 64,
                 eval_batches: int | None = None, seed: int = 0):  # fmt: skip
        if task not in TASKS:
            raise ValueError(f"unknown string task {task!r}; expected one of {TASKS}")
        if not 1 <= int(min_len) <= int(max_len):
            raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        chars = string.digits + "+" if task == "add" else alphabet
        super().__init__(chars, batch_size, eval_batches, seed)
        self.task, self.min_len, self.max_len, self.alphabet = task, min_len, max_len, alphabet
        if task == "add":
            self.S, self.T = 2 * max_len + 1, max_len + 2
        else:
            self.S, self.T = max_len, max_len + 1
        self.model_spec = {"architecture": "seq2seq", "vocab_size": len(self.vocab),
                           "out_features": len(self.vocab), "loss": "xent"}  # fmt: skip

    def answer(self, source: str) -> str:
        if self.task == "reverse":
            return source[::-1]
        if self.task == "sort":
            return "".join(sorted(source))
        a, b = source.split("+")
        return str(int(a) + int(b))

    def _sample(self, rng) -> tuple[str, str]:
        if self.task == "add":
            a, b = (
                int(rng.integers(0, 10 ** int(rng.integers(1, self.max_len + 1)))) for _ in "ab"
            )
            source = f"{a}+{b}"
        else:
            n = int(rng.integers(self.min_len, self.max_len + 1))
            source = "".join(rng.choice(list(self.alphabet), n))
        return source, self.answer(source)

    def _batch(self, rows) -> Batch:
        return {
            "inputs": np.array([self.encode(s, self.S) for s, _ in rows], np.int32),
            "seq_lengths": np.array([len(s) for s, _ in rows], np.int32),
            "targets": np.array([self.encode(t, self.T, eos=True) for _, t in rows], np.int32),
            "mask": np.array(
                [[1.0] * (len(t) + 1) + [0.0] * (self.T - len(t) - 1) for _, t in rows], np.float32
            ),  # fmt: skip
        }

    def metadata(self) -> dict[str, Any]:
        return {"task": self.task, "vocab": self.vocab, "source_length": self.S,
                "target_length": self.T, "split": "validation iff crc32(source) % 10 == 0",
                "baseline": {"exact_match": 0.0}}  # fmt: skip


class ConditionalStrings(_Strings):
    """Strings of a requested class (see the module docstring)."""

    LETTERS = string.ascii_lowercase
    # A generative task over a small set of strings (3,900 alternating ones, 33 digit runs):
    # validation draws fresh samples of the same distribution (another seed stream), not unseen
    # strings -- a held-out split would penalize the model for giving unseen valid strings mass.
    disjoint = False

    def __init__(self, *, max_len: int = 8, batch_size: int = 64,
                 eval_batches: int | None = None, seed: int = 0):  # fmt: skip
        if int(max_len) < 3:
            raise ValueError(f"max_len must be >= 3, got {max_len}")
        super().__init__(string.digits + self.LETTERS, batch_size, eval_batches, seed)
        self.max_len, self.T = int(max_len), int(max_len) + 1
        self.model_spec = {"architecture": "conditional", "vocab_size": len(self.vocab),
                           "out_features": len(self.vocab), "num_classes": len(CLASSES),
                           "loss": "xent"}  # fmt: skip

    def _sample(self, rng) -> tuple[str, int]:
        c, n = int(rng.integers(len(CLASSES))), int(rng.integers(3, self.max_len + 1))
        if CLASSES[c] in ("ascending", "descending"):
            n = min(n, 10)
            start = int(rng.integers(0, 11 - n))  # digits start..start+n-1 fit in 0..9
            run = string.digits[start : start + n]
            text = run if CLASSES[c] == "ascending" else run[::-1]
        elif CLASSES[c] == "repeat":
            text = str(rng.choice(list(self.LETTERS))) * n
        else:
            a, b = rng.choice(list(self.LETTERS), 2, replace=False)
            text = "".join(str(a) if i % 2 == 0 else str(b) for i in range(n))
        return f"{c}:{text}", c  # the split key includes the class

    @staticmethod
    def classify(text: str) -> int:
        """The class ``text`` belongs to (index into :data:`CLASSES`), or -1 for none."""
        if len(text) < 3:
            return -1
        if text.isdigit():
            steps = {ord(b) - ord(a) for a, b in zip(text, text[1:])}
            return {frozenset({1}): 0, frozenset({-1}): 1}.get(frozenset(steps), -1)
        if not (text.isalpha() and text.islower()):
            return -1
        if len(set(text)) == 1:
            return 2
        a, b = text[0], text[1]
        if a != b and all(ch == (a if i % 2 == 0 else b) for i, ch in enumerate(text)):
            return 3
        return -1

    def _batch(self, rows) -> Batch:
        texts = [key.split(":", 1)[1] for key, _ in rows]
        targets = np.array([self.encode(t, self.T, eos=True) for t in texts], np.int32)
        inputs = np.concatenate([np.full((len(rows), 1), BOS, np.int32), targets[:, :-1]], 1)
        return {"inputs": inputs, "targets": targets,
                "condition": np.array([c for _, c in rows], np.int32),
                "mask": (np.arange(self.T)[None, :] <= np.array([len(t) for t in texts])[:, None]
                         ).astype(np.float32)}  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        return {"classes": list(CLASSES), "vocab": self.vocab, "target_length": self.T,
                "split": "validation: fresh samples (another seed stream), same distribution"}  # fmt: skip


#: The registry factories (``rnnlab.data.make("strings", task=...)``, ``make("class_strings")``).
make_transduce = Transduce
make_conditional = ConditionalStrings
