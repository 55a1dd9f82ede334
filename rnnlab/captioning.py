"""Image captioning: a CNN encoder and an RNN decoder that attends over its feature map.

Shapes: ``B`` batch, ``Hi x W`` image, ``S`` feature columns, ``M`` feature width, ``E``
embedding, ``H`` hidden, ``T`` caption length, ``V`` vocabulary, ``K`` beams.

Encoder (:class:`StripEncoder`): ``len(conv_features)`` blocks of ``3x3`` convolution, ReLU
and ``2x2`` max pooling over the image ``[B, Hi, W, 1]``; the map left, ``[B, Hi/2^L, W/2^L,
C]``, is flattened over its rows into one annotation vector per column block and projected::

    a_j = W_a vec(F[:, j, :]) + b_a,   j = 1..S  (S = W / 2^L),   a: [B, S, M]

(two blocks on the 8x32 digit strips: S = 8 columns of 4 pixels, two per digit).

Decoder (:class:`rnnlab.seq2seq.DecoderStep`, the cell of ``model.cell``), started from the
mean annotation (Xu et al. 2015, sec. 3.1.2; Vinyals et al. 2015 condition on the image the
same way, through the state)::

    s_0 = tanh(W_init mean_j a_j + b_init)   (per carry leaf)

and, switched by ``model.attention``:

* ``True`` -- Show, Attend and Tell (Xu et al. 2015), soft deterministic attention, additive
  (Bahdanau) scoring: ``e_tj = v . tanh(W_q s_{t-1} + W_k a_j + b)``, ``alpha_t =
  softmax_j e_t``, ``z_t = sum_j alpha_tj a_j``; ``(s_t, o_t) = cell(s_{t-1}, [embed(y_{t-1}),
  z_t])``, ``p(y_t) = softmax(W_o [o_t, z_t])``.
* ``False`` -- Show and Tell (Vinyals et al. 2015): the image enters through ``s_0`` only;
  ``(s_t, o_t) = cell(s_{t-1}, embed(y_{t-1}))``, ``p(y_t) = softmax(W_o o_t)``.

:class:`Captioner` is a :class:`rnnlab.seq2seq.Seq2Seq` whose encoder is the CNN: training
(teacher forcing, ``loss``), :meth:`greedy` and :meth:`beam_search` are Seq2Seq's compiled
``lax.scan`` loops, unchanged. :meth:`Captioner.attention_maps` gives ``alpha [B, T, S]``
along a caption (the figure). :func:`evaluate` reports exact match and per-word accuracy;
:func:`plot_captions` draws images, captions and attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.seq2seq import BOS, EOS, PAD, Seq2Seq, _zero_carry


class StripEncoder(nn.Module):
    """``images [B, Hi, W]`` -> annotations ``[B, S, M]``, ``S = W / 2^len(features)``."""

    features: Sequence[int] = (32, 64)
    width: int = 128  # M

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = images[..., None]  # [B, Hi, W, 1]
        for f in self.features:
            x = nn.relu(nn.Conv(f, (3, 3), padding="SAME")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        B, R, S, C = x.shape
        cols = jnp.transpose(x, (0, 2, 1, 3)).reshape(B, S, R * C)  # one vector per column
        return nn.Dense(self.width)(cols)


def _alpha(dec, carry, keys, mask):
    """The decoder's attention weights ``alpha [B, S]`` for the query ``carry`` (the same
    computation as :class:`rnnlab.seq2seq.DecoderStep`, through its own submodules)."""
    from rnnlab.seq2seq import NEG, _flat

    q = dec.w_q(_flat(carry))[:, None, :]
    e = dec.v(jnp.tanh(keys + q))[..., 0]
    return jax.nn.softmax(jnp.where(mask, e, NEG), axis=-1)


class Captioner(Seq2Seq):
    """CNN encoder + (attention) RNN decoder; ``loss(batch)`` with ``inputs [B, Hi, W]`` float
    images and ``targets [B, T]`` caption ids (ending in EOS, PAD after).

    The fields are Seq2Seq's (``cell``, ``hidden_size``, ``embed_dim``, ``attention``,
    ``attention_size``, ...) plus ``conv_features`` (channels per conv block) and
    ``feature_size`` (``M``). Seq2Seq's encoder-RNN settings (``num_layers``,
    ``bidirectional``, ``remat``, ``unroll``) have nothing to act on here and are refused.
    """

    conv_features: Sequence[int] = (32, 64)
    feature_size: int = 128

    def __post_init__(self):
        for key, default in (("num_layers", 1), ("bidirectional", False), ("remat", False),
                             ("unroll", 1)):  # fmt: skip
            if getattr(self, key) != default:
                raise ValueError(
                    f"captioning: model.{key} has no effect on the CNN encoder; "
                    f"expected {default!r}, got {getattr(self, key)!r}"
                )
        if not self.conv_features or any(int(f) < 1 for f in self.conv_features):
            raise ValueError(f"conv_features must be positive ints, got {self.conv_features}")
        super().__post_init__()

    def setup(self):
        V, E, H, M = self.vocab_size, self.embed_dim, self.hidden_size, self.feature_size
        self.embed = self.param("embed", nn.initializers.normal(1.0), (V, E))
        self.encoder = StripEncoder(tuple(self.conv_features), M)
        carry0 = _zero_carry(self.cell, H, self.cell_options, E)
        self.structure = jax.tree.structure(carry0)
        self.init_state = [nn.Dense(leaf.shape[-1]) for leaf in jax.tree.leaves(carry0)]
        dec = self._decoder()
        self.decoder_params = self.param(
            "decoder",
            lambda rng: dec.init(
                rng, carry0, jnp.zeros((1, E)), jnp.zeros((1, 1, M)), jnp.ones((1, 1), bool),
                method="initialize",
            )["params"],
        )  # fmt: skip

    def encode(self, images, src_lengths=None):
        """``images [B, Hi, W]`` -> ``(s_0, step_fn, (memory, keys, mask))`` as Seq2Seq's."""
        if images.ndim != 3 or not jnp.issubdtype(images.dtype, jnp.floating):
            raise ValueError(f"expected float images [B, Hi, W], got {images.dtype} {images.shape}")
        if src_lengths is not None:
            raise ValueError("captioning takes no source lengths (the images are not sequences)")
        memory = self.encoder(images)  # [B, S, M]
        mean = memory.mean(axis=1)
        carry = jax.tree.unflatten(self.structure, [jnp.tanh(d(mean)) for d in self.init_state])
        dec, params = self._decoder(), {"params": self.decoder_params}
        mask = jnp.ones(memory.shape[:2], bool)
        keys = dec.apply(params, memory, method="keys") if self.attention else None

        def step_fn(carry, x, memory=memory, keys=keys, mask=mask):
            return dec.apply(params, carry, x, memory, keys, mask)

        return carry, step_fn, (memory, keys, mask)

    def attention_maps(self, images, tokens):
        """``alpha [B, T, S]``: the attention at each step while the decoder reads ``tokens
        [B, T]`` (its own output, for the figure) from BOS; ``alpha_t`` is computed from
        ``s_{t-1}``, before ``y_t`` is emitted, as in decoding."""
        if not self.attention:
            raise ValueError("model.attention is False: the decoder does not attend")
        carry, step_fn, (_, keys, mask) = self.encode(images)
        dec, params = self._decoder(), {"params": self.decoder_params}
        B = tokens.shape[0]
        prev = jnp.concatenate([jnp.full((B, 1), BOS, tokens.dtype), tokens[:, :-1]], axis=1)

        def body(carry, tok):
            alpha = dec.apply(params, carry, keys, mask, method=_alpha)
            carry, _ = step_fn(carry, self.embed[tok])
            return carry, alpha

        _, alphas = jax.lax.scan(body, carry, prev.T)
        return jnp.swapaxes(alphas, 0, 1)


# ------------------------------------------------------------------------ evaluation


def word_scores(pred: np.ndarray, targets: np.ndarray) -> tuple[int, int, int]:
    """``(exact rows, right words, words)``: a row is exact when all ``T`` ids match (EOS and
    PAD included); a word is a target position with a word id (``>= 3``) matched there."""
    words = targets >= 3
    exact = int(np.all(pred == targets, axis=1).sum())
    return exact, int(((pred == targets) & words).sum()), int(words.sum())


def evaluate(trained, dataset, *, beam_size: int = 4) -> dict:
    """Greedy and beam-search exact match and per-word accuracy over the held-out strips."""
    model, variables = trained.model, {"params": trained.params}
    T = dataset.T
    greedy = jax.jit(lambda x: model.apply(variables, x, max_length=T, method="greedy"))
    beam = jax.jit(
        lambda x: model.apply(
            variables, x, max_length=T, beam_size=beam_size, method="beam_search"
        )[0]
    )
    totals = {"greedy": [0, 0, 0], "beam": [0, 0, 0]}
    rows, examples = 0, []
    for batch in dataset.eval_batches():
        x = jnp.asarray(batch["inputs"])
        for name, fn in (("greedy", greedy), ("beam", beam)):
            pred = np.asarray(fn(x))
            totals[name] = [
                a + b for a, b in zip(totals[name], word_scores(pred, batch["targets"]))
            ]
            if name == "greedy" and len(examples) < 8:
                examples += [
                    f"{dataset.decode(t)!r} -> {dataset.decode(p)!r}"
                    for t, p in zip(batch["targets"], pred)
                ][: 8 - len(examples)]
        rows += len(x)
    out = {"num_heldout": rows, "examples": examples}
    for name, (exact, right, words) in totals.items():
        tag = "greedy" if name == "greedy" else f"beam{beam_size}"
        out[f"exact_match_{tag}"] = exact / rows
        out[f"word_accuracy_{tag}"] = right / max(words, 1)
    return out


def plot_captions(trained, dataset, path, *, num: int = 6) -> str:
    """Held-out strips with their greedy captions and, with attention, ``alpha_t`` over the
    strip at each generated word (one row per word, columns aligned to the image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, variables = trained.model, {"params": trained.params}
    batch = next(iter(dataset.eval_batches()))
    images = jnp.asarray(batch["inputs"][:num])
    pred = np.asarray(model.apply(variables, images, max_length=dataset.T, method="greedy"))
    alphas = None
    if model.attention:
        alphas = np.asarray(
            model.apply(variables, images, jnp.asarray(pred), method="attention_maps")
        )
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 4.2), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.6]})  # fmt: skip
    W = images.shape[2]
    for i in range(n):
        words = [dataset_word(t) for t in pred[i] if t not in (PAD, BOS)]
        truth = dataset.decode(batch["targets"][i])
        ax = axes[0, i]
        ax.imshow(np.asarray(images[i]), cmap="gray_r", aspect="auto")
        ok = dataset.decode(pred[i]) == truth
        ax.set_title(f"{dataset.decode(pred[i])}\n({'right' if ok else 'truth: ' + truth})",
                     fontsize=8, color="black" if ok else "red")  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        ax = axes[1, i]
        if alphas is not None:
            steps = len(words)
            ax.imshow(alphas[i, :steps], cmap="viridis", aspect="auto", vmin=0,
                      extent=(0, W, steps - 0.5, -0.5))  # fmt: skip
            ax.set_yticks(range(steps))
            ax.set_yticklabels(words, fontsize=7)
            ax.set_xticks([])
            if i == 0:
                ax.set_ylabel("attention at each word")
        else:
            ax.axis("off")
    title = "greedy captions of held-out strips"
    title += " and alpha_t over the strip's columns" if alphas is not None else " (no attention)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def dataset_word(token: int) -> str:
    """A caption id as its word (``<eos>`` for EOS)."""
    from rnnlab.data.digits import VOCAB

    return VOCAB[int(token)] if 0 <= int(token) < len(VOCAB) else f"<{int(token)}>"


__all__ = ["EOS", "Captioner", "StripEncoder", "evaluate", "plot_captions", "word_scores"]
