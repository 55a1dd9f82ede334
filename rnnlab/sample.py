"""Generation from a character language model: one compiled loop, as in char-rnn's sample.lua.

Given a trained :func:`rnnlab.models.CharLM` (``tokens [B, T] -> logits [B, T, V]``):

1. the warm-up context (not printed) and the prime text run through the model in one call
   (the engine's scan), warming the state; the last logits give the distribution of the first
   new character. With neither, generation starts from the zero state with a newline as the
   (unprinted) prime when the vocabulary has one, else from a uniform first character
   (sample.lua's choice);
2. the engine's step loop (:func:`rnnlab.engine.step_loop`) over the ``length`` new characters: draw ``x_t`` from
   ``softmax(logits / temperature)`` (restricted to the ``top_k`` likeliest when ``top_k > 0``;
   the likeliest when ``argmax``), then one model step on ``x_t`` gives the next logits.

The whole loop is one jitted function (compiled once per prime length, length, top_k and
argmax; the temperature and the seed are traced), so there is no Python dispatch per
character. The draw at step ``t`` uses ``fold_in(PRNGKey(seed), t)``: the same seed gives the
same text. Temperature -> 0 approaches argmax; temperature 1 samples the model's own
distribution; > 1 flattens it.

Why a warm-up context: the trainer carries the state across the chunks of each stream and
resets it only at epoch starts, so a model early in training has rarely seen the zero state;
its LSTM cells grow to |c| of several units within ~50 characters of real text, and it predicts
well only from such a warm state. From a cold start it can stay in a near-uniform regime
(measured here: a 2x128 LSTM after 629 steps on the stdlib corpus, val 2.04 nats/char, gave
top probability 0.03 after a cold "\n" and rare-character soup at temperature 0.5, but
Python-looking text after 400 real characters). :func:`sample_workdir` therefore warms the
state on the last ``warmup_chars`` characters of the run's training text by default (cut
after a newline, so generation starts a line); ``warmup_chars=0`` is sample.lua's cold start.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.engine import step_loop


def _check(temperature: float, top_k: int, length: int, argmax: bool) -> None:
    """The sampling arguments' ranges (what ``rnnlab sample``'s flags are checked against)."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length (--length) must be an int >= 1 characters, got {length!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k (--top-k) must be an int >= 0 (0: all characters), got {top_k!r}")
    if not argmax and not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be > 0 and finite (--temperature), got {temperature!r}; "
            "use argmax (--argmax) for the zero-temperature limit"
        )


def draw(key: jax.Array, logits: jax.Array, temperature, *, top_k: int = 0, argmax: bool = False):
    """One character per row from ``logits [B, V]`` -> ``[B]`` int32."""
    if argmax:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32)
    if 0 < top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # [B, 1]: the k-th largest logit
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)


class _Static:
    """Hashes by identity: a Linen module with dict fields is not hashable, but is static."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Static) and other.obj is self.obj


@functools.partial(jax.jit, static_argnames=("static_model", "length", "top_k", "argmax"))
def _generate(static_model, variables, prime, key, temperature, *, length, top_k, argmax):
    """``prime [B, P]`` (P may be 0) -> new tokens ``[B, length]``; one compiled program."""
    model = static_model.obj
    B, P = prime.shape
    if P > 0:
        logits, carry, _ = model.apply(variables, prime)  # warm the state on the whole prime
        logits = logits[:, -1]  # [B, V]
    else:  # sample.lua without primetext: zero state, uniform first character
        carry = None
        logits = jnp.zeros((B, model.out_features), jnp.float32)
    if carry is None:  # the zero carry of every layer, built by one throwaway step
        _, carry, _ = model.apply(variables, jnp.zeros((B, 1), jnp.int32))
        carry = jax.tree.map(jnp.zeros_like, carry)

    def step(state, t):
        carry, logits = state
        x = draw(jax.random.fold_in(key, t), logits, temperature, top_k=top_k, argmax=argmax)
        logits, carry, _ = model.apply(variables, x[:, None], carry)  # [B, 1, V]
        return (carry, logits[:, 0]), x

    _, xs = step_loop(step, (carry, logits), length=length)  # xs [length, B]: the engine's
    return xs.T


def generate(
    model,
    params,
    prime_ids: Sequence[int] | np.ndarray,
    *,
    length: int = 2000,
    temperature: float = 1.0,
    top_k: int = 0,
    argmax: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Sample ``length`` token ids ``[length]`` after ``prime_ids`` from a CharLM.

    Args:
      model: a :class:`rnnlab.models.SequenceModel` with token inputs (``CharLM``).
      params: its variables (``{"params": ...}``) or the bare params tree.
      prime_ids: token ids that warm the state (not repeated in the result); may be empty.
      length: how many new tokens.
      temperature: > 0; divides the logits.
      top_k: sample among the ``top_k`` likeliest tokens (0: all).
      argmax: greedy decoding (temperature and seed are ignored).
      seed: the PRNG seed; the same seed gives the same tokens.
    """
    _check(temperature, top_k, length, argmax)
    variables = params if "params" in params else {"params": params}
    prime = np.asarray(prime_ids, np.int32).reshape(1, -1)
    V = model.out_features
    if prime.size and (prime.min() < 0 or prime.max() >= V):
        raise ValueError(f"prime ids must lie in [0, {V}), got {sorted(set(prime.ravel()))}")
    out = _generate(
        _Static(model),
        variables,
        jnp.asarray(prime),
        jax.random.PRNGKey(seed),
        jnp.float32(temperature if not argmax else 1.0),
        length=int(length),
        top_k=int(top_k),
        argmax=bool(argmax),
    )
    return np.asarray(out[0])


def sample_text(
    model,
    params,
    vocab,
    prime: str = "",
    *,
    warmup: str = "",
    length: int = 2000,
    temperature: float = 1.0,
    top_k: int = 0,
    argmax: bool = False,
    seed: int = 0,
) -> str:
    """``prime`` followed by ``length`` generated characters (char-rnn prints the prime too).

    ``vocab`` maps characters to ids (``rnnlab.data.text.Vocab``: ``chars``, ``encode``,
    ``decode``). ``warmup``: context run before the prime, not returned (see the module
    docstring). Prime characters outside the vocabulary raise a ValueError that lists them.
    """
    chars = list(vocab.chars)
    unknown = sorted(set(prime) - set(chars))
    if unknown:
        raise ValueError(
            f"prime text has characters outside the model's vocabulary: "
            f"{''.join(unknown)!r} ({', '.join(repr(c) for c in unknown)}); "
            f"the vocabulary has {len(chars)} characters"
        )
    warm = warmup + prime
    if not warm and "\n" in chars:
        warm = "\n"
    ids = generate(
        model,
        params,
        np.asarray(vocab.encode(warm), np.int32),
        length=length,
        temperature=temperature,
        top_k=top_k,
        argmax=argmax,
        seed=seed,
    )
    return prime + vocab.decode(ids)


def sample_workdir(
    workdir: str | os.PathLike,
    temperature: float = 1.0,
    prime: str = "",
    length: int = 2000,
    top_k: int = 0,
    argmax: bool = False,
    seed: int = 0,
    warmup_chars: int = 1000,
) -> str:
    """Sample from the model a run saved in ``workdir`` (its best checkpoint).

    The state is first warmed on the last ``warmup_chars`` characters of the run's training
    text (not printed; 0 or an unavailable corpus: a cold start), then on ``prime``.
    """
    from rnnlab.train import load_run

    _check(temperature, top_k, length, argmax)  # before loading anything
    if isinstance(warmup_chars, bool) or not isinstance(warmup_chars, (int, np.integer)):
        raise ValueError(f"warmup_chars (--warmup) must be an int >= 0, got {warmup_chars!r}")
    if warmup_chars < 0:
        raise ValueError(
            f"warmup_chars (--warmup) must be >= 0 (0: a cold start), got {warmup_chars}"
        )
    run = load_run(workdir)
    return sample_text(
        run.model,
        run.params,
        run_vocab(run),
        prime,
        warmup=warmup_text(run, warmup_chars),
        length=length,
        temperature=temperature,
        top_k=top_k,
        argmax=argmax,
        seed=seed,
    )


def warmup_text(run, num_chars: int = 1000) -> str:
    """The last ``num_chars`` characters of the run's training text, from a line start.

    ``""`` when ``num_chars`` is 0 or the run trained on a text given in memory (there is no
    file to read again). Otherwise the text is read by :func:`training_text`, which refuses a
    corpus that is not the one the run trained on (ValueError; ``warmup_chars=0``, the CLI's
    ``--warmup 0``, starts cold instead).
    """
    if num_chars <= 0 or run.metadata.get("source") == "text given in memory":
        return ""
    corpus = training_text(run, hint="pass --warmup 0 (warmup_chars=0) for a cold start")
    n_train = run.metadata["train_chars"]
    tail = corpus[max(n_train - num_chars, 0) : n_train]
    cut = tail.rfind("\n")
    return tail[: cut + 1] if cut >= 0 else tail


def training_text(run, *, hint: str = "") -> str:
    """The whole corpus the run trained on, read again from its ``data.path``, only if its
    sha256 matches the ``text_sha256`` the run stored in ``data.json`` at training time.

    Raises ValueError (ending with ``hint``, what the caller can do instead) when the run
    recorded no hash, when the corpus cannot be read, or when it is another text (a changed
    file, or a ``data.path`` pointing elsewhere than at training time).
    """
    from rnnlab.data import corpora

    spec = run.config.data.path or None
    name = spec or "the default corpus"
    data_json = pathlib.Path(run.workdir) / "data.json"
    recorded = run.metadata.get("text_sha256")
    hint = f"; {hint}" if hint else ""
    if not recorded:
        raise ValueError(
            f"{str(data_json)!r} records no sha256 of the training text (written before runs "
            f"stored one, or not a text run), so {name!r} cannot be checked{hint}"
        )
    try:
        corpus = corpora.load(spec)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"cannot read the training text {name!r} again ({err}){hint}") from None
    got = corpora.text_sha256(corpus)
    if got != recorded:
        raise ValueError(
            f"the training text {name!r} is not the text the run trained on: sha256 {got[:16]}.. "
            f"differs from {recorded[:16]}.. recorded in {str(data_json)!r} (the file changed, or "
            f"data.path points elsewhere){hint}"
        )
    return corpus


def run_vocab(run):
    """The character vocabulary a run trained with (kept in its ``data.json``)."""
    from rnnlab.data.text import Vocab

    if "vocab" not in run.metadata:
        raise ValueError(
            f"{str(run.workdir)!r} is not a character-model run: its data.json has no vocab"
        )
    return Vocab.from_json(run.metadata["vocab"])
