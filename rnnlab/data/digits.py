"""Digit strips: 2-4 of scikit-learn's bundled 8x8 handwritten digits side by side, captioned
with their words ("three one four"). No network: ``sklearn.datasets.load_digits`` ships the
1797 images (UCI optdigits test set, 16 grey levels) inside the package (``pip install
'rnnlab[captioning]'``).

Split first, then compose: the source images are permuted once by ``split_seed`` and the last
``val_fraction`` of them are held out, so no held-out strip contains a digit image any training
strip contains (``metadata()`` records both counts and that the index sets are disjoint).

A strip of ``n ~ U{min_digits..max_digits}`` digits, ``d_1 .. d_n``: the images (scaled to
``[0, 1]``) side by side, starting at a random column in ``[0, W - 8n]`` (``shift``; else at 0)
of a blank ``[8, W]`` canvas, ``W = 8 * max_digits``. Caption ids ``[T]``, ``T = max_digits +
1``: ``3 + d_1, .., 3 + d_n, EOS, PAD ..`` (``PAD = 0, BOS = 1, EOS = 2`` as in
:mod:`rnnlab.seq2seq`; word ``w`` is id ``3 + w``). ``kind="batch"``: train batch ``step`` is a
pure function of ``(seed, step)``; the held-out set is fixed by ``seed``.

Batch: ``inputs [B, 8, W]`` float32, ``targets [B, T]`` int32. ``model_spec``: the
``captioning`` architecture (:mod:`rnnlab.captioning`) over ``V = 13`` ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from rnnlab.data import seed_for

PAD, BOS, EOS = 0, 1, 2
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOCAB = ("<pad>", "<bos>", "<eos>", *WORDS)
SIDE = 8  # the sklearn digits are 8x8


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 8, 8] float32 in [0, 1], labels [N] int)`` from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise RuntimeError(
            "the digit strips need scikit-learn (its bundled 8x8 digits): "
            "pip install 'rnnlab[captioning]' (or scikit-learn)"
        ) from None
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


class DigitStrips:
    """The ``digit_strips`` dataset (see the module docstring)."""

    kind = "batch"

    def __init__(self, *, batch_size: int = 64, val_fraction: float = 0.2,
                 eval_batches: int | None = None, seed: int = 0, min_digits: int = 2,
                 max_digits: int = 4, shift: bool = True, split_seed: int = 0):  # fmt: skip
        if not (isinstance(min_digits, int) and isinstance(max_digits, int)):
            raise ValueError(
                f"min_digits/max_digits must be ints, got {min_digits!r}, {max_digits!r}"
            )
        if not 1 <= min_digits <= max_digits:
            raise ValueError(
                f"need 1 <= min_digits <= max_digits, got min_digits={min_digits}, "
                f"max_digits={max_digits}"
            )
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.B, self.seed = int(batch_size), int(seed)
        self.min_digits, self.max_digits, self.shift = min_digits, max_digits, bool(shift)
        self.num_eval = int(eval_batches or 8)
        self.W, self.T = SIDE * max_digits, max_digits + 1
        images, labels = load_images()
        order = np.random.default_rng(split_seed).permutation(len(images))
        n_val = int(round(val_fraction * len(images)))
        self.train_idx, self.val_idx = np.sort(order[:-n_val]), np.sort(order[-n_val:])
        self.images, self.labels = images, labels
        self.split_seed, self.val_fraction = int(split_seed), float(val_fraction)
        self.model_spec: dict[str, Any] = {"architecture": "captioning", "vocab_size": len(VOCAB)}

    # ------------------------------------------------------------------------ composing

    def compose(self, rng: np.random.Generator, pool: np.ndarray, B: int) -> dict:
        """``B`` strips from the source images ``pool`` (indices): inputs, targets, and the
        source ``indices [B, max_digits]`` (-1 where no digit) for inspection."""
        n = rng.integers(self.min_digits, self.max_digits + 1, B)
        picks = pool[rng.integers(0, len(pool), (B, self.max_digits))]
        starts = rng.integers(0, self.W - SIDE * n + 1) if self.shift else np.zeros(B, int)
        inputs = np.zeros((B, SIDE, self.W), np.float32)
        targets = np.zeros((B, self.T), np.int32)
        used = np.full((B, self.max_digits), -1)
        for b in range(B):  # B * n small copies: a few microseconds each
            for i in range(n[b]):
                col = starts[b] + SIDE * i
                inputs[b, :, col : col + SIDE] = self.images[picks[b, i]]
                targets[b, i] = 3 + self.labels[picks[b, i]]
                used[b, i] = picks[b, i]
            targets[b, n[b]] = EOS
        return {"inputs": inputs, "targets": targets, "indices": used}

    def train_batch(self, step: int):
        batch = self.compose(seed_for(step, self.seed), self.train_idx, self.B)
        del batch["indices"]
        return batch, True

    def eval_batches(self) -> Iterator[dict]:
        for i in range(self.num_eval):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i, 0xD161]))
            batch = self.compose(rng, self.val_idx, self.B)
            del batch["indices"]
            yield batch

    def heldout_indices(self) -> Iterator[np.ndarray]:
        """The source image indices of each eval batch's strips (``[B, max_digits]``)."""
        for i in range(self.num_eval):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i, 0xD161]))
            yield self.compose(rng, self.val_idx, self.B)["indices"]

    def decode(self, ids) -> str:
        """Caption ids -> ``"three one four"`` (stops at EOS; PAD/BOS dropped)."""
        words = []
        for i in np.asarray(ids).tolist():
            if i == EOS:
                break
            if i >= 3:
                words.append(VOCAB[i])
        return " ".join(words)

    def metadata(self) -> dict[str, Any]:
        import sklearn

        return {
            "task": "digit_strips",
            "source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
            "vocab": list(VOCAB),
            "image_shape": [SIDE, self.W],
            "caption_length": self.T,
            "digits_per_strip": [self.min_digits, self.max_digits],
            "shift": self.shift,
            "split_seed": self.split_seed,
            "train_images": int(len(self.train_idx)),
            "heldout_images": int(len(self.val_idx)),
            "disjoint": not bool(np.intersect1d(self.train_idx, self.val_idx).size),
            "eval_strips": self.B * self.num_eval,
            "batch_size": self.B,
            "seed": self.seed,
        }


def make(*, batch_size: int = 64, val_fraction: float = 0.2, eval_batches: int | None = None,
         seed: int = 0, min_digits: int = 2, max_digits: int = 4, shift: bool = True,
         split_seed: int = 0) -> DigitStrips:  # fmt: skip
    """The ``digit_strips`` dataset; see :mod:`rnnlab.data.digits`."""
    return DigitStrips(batch_size=batch_size, val_fraction=val_fraction,
                       eval_batches=eval_batches, seed=seed, min_digits=min_digits,
                       max_digits=max_digits, shift=shift, split_seed=split_seed)  # fmt: skip
