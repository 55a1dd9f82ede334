"""Sequence-to-sequence and one-to-many models: an RNN decoder over tokens, compiled decoding.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding, ``H`` hidden,
``M`` encoder output width (``H``, or ``2H`` bidirectional), ``V`` vocabulary, ``K`` beams.
Token ids: ``PAD = 0``, ``BOS = 1``, ``EOS = 2`` (:mod:`rnnlab.data.strings` uses the same).

* :class:`Seq2Seq` (Sutskever et al. 2014; Cho et al. 2014): the encoder is the engine's
  :class:`rnnlab.RNN` over the embedded source (``seq_lengths`` masking, optional bidirectional
  and stacked); the decoder starts from the encoder's final carry and runs one cell of the same
  kind, token by token, reusing the cell's ``step`` inside the engine's step loop
  (:func:`rnnlab.engine.step_loop`). Optional Bahdanau
  additive attention (Bahdanau, Cho & Bengio 2015), with ``m_j`` the encoder outputs::

      e_tj = v . tanh(W_q q_{t-1} + W_k m_j + b),   alpha_t = softmax_j(e_t) (masked to S_b)
      c_t  = sum_j alpha_tj m_j,   (s_t, o_t) = cell(s_{t-1}, [embed(y_{t-1}), c_t])
      p(y_t | y_<t, x) = softmax(W_o [o_t, c_t])

  where ``q_{t-1}`` is the decoder's previous carry (all leaves concatenated). ``W_k m_j`` is
  computed once per source, before the loop.
* :class:`Conditional` (one-to-many): the same decoder, started from ``tanh(Dense(embed(c)))``
  of a class ``c`` and fed ``embed(c)`` at every step beside the previous token.

Training uses teacher forcing (``loss``); decoding is :meth:`Seq2Seq.greedy`,
:meth:`Seq2Seq.beam_search` and :meth:`Conditional.generate`: fixed-length step loops
(no Python per-token dispatch); after ``EOS`` a sequence emits ``PAD``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab import cells as cell_registry
from rnnlab.engine import RNN, step_loop

PAD, BOS, EOS = 0, 1, 2
NEG = -1e9  # a finite "minus infinity": -inf - -inf would be NaN in beam bookkeeping


def _flat(carry) -> jax.Array:
    return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree.leaves(carry)], -1)


class DecoderStep(nn.Module):
    """One decoder step: ``(carry, x [B, E'], memory, keys, src_mask) -> (carry, logits [B, V])``."""

    cell: str
    hidden_size: int
    vocab_size: int
    cell_options: Mapping | None = None
    attention: bool = False
    attention_size: int = 64

    def setup(self):
        options = dict(self.cell_options or {})
        self.rnn_cell = cell_registry.get(self.cell)(hidden_size=self.hidden_size, **options)
        if self.attention:
            self.w_q = nn.Dense(self.attention_size, use_bias=False)
            self.w_k = nn.Dense(self.attention_size)
            self.v = nn.Dense(1, use_bias=False)
        self.head = nn.Dense(self.vocab_size)

    def keys(self, memory: jax.Array) -> jax.Array:
        """``W_k m + b``: ``[B, S, M] -> [B, S, A]``, once per source (hoisted out of the loop)."""
        return self.w_k(memory)

    def initialize(self, carry, x, memory=None, src_mask=None):
        """What ``init`` runs: every parameter, keys included."""
        keys = self.keys(memory) if self.attention else None
        return self(carry, x, memory, keys, src_mask)

    def __call__(self, carry, x, memory=None, keys=None, src_mask=None):
        ctx = None
        if self.attention:
            q = self.w_q(_flat(carry))[:, None, :]  # [B, 1, A]
            e = self.v(jnp.tanh(keys + q))[..., 0]  # [B, S]
            alpha = jax.nn.softmax(jnp.where(src_mask, e, NEG), axis=-1)
            ctx = jnp.einsum("bs,bsm->bm", alpha, memory)  # [B, M]
            x = jnp.concatenate([x, ctx], axis=-1)
        carry, y = self.rnn_cell(carry, x)  # the cell's own step (project + step)
        out = y if ctx is None else jnp.concatenate([y, ctx], axis=-1)
        return carry, self.head(out)


def _zero_carry(cell: str, hidden_size: int, options, width: int):
    """A ``[1, ...]`` zeros carry of the cell (for shapes; needs no params)."""
    cls = cell_registry.get(cell)
    return cls(hidden_size=hidden_size, **dict(options or {}), parent=None).initialize_carry(
        None, (1, width)
    )


def _xent(logits, targets, mask) -> tuple[jax.Array, dict]:
    """Masked softmax cross-entropy and token accuracy; ``logits [B, T, V]``, ``mask [B, T]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    total = jnp.maximum(mask.sum(), 1.0)
    loss = (nll * mask).sum() / total
    hit = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return loss, {"loss": loss, "accuracy": (hit * mask).sum() / total}


def _exact(pred, targets) -> jax.Array:
    """Fraction of rows where the decoded ids equal the target ids everywhere (PAD included)."""
    return jnp.mean(jnp.all(pred == targets, axis=-1).astype(jnp.float32))


def decode(step_fn, carry, embed, T: int, *, rng=None, temperature: float = 1.0):
    """Greedy (``rng=None``) or sampled decoding from ``BOS`` for ``T`` steps: ``[B, T]`` ids.

    ``step_fn(carry, x [B, E]) -> (carry, logits [B, V])``; ``embed [V, E]``.
    """
    B = jax.tree.leaves(carry)[0].shape[0]

    def body(state, t):
        carry, prev, done = state
        carry, logits = step_fn(carry, embed[prev])
        if rng is None:
            tok = jnp.argmax(logits, axis=-1)
        else:
            tok = jax.random.categorical(jax.random.fold_in(rng, t), logits / temperature)
        tok = jnp.where(done, PAD, tok).astype(jnp.int32)
        return (carry, tok, done | (tok == EOS)), tok

    init = (carry, jnp.full((B,), BOS, jnp.int32), jnp.zeros((B,), bool))
    _, toks = step_loop(body, init, length=T)  # the engine's step loop
    return toks.T


def teacher_forced(step_fn, carry, embed, targets) -> jax.Array:
    """Logits ``[B, T, V]`` with the decoder fed ``[BOS, y_1 .. y_{T-1}]``."""
    B = targets.shape[0]
    prev = jnp.concatenate([jnp.full((B, 1), BOS, targets.dtype), targets[:, :-1]], axis=1)
    xs = jnp.swapaxes(embed[prev], 0, 1)  # [T, B, E]
    _, logits = step_loop(step_fn, carry, xs)
    return jnp.swapaxes(logits, 0, 1)


class Seq2Seq(nn.Module):
    """Encoder-decoder over token ids; ``loss(batch)`` with ``inputs [B, S]``, ``targets
    [B, T]`` (ending in EOS, PAD after), ``seq_lengths [B]`` (source), optional ``mask [B, T]``.
    """

    vocab_size: int
    out_features: int | None = None  # = vocab_size (the trainer's model_spec sets it)
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1  # encoder layers (the decoder is one cell)
    bidirectional: bool = False  # encoder; the decoder carry is then a Dense bridge of both
    embed_dim: int = 64
    cell_options: Mapping | None = None
    attention: bool = False  # Bahdanau additive attention
    attention_size: int = 64
    loss_type: str = "xent"
    remat: bool = False
    unroll: int = 1
    dtype: Any = None

    def __post_init__(self):
        if self.loss_type != "xent":
            raise ValueError(f"Seq2Seq trains with loss 'xent', got {self.loss_type!r}")
        if self.out_features not in (None, self.vocab_size):
            raise ValueError(f"Seq2Seq out_features must equal vocab_size {self.vocab_size}")
        super().__post_init__()

    def _decoder(self) -> DecoderStep:
        return DecoderStep(
            self.cell,
            self.hidden_size,
            self.vocab_size,
            self.cell_options,
            self.attention,
            self.attention_size,
            parent=None,
        )

    def setup(self):
        V, E, H = self.vocab_size, self.embed_dim, self.hidden_size
        self.embed = self.param("embed", nn.initializers.normal(1.0), (V, E))
        self.encoder = RNN(
            self.cell,
            H,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            cell_options=self.cell_options,
            remat=self.remat,
            unroll=self.unroll,
            dtype=self.dtype,
        )
        dec = self._decoder()
        M = H * (2 if self.bidirectional else 1)
        carry0 = _zero_carry(self.cell, H, self.cell_options, E)
        x0 = jnp.zeros((1, E))  # the token embedding; attention appends its context itself
        mem0 = jnp.zeros((1, 1, M))
        self.decoder_params = self.param(
            "decoder",
            lambda rng: dec.init(
                rng, carry0, x0, mem0, jnp.ones((1, 1), bool), method="initialize"
            )["params"],
        )
        if self.bidirectional:
            self.bridge = [nn.Dense(leaf.shape[-1]) for leaf in jax.tree.leaves(carry0)]

    def encode(self, src, src_lengths=None):
        """``src [B, S]`` -> ``(decoder carry, step_fn)`` with attention memory bound in."""
        if src.ndim != 2 or not jnp.issubdtype(src.dtype, jnp.integer):
            raise ValueError(f"expected source token ids [B, S], got {src.dtype} {src.shape}")
        out = self.encoder(self.embed[src], src_lengths)
        final = out.final_carry[-1]
        if self.bidirectional:
            both = [jnp.concatenate([f, b], -1) for f, b in zip(*map(jax.tree.leaves, final))]
            leaves = [jnp.tanh(d(x)) for d, x in zip(self.bridge, both)]
            final = jax.tree.unflatten(jax.tree.structure(final[0]), leaves)
        dec, params = self._decoder(), {"params": self.decoder_params}
        memory = out.outputs  # [B, S, M]
        S = src.shape[1]
        mask = (
            jnp.ones(src.shape, bool)
            if src_lengths is None
            else (jnp.arange(S)[None, :] < src_lengths[:, None])
        )
        keys = dec.apply(params, memory, method="keys") if self.attention else None

        def step_fn(carry, x, memory=memory, keys=keys, mask=mask):
            return dec.apply(params, carry, x, memory, keys, mask)

        return final, step_fn, (memory, keys, mask)

    def __call__(self, src, targets, src_lengths=None):
        """Teacher-forced logits ``[B, T, V]``."""
        carry, step_fn, _ = self.encode(src, src_lengths)
        return teacher_forced(step_fn, carry, self.embed, targets)

    def greedy(self, src, src_lengths=None, *, max_length: int):
        """Greedy decoding: ``[B, max_length]`` ids (PAD after EOS)."""
        carry, step_fn, _ = self.encode(src, src_lengths)
        return decode(step_fn, carry, self.embed, max_length)

    def beam_search(
        self,
        src,
        src_lengths=None,
        *,
        max_length: int,
        beam_size: int = 4,
        length_penalty: float = 0.0,
    ):
        """Beam search: ``(ids [B, max_length], log-prob score [B])`` of the best beam.

        Scores are summed log-probabilities up to and including EOS (a finished beam continues
        only with PAD at no cost), divided by ``length ** length_penalty`` at the end (0: none).
        """
        K, V, T = beam_size, self.vocab_size, max_length
        carry, _, (memory, keys, mask) = self.encode(src, src_lengths)
        B = src.shape[0]
        tile = lambda a: None if a is None else jnp.repeat(a, K, axis=0)  # [B*K, ...]
        carry = jax.tree.map(tile, carry)
        dec, params = self._decoder(), {"params": self.decoder_params}
        mem, ks, msk = tile(memory), tile(keys), tile(mask)
        pad_row = jnp.full((V,), NEG).at[PAD].set(0.0)

        def body(state, t):
            carry, toks, scores, done, prev = state
            carry, logits = dec.apply(params, carry, self.embed[prev.reshape(-1)], mem, ks, msk)
            logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(B, K, V)
            logp = jnp.where(done[..., None], pad_row, logp)
            cand = (scores[..., None] + logp).reshape(B, K * V)
            scores, idx = jax.lax.top_k(cand, K)  # [B, K]
            parent, tok = idx // V, (idx % V).astype(jnp.int32)
            pick = lambda a: jnp.take_along_axis(a, parent.reshape(B, K, *(1,) * (a.ndim - 2)), 1)
            carry = jax.tree.map(
                lambda c: pick(c.reshape(B, K, *c.shape[1:])).reshape(c.shape), carry
            )
            toks = pick(toks).at[:, :, t].set(tok)
            done = pick(done) | (tok == EOS)
            return (carry, toks, scores, done, tok), None

        scores = jnp.full((B, K), NEG).at[:, 0].set(0.0)  # one live beam at the start
        init = (
            carry,
            jnp.zeros((B, K, T), jnp.int32),
            scores,
            jnp.zeros((B, K), bool),
            jnp.full((B, K), BOS, jnp.int32),
        )
        (_, toks, scores, _, _), _ = step_loop(body, init, length=T)
        if length_penalty:
            lengths = jnp.maximum((toks != PAD).sum(-1), 1).astype(jnp.float32)
            scores = scores / lengths**length_penalty
        best = jnp.argmax(scores, axis=-1)  # [B]
        return jnp.take_along_axis(toks, best[:, None, None], 1)[:, 0], scores[jnp.arange(B), best]

    def loss(self, batch, carry=None, *, deterministic: bool = True):
        """``(loss, aux, None)``: teacher-forced cross-entropy; at eval also greedy exact match."""
        src, tgt, lengths = batch["inputs"], batch["targets"], batch.get("seq_lengths")
        mask = batch.get("mask")
        mask = (tgt != PAD) if mask is None else mask
        loss, aux = _xent(self(src, tgt, lengths), tgt, mask.astype(jnp.float32))
        if deterministic:
            aux["exact_match"] = _exact(self.greedy(src, lengths, max_length=tgt.shape[1]), tgt)
        return loss, aux, None


class Conditional(nn.Module):
    """One-to-many: generate a token sequence given a class ``c``.

    ``s_0 = tanh(Dense(embed_c(c)))`` (per carry leaf); step ``t`` feeds
    ``[embed(y_{t-1}), embed_c(c)]`` to the cell; ``p(y_t) = softmax(W_o o_t)``. ``loss(batch)``
    with ``condition [B]`` int, ``targets [B, T]`` (ending in EOS, PAD after); ``inputs`` (the
    trainer reads its shape) are the decoder inputs ``[BOS, y_1 .. y_{T-1}]``.
    """

    vocab_size: int
    num_classes: int
    out_features: int | None = None
    cell: str = "lstm"
    hidden_size: int = 128
    embed_dim: int = 64
    cell_options: Mapping | None = None
    loss_type: str = "xent"

    def _decoder(self) -> DecoderStep:
        return DecoderStep(
            self.cell, self.hidden_size, self.vocab_size, self.cell_options, parent=None
        )

    def setup(self):
        V, E, H = self.vocab_size, self.embed_dim, self.hidden_size
        self.embed = self.param("embed", nn.initializers.normal(1.0), (V, E))
        self.class_embed = self.param(
            "class_embed", nn.initializers.normal(1.0), (self.num_classes, E)
        )
        carry0 = _zero_carry(self.cell, H, self.cell_options, 2 * E)
        self.bridge = [nn.Dense(leaf.shape[-1]) for leaf in jax.tree.leaves(carry0)]
        self.structure = jax.tree.structure(carry0)
        dec = self._decoder()
        self.decoder_params = self.param(
            "decoder", lambda rng: dec.init(rng, carry0, jnp.zeros((1, 2 * E)))["params"]
        )

    def start(self, condition):
        """``condition [B]`` int -> ``(carry, step_fn)`` for :func:`decode`."""
        if condition.ndim != 1 or not jnp.issubdtype(condition.dtype, jnp.integer):
            raise ValueError(f"expected class ids [B], got {condition.dtype} {condition.shape}")
        c = self.class_embed[condition]  # [B, E]
        carry = jax.tree.unflatten(self.structure, [jnp.tanh(d(c)) for d in self.bridge])
        dec, params = self._decoder(), {"params": self.decoder_params}

        def step_fn(carry, x):
            return dec.apply(params, carry, jnp.concatenate([x, c], axis=-1))

        return carry, step_fn

    def __call__(self, condition, targets):
        """Teacher-forced logits ``[B, T, V]``."""
        carry, step_fn = self.start(condition)
        return teacher_forced(step_fn, carry, self.embed, targets)

    def generate(self, condition, *, max_length: int, rng=None, temperature: float = 1.0):
        """``[B, max_length]`` ids: greedy without ``rng``, else sampled at ``temperature``."""
        carry, step_fn = self.start(condition)
        return decode(step_fn, carry, self.embed, max_length, rng=rng, temperature=temperature)

    def loss(self, batch, carry=None, *, deterministic: bool = True):
        """``(loss, aux, None)``: teacher-forced cross-entropy and token accuracy."""
        tgt = batch["targets"]
        mask = batch.get("mask")
        mask = (tgt != PAD) if mask is None else mask
        loss, aux = _xent(self(batch["condition"], tgt), tgt, mask.astype(jnp.float32))
        return loss, aux, None
