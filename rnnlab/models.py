"""Task heads on top of the engine: language model / tagger, sequence classifier, regressor.

One Linen module, :class:`SequenceModel`, covers the task shapes that read a sequence:

* many-to-many (``readout="all"``): a prediction per step -- the character language model
  (``CharLM``), a tagger, the copy task;
* many-to-one (``readout="last"`` or ``"mean"``): one prediction per sequence -- the adding
  problem (regression), parity or temporal order (classification).

Inputs are either token ids ``[B, T]`` (embedded with ``nn.Embed`` when ``vocab_size`` is set)
or features ``[B, T, D]``. Shapes: ``B`` batch, ``T`` time, ``H`` hidden, ``V`` vocab,
``K`` = ``out_features``.

The trainer's contract: every model has a method
``loss(batch, carry=None, *, deterministic=True) -> (loss, aux, new_carry)`` (a scalar, a dict of
scalars with at least ``"loss"``, and the carry to feed into the next chunk of a stream), and the
trainer only ever calls ``model.init`` and ``model.apply(..., method="loss")``. So any
architecture with a ``loss`` method trains. :func:`build` makes a model from the config's
``model`` section and the dataset's ``model_spec``; :data:`ARCHITECTURES` is the name table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import regularizers
from rnnlab.blocks import BlockModel
from rnnlab.captioning import Captioner
from rnnlab.engine import RNN, Embedded, RNNOutput
from rnnlab.seq2seq import Conditional, Seq2Seq

READOUTS = ("all", "last", "mean")
#: the engine.RNN regularizer fields SequenceModel passes through (rnnlab.regularizers)
REGULARIZERS = (
    "variational_dropout_in",
    "variational_dropout_out",
    "recurrent_dropout",
    "zoneout_c",
    "zoneout_h",
    "weight_drop",
)
LOSSES = ("xent", "mse")


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
    remat: bool | str = False  # True (per step) | "chunked" (see rnnlab.engine.run.unroll)
    unroll: int = 1
    backward: str = "auto"  # auto | autodiff | fused (see rnnlab.engine.run.unroll)
    scan: str = "auto"  # auto | sequential | associative (linear cells)
    # Regularizers (docs/regularization.md): drop probabilities in [0, 1), inverted dropout
    embed_dropout: float = 0.0  # whole rows of the embedding table (token inputs only)
    variational_dropout_in: float = 0.0  # locked dropout on the RNN's input (see engine.RNN)
    variational_dropout_out: float = 0.0  # locked dropout on every RNN layer's output
    recurrent_dropout: float = 0.0  # one mask per sequence on h_{t-1} where it enters W_h
    zoneout_c: float = 0.0  # zoneout on an LSTM's c
    zoneout_h: float = 0.0  # zoneout on h
    weight_drop: float = 0.0  # DropConnect on W_h, one mask per batch
    loss_type: str = "xent"  # xent (int targets) | mse (float targets); the spec's "loss"
    dtype: Any = None

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss_type!r}")
        if regularizers.check_rate("embed_dropout", self.embed_dropout) and not self.vocab_size:
            raise ValueError(
                f"embed_dropout={self.embed_dropout} drops rows of the embedding table, but "
                "this model reads features [B, T, D], not token ids: use "
                "variational_dropout_in for feature inputs"
            )
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
            backward=self.backward,
            scan=self.scan,
            dtype=self.dtype,
            **{k: getattr(self, k) for k in REGULARIZERS},
        )
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.out_features, dtype=self.dtype)

    def embed_inputs(self, inputs: jax.Array) -> jax.Array:
        """Token ids ``[B, T]`` -> ``[B, T, E]``; features pass through."""
        if self.vocab_size is None:
            return inputs
        return self.embed(self.check_ids(inputs))

    def rnn_inputs(self, inputs: jax.Array):
        """What the RNN stack reads: features as they are; token ids as :class:`Embedded` ids
        into the embedding table, so the first layer projects the table, not every token."""
        if self.vocab_size is None:
            return inputs
        return Embedded(self.check_ids(inputs), self.embed.embedding)

    @staticmethod
    def check_ids(inputs: jax.Array) -> jax.Array:
        if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError(
                f"expected integer token ids of shape [B, T], got {inputs.dtype} {inputs.shape}"
            )
        return inputs

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
        x = self.rnn_inputs(inputs)
        if self.embed_dropout > 0 and not deterministic:  # one row mask per batch
            key = self.make_rng("dropout")
            x = Embedded(x.ids, regularizers.embedding_dropout(key, x.table, self.embed_dropout))
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

    def loss(
        self,
        batch: Mapping[str, jax.Array],
        carry: Sequence | None = None,
        *,
        deterministic: bool = True,
    ):
        """``(loss, aux, new_carry)`` for one batch (the trainer's only entry point).

        ``batch``: ``inputs`` ``[B, T]`` ids or ``[B, T, D]``; ``targets``; optional ``mask``
        (loss weights, ``[B, T]`` per step or ``[B]`` per sequence) and ``seq_lengths [B]``.

        * ``xent``: targets int ``[B, T]`` (``readout="all"``) or ``[B]``;
          ``loss = sum_i w_i * -log softmax(logits_i)[y_i] / sum_i w_i`` with ``w`` the mask,
          else the valid steps ``t < seq_lengths[b]``, else ones. ``aux``: ``loss``,
          ``accuracy`` (argmax hit rate, same weights).
        * ``mse``: targets float ``[B, K]`` or ``[B, T, K]``; the weighted mean over all
          elements of ``(y - target)^2``. ``aux``: ``loss``.
        """
        seq_lengths = batch.get("seq_lengths")
        outputs, new_carry, _ = self(
            batch["inputs"], carry, seq_lengths=seq_lengths, deterministic=deterministic
        )
        targets = batch["targets"]
        outputs = outputs.astype(jnp.float32)  # the loss in float32 whatever the compute dtype
        per_step = outputs.ndim == 3
        weights = batch.get("mask")
        if weights is None and per_step and seq_lengths is not None:
            T = outputs.shape[1]
            weights = jnp.arange(T)[None, :] < seq_lengths[:, None]  # [B, T]
        lead = outputs.shape[:-1]  # [B, T] or [B]
        weights = jnp.ones(lead, jnp.float32) if weights is None else weights
        weights = weights.astype(jnp.float32)
        if weights.shape != lead:
            raise ValueError(f"mask must have shape {lead}, got {weights.shape}")
        total = jnp.maximum(weights.sum(), 1e-9)
        if self.loss_type == "xent":
            if targets.shape != lead or not jnp.issubdtype(targets.dtype, jnp.integer):
                raise ValueError(
                    f"xent loss: expected int targets of shape {lead}, "
                    f"got {targets.dtype} {targets.shape}"
                )
            logp = jax.nn.log_softmax(outputs, axis=-1)
            nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # lead
            loss = (nll * weights).sum() / total
            hit = (jnp.argmax(outputs, axis=-1) == targets).astype(jnp.float32)
            return loss, {"loss": loss, "accuracy": (hit * weights).sum() / total}, new_carry
        if targets.shape != outputs.shape:
            raise ValueError(
                f"mse loss: expected targets of shape {outputs.shape}, got {targets.shape}"
            )
        err = jnp.square(outputs - targets.astype(jnp.float32)).mean(axis=-1)  # lead
        loss = (err * weights).sum() / total
        return loss, {"loss": loss}, new_carry


def CharLM(vocab_size: int, **kwargs) -> SequenceModel:
    """Karpathy's character-level language model: embed -> RNN stack -> logits ``[B, T, V]``."""
    return SequenceModel(out_features=vocab_size, vocab_size=vocab_size, readout="all", **kwargs)


# name -> model class; the dataset's model_spec (or the config) picks one. Each class takes
# fields named like the config's model keys (those it lacks are left out) and has ``loss``.
ARCHITECTURES: dict[str, type] = {
    "sequence": SequenceModel,
    "seq2seq": Seq2Seq,  # rnnlab/seq2seq.py: encoder-decoder (+ attention, beam search)
    "conditional": Conditional,  # rnnlab/seq2seq.py: one-to-many, class-conditioned
    "captioning": Captioner,  # rnnlab/captioning.py: CNN encoder + (attention) RNN decoder
    "block": BlockModel,  # rnnlab/blocks.py: residual blocks (norm, conv, cell, gated MLP)
}


#: config ``model.remat`` -> the engine's ``remat`` argument
REMAT = {"none": False, "step": True, "chunked": "chunked"}


def build(model_config, model_spec: Mapping[str, Any]) -> nn.Module:
    """A model from the config's ``model`` section and the dataset's ``model_spec``.

    ``model_spec`` (from the dataset) fixes what the task dictates -- ``architecture``,
    ``out_features``, ``vocab_size``, ``readout``, ``loss`` (-> the ``loss_type`` field) -- and
    wins over the config; the config gives the rest (cell, sizes, dropout, ...). A config key
    the architecture has no field for is refused (:class:`rnnlab.config.ConfigError`) when its
    value differs from the base config's (it would do nothing); left at the default it is left
    out. So is a ``model.architecture`` the dataset overrules. Spec keys the architecture lacks
    are an error.
    """
    from rnnlab import config as config_lib

    spec = dict(model_spec)
    base = config_lib.get_config().model
    name = spec.pop("architecture", None) or model_config.architecture
    if name == "sequence" and model_config.architecture == "block":  # a drop-in: same
        name = "block"  # inputs, outputs and loss, so the config may choose it
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    chosen = model_config.architecture
    if chosen != name and chosen != base.architecture:
        raise config_lib.ConfigError(
            f"model.architecture={chosen!r} has no effect: the dataset fixes architecture "
            f"{name!r}; leave model.architecture at {base.architecture!r} or pick a dataset "
            f"made for {chosen!r}"
        )
    cls = ARCHITECTURES[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    if "loss" in spec:
        spec["loss_type"] = spec.pop("loss")
    kwargs = {}
    for key, value in dict(model_config).items():
        value = value.to_dict() if hasattr(value, "to_dict") else value
        if key == "architecture" or key in spec:
            continue  # the dataset fixes these (and wins)
        if key in fields:
            kwargs[key] = value
            continue
        default = base[key] if key in base else None
        if key not in base or value != (default.to_dict() if key == "cell_options" else default):
            raise config_lib.ConfigError(
                f"model.{key}={value!r} has no effect: architecture {name!r} "
                f"({cls.__name__}) has no {key!r} field; leave it at its default {default!r} "
                "or choose an architecture that uses it"
            )
    if "remat" in kwargs:  # the config names the engine's remat modes (rnnlab.engine)
        if kwargs["remat"] not in REMAT:
            raise config_lib.ConfigError(
                f"model.remat must be one of {sorted(REMAT)}, got {kwargs['remat']!r}"
            )
        kwargs["remat"] = REMAT[kwargs["remat"]]
    unknown = sorted(set(spec) - fields)
    if unknown:
        raise ValueError(f"model_spec keys {unknown} are not fields of {cls.__name__}")
    kwargs.update(spec)
    return cls(**kwargs)


def next_token(dataset) -> bool:
    """Whether ``dataset``'s loss is next-token prediction: per-step (``readout="all"``)
    cross-entropy whose target at step t is the input at step t + 1 -- a ``"stream"`` dataset
    (a corpus as contiguous streams) or one whose first train batch has
    ``targets[:, :-1] == inputs[:, 1:]``. A model that reads later steps would see its own
    targets (a bidirectional language model reports a loss far below the honest one)."""
    spec = dict(getattr(dataset, "model_spec", {}) or {})
    if spec.get("readout", "all") != "all" or spec.get("loss", "xent") != "xent":
        return False
    if getattr(dataset, "kind", None) == "stream":
        return True
    batch, _ = dataset.train_batch(0)
    x, y = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
    if x.ndim != 2 or x.shape != y.shape or x.shape[1] < 2:
        return False
    return bool(np.array_equal(y[:, :-1], x[:, 1:]))


def check_causal(model_config, dataset) -> None:
    """Refuse (:class:`rnnlab.config.ConfigError`) a model that reads later steps -- today
    ``model.bidirectional`` -- for a next-token loss (:func:`next_token`)."""
    from rnnlab import config as config_lib

    if model_config.get("bidirectional", False) and next_token(dataset):
        name = type(dataset).__name__
        raise config_lib.ConfigError(
            "model.bidirectional=True reads later steps, but the dataset "
            f"({name}) trains next-token prediction: the model would see the targets it "
            "predicts. Use model.bidirectional=false (a causal model) for language models."
        )
