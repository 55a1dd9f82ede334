"""Datasets: text corpora for language models and the synthetic long-range tasks.

Every dataset the trainer (:mod:`rnnlab.train`) consumes follows :class:`Dataset`. Batches are
pure functions of the step number, so a resumed run sees exactly the data an uninterrupted run
would (exact resume), and sharding/seeds never change the data order.

Batch layout (numpy arrays; ``B`` batch, ``T`` time, ``D`` features):

* ``inputs``: ``[B, T]`` int token ids or ``[B, T, D]`` float features;
* ``targets``: ``[B, T]`` int (per-step classes), ``[B]`` int (one class per sequence) or
  ``[B, K]`` float (regression);
* optional ``mask``: ``[B, T]`` float loss weights; optional ``seq_lengths``: ``[B]`` int.

Datasets are looked up by name: :func:`make` ``(name, **kwargs)``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

Batch = dict[str, np.ndarray]


class Dataset(Protocol):
    """What the trainer needs from a dataset."""

    #: "stream": consecutive train batches continue the same B contiguous streams, so the trainer
    #: carries the hidden state across batches (truncated BPTT) and resets it when
    #: ``train_batch`` says ``reset``; "batch": independent batches, the state starts fresh.
    kind: str
    #: what the task fixes about the model, merged over the config's model section by
    #: ``rnnlab.models.build``: ``architecture`` (default "sequence"), ``out_features``,
    #: ``vocab_size`` for token inputs, ``readout`` ("all" per step, "last"/"mean" per
    #: sequence) and ``loss`` ("xent": softmax cross-entropy on int targets; "mse").
    model_spec: dict[str, Any]

    def train_batch(self, step: int) -> tuple[Batch, bool]:
        """The batch for train step ``step`` and whether the carry resets before it."""

    def eval_batches(self) -> Iterator[Batch]:
        """The fixed validation set, in order (streams: contiguous chunks, state carried)."""

    def metadata(self) -> dict[str, Any]:
        """JSON-able facts the workdir keeps (vocabulary, split, baselines) as ``data.json``."""


# name -> "module:factory" (module relative to rnnlab.data). Each module documents its datasets.
REGISTRY = {
    "text": "text:make",
    "words": "words:make",
    "adding": "tasks:make_adding",
    "adding_hochreiter": "tasks:make_adding_hochreiter",
    "copy": "tasks:make_copy",
    "temporal_order": "tasks:make_temporal_order",
    "parity": "tasks:make_parity",
    "selective_copy": "tasks:make_selective_copy",
    "strings": "strings:make_transduce",
    "class_strings": "strings:make_conditional",
    "digit_strips": "digits:make",  # captioning: sklearn's 8x8 digits side by side
}


def names() -> list[str]:
    return sorted(REGISTRY)


def make(name: str, **kwargs) -> Dataset:
    """Build the dataset registered as ``name`` with its keyword options."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown dataset {name!r}.{hint} Known: {', '.join(names())}.")
    module, factory = REGISTRY[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), factory)(**kwargs)


def seed_for(step: int, seed: int) -> np.random.Generator:
    """A numpy generator that depends only on ``(seed, step)``: batches derive from the step."""
    return np.random.default_rng(np.random.SeedSequence([seed, step]))
