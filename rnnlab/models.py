"""Task heads on top of the engine: language model / tagger, sequence classifier, regressor.

One Linen module, :class:`SequenceModel`, covers the task shapes that read a sequence:

* many-to-many (``readout="all"``): a prediction per step -- the character language model
  (``CharLM``), a tagger, the copy task;
* many-to-one (``readout="last"`` or ``"mean"``): one prediction per sequence -- the adding
  problem (regression), parity or temporal order (classification).

Inputs are either token ids ``[B, T]`` (embedded with ``nn.Embed`` when ``vocab_size`` is set)
or features ``[B, T, D]``. Shapes: ``B`` batch, ``T`` time, ``H`` hidden, ``V`` vocab,
``K`` = ``out_features``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.unroll import RNN, RNNOutput

READOUTS = ("all", "last", "mean")


class SequenceModel(nn.Module):
    """``[B, T]`` tokens or ``[B, T, D]`` features -> RNN stack -> ``Dense(K)``.

    ``__call__`` returns ``(outputs, final_carry, states)``: outputs are ``[B, T, K]`` for
    ``readout="all"`` and ``[B, K]`` otherwise; ``final_carry`` is the per-layer carry list to
    feed back as ``carry`` (truncated BPTT, sampling); ``states`` is ``None`` unless asked for.
    """

    out_features: int
    hidden_size: int = 128
    cell: str | type = "lstm"
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between recurrent layers and before the head (char-rnn style)
    residual: bool = False
    initial_carry: str = "zeros"
    cell_options: Mapping | None = None
    vocab_size: int | None = None  # token inputs when set
    embed_dim: int = 64  # embedding width for token inputs
    readout: str = "all"  # all | last | mean
    remat: bool = False
    unroll: int = 1
    dtype: Any = None

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        super().__post_init__()

    def setup(self):
        if self.vocab_size is not None:
            self.embed = nn.Embed(self.vocab_size, self.embed_dim)
        self.rnn = RNN(
            self.cell,
            self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            residual=self.residual,
            initial_carry=self.initial_carry,
            cell_options=self.cell_options,
            remat=self.remat,
            unroll=self.unroll,
            dtype=self.dtype,
        )
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.out_features, dtype=self.dtype)

    def embed_inputs(self, inputs: jax.Array) -> jax.Array:
        """Token ids ``[B, T]`` -> ``[B, T, E]``; features pass through."""
        if self.vocab_size is None:
            return inputs
        if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError(
                f"expected integer token ids of shape [B, T], got {inputs.dtype} {inputs.shape}"
            )
        return self.embed(inputs)

    def __call__(
        self,
        inputs: jax.Array,
        carry: Sequence | None = None,
        *,
        seq_lengths: jax.Array | None = None,
        deterministic: bool = True,
        return_states: bool = False,
        perturbation: Sequence | None = None,
    ):
        x = self.embed_inputs(inputs)
        out: RNNOutput = self.rnn(
            x,
            seq_lengths,
            carry,
            deterministic=deterministic,
            perturbation=perturbation,
            return_states=return_states,
        )
        y = out.outputs  # [B, T, H*dirs]
        if self.readout == "last":
            if seq_lengths is None:
                y = y[:, -1]
            else:  # the output at each sequence's last valid step
                idx = jnp.maximum(seq_lengths - 1, 0)[:, None, None]
                y = jnp.take_along_axis(y, idx, axis=1)[:, 0]
        elif self.readout == "mean":
            if seq_lengths is None:
                y = y.mean(axis=1)
            else:  # padded outputs are zero, so the sum runs over valid steps only
                y = y.sum(axis=1) / jnp.maximum(seq_lengths, 1)[:, None].astype(y.dtype)
        y = self.drop(y, deterministic=deterministic)
        return self.head(y), out.final_carry, out.states


def CharLM(vocab_size: int, **kwargs) -> SequenceModel:
    """Karpathy's character-level language model: embed -> RNN stack -> logits ``[B, T, V]``."""
    return SequenceModel(out_features=vocab_size, vocab_size=vocab_size, readout="all", **kwargs)
