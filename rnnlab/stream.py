"""Stateful streaming from a trained character model: feed text as it arrives, read the
next-character distribution, sample continuations.

    s = Stream("runs/char-rnn", warmup_chars=0)
    p = s.feed("To be, or not")   # [V] probabilities of the next character; state kept
    p = s.feed(" to")             # continues: equals feeding "To be, or not to" at once
    s.surprise("be")              # [2] bits, -log2 p(c_i | everything before), and feeds it
    s.sample(100, temperature=0.8)  # 100 characters drawn from the model; advances the state

The model is the run's single step (:func:`rnnlab.export.step_model`: the engine's XLA path,
the same step :mod:`rnnlab.export` writes out). A chunk of ``n`` characters runs as one
compiled ``lax.scan`` of that step over ``P >= n`` slots (``P`` the next power of two, so a
stream of chunks of any sizes compiles at most ``log2`` of the longest chunk programs); the
slots after ``n`` leave the carry and the logits unchanged (``where(t < n, new, old)``), so a
chunk's result does not depend on the padding. Feeding ``"ab"`` then ``"c"`` runs the same
steps on the same carries as feeding ``"abc"``.

Before any text the state is the model's initial carry (zeros, or the learned carry) and the
distribution is uniform (char-rnn's sample.lua without a prime); ``warmup_chars`` first runs
the last training characters (as ``rnnlab sample`` does; see :mod:`rnnlab.sample`).

``python -m rnnlab.stream --bench WORKDIR`` times ``feed`` of one character at a time (the
latency a user typing sees) and of a 1000-character chunk; docs/streaming.md has the numbers.
"""

from __future__ import annotations

import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def _bucket(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


class Stream:
    """A character model's state kept across :meth:`feed` / :meth:`sample` calls.

    Attributes: ``vocab`` (the characters; id ``i`` is ``vocab[i]``), ``probabilities``
    (``[V]`` the current next-character distribution), ``consumed`` (characters fed or sampled
    so far, warm-up excluded).
    """

    def __init__(self, workdir, *, warmup_chars: int = 1000, seed: int = 0):
        from rnnlab.export import step_model

        self._sm = step_model(workdir)
        self.vocab = self._sm.vocab.chars
        self._index = {c: i for i, c in enumerate(self.vocab)}
        V = len(self.vocab)
        self._carry = self._sm.initial_carry(1)
        self._logits = jnp.zeros((1, V), jnp.float32)  # uniform before any character
        self._key = jax.random.PRNGKey(int(seed))
        self._draws = 0
        self.consumed = 0
        # the parameters enter the compiled loops as arguments, not as closed-over constants:
        # a 1000-character feed of a 2x256 LSTM took 1.71 ms per character with them closed
        # over, 0.46 ms as arguments (python -m rnnlab.stream --bench, docs/streaming.md)
        apply_step, self._variables = self._sm.apply_step, self._sm.variables

        @functools.partial(jax.jit, static_argnames=("P",))
        def run_chunk(variables, carry, logits, ids, n, *, P):
            """``ids [P]`` (the first ``n`` real) -> (carry, last logits, logits before each)."""

            def body(state, inp):
                carry, logits = state
                t, tok = inp
                new_carry, new_logits = apply_step(variables, carry, tok[None])
                keep = t < n
                carry = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new_carry, carry)
                return (carry, jnp.where(keep, new_logits, logits)), logits[0]

            (carry, logits), before = jax.lax.scan(body, (carry, logits), (jnp.arange(P), ids))
            return carry, logits, before  # before[t]: the distribution that predicted ids[t]

        @functools.partial(jax.jit, static_argnames=("P",))
        def run_sample(variables, carry, logits, key, temperature, n, *, P):
            def body(state, t):
                carry, logits = state
                tok = jax.random.categorical(jax.random.fold_in(key, t), logits / temperature)
                new_carry, new_logits = apply_step(variables, carry, tok.astype(jnp.int32))
                keep = t < n
                carry = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new_carry, carry)
                return (carry, jnp.where(keep, new_logits, logits)), tok[0]

            (carry, logits), toks = jax.lax.scan(body, (carry, logits), jnp.arange(P))
            return carry, logits, toks

        self._run_chunk, self._run_sample = run_chunk, run_sample
        if warmup_chars:
            from rnnlab.sample import warmup_text

            warm = warmup_text(self._sm.run, warmup_chars)
            if warm:
                self._advance(self.encode(warm))
                self.consumed = 0

    # ------------------------------------------------------------------------- the API

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> int32 ids; characters outside the vocabulary raise a ValueError naming
        them."""
        if not isinstance(text, str):
            raise ValueError(f"expected text (str), got {type(text).__name__}")
        unknown = sorted(set(text) - set(self.vocab))
        if unknown:
            raise ValueError(
                f"characters outside the model's vocabulary: {', '.join(map(repr, unknown))} "
                f"(the vocabulary has {len(self.vocab)} characters: {self.vocab!r})"
            )
        return np.fromiter((self._index[c] for c in text), np.int32, len(text))

    @property
    def probabilities(self) -> np.ndarray:
        """``[V]`` float: ``softmax`` of the current logits, the next character's distribution."""
        return np.asarray(jax.nn.softmax(self._logits[0].astype(jnp.float32)))

    def distribution(self) -> dict[str, float]:
        """The next-character distribution as ``{character: probability}``."""
        return dict(zip(self.vocab, self.probabilities.tolist()))

    def feed(self, text: str) -> np.ndarray:
        """Run the model over ``text`` from the current state; return the next-character
        distribution ``[V]`` (``probabilities``). ``""`` returns the current one."""
        self._advance(self.encode(text))
        return self.probabilities

    def surprise(self, text: str) -> np.ndarray:
        """Feed ``text``; return ``[len(text)]`` bits, ``-log2 p(c_i | all text before c_i)``."""
        ids = self.encode(text)
        before = self._advance(ids)
        logp = jax.nn.log_softmax(jnp.asarray(before, jnp.float32), axis=-1)
        return -np.asarray(logp)[np.arange(len(ids)), ids] / np.log(2.0)

    def sample(self, n: int, temperature: float = 1.0, *, advance: bool = True) -> str:
        """``n`` characters drawn from ``softmax(logits / temperature)`` one after another.

        ``advance=True`` keeps them in the state (the stream continues after them); False
        leaves the state as it was (a look-ahead). Draw ``i`` of the stream uses
        ``fold_in(PRNGKey(seed), i)``: the same seed and calls give the same text.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        if n == 0:
            return ""
        key = jax.random.fold_in(self._key, self._draws)
        carry, logits, toks = self._run_sample(
            self._variables,
            self._carry,
            self._logits,
            key,
            jnp.float32(temperature),
            n,
            P=_bucket(n),
        )
        self._draws += 1
        if advance:
            self._carry, self._logits = carry, logits
            self.consumed += n
        return "".join(self.vocab[i] for i in np.asarray(toks[:n]).tolist())

    def _advance(self, ids: np.ndarray) -> np.ndarray:
        n = len(ids)
        if n == 0:
            return np.zeros((0, len(self.vocab)), np.float32)
        P = _bucket(n)
        padded = np.zeros(P, np.int32)
        padded[:n] = ids
        self._carry, self._logits, before = self._run_chunk(
            self._variables, self._carry, self._logits, jnp.asarray(padded), n, P=P
        )
        self.consumed += n
        return np.asarray(before[:n])


# ------------------------------------------------------------------------------ the CLI


def serve(stream: Stream, lines, out, *, surprise: bool, length: int, temperature: float):
    """For each chunk of ``lines`` (an iterable of str, read as it arrives): feed it and write
    either its per-character surprise or a ``length``-character continuation (not kept in the
    state: the stream follows the input alone) to ``out``, flushing after each."""
    if not surprise:  # bad settings fail before the first line is read
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be an integer >= 0, got {length!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
    for line in lines:
        if surprise:
            bits = stream.surprise(line)
            cells = " ".join(f"{c!r}:{b:.2f}" for c, b in zip(line, bits))
            mean = float(np.mean(bits)) if len(bits) else 0.0
            out.write(f"{mean:.3f} bits/char | {cells}\n")
        else:
            stream.feed(line)
            out.write(stream.sample(length, temperature, advance=False) + "\n")
        out.flush()


def read_chunks(stdin):
    """Lines of ``stdin`` as they arrive (``readline``: no read-ahead of the whole input)."""
    while True:
        line = stdin.readline()
        if not line:
            return
        yield line


def bench(workdir, *, repeats: int = 200) -> dict:
    """Median seconds of ``feed`` of one character (after the compile) and per character of a
    1000-character chunk."""
    s = Stream(workdir, warmup_chars=0)
    chars = s.vocab
    s.feed(chars[0])  # compile
    times = []
    for i in range(repeats):
        c = chars[i % len(chars)]
        t0 = time.perf_counter()
        s.feed(c)
        times.append(time.perf_counter() - t0)
    text = "".join(chars[i % len(chars)] for i in range(1000))
    s.feed(text)  # compile the 1024-slot chunk
    chunk = []
    for _ in range(5):
        t0 = time.perf_counter()
        s.feed(text)
        chunk.append((time.perf_counter() - t0) / len(text))
    return {
        "feed_one_char_ms": 1e3 * float(np.median(times)),
        "feed_1000_chars_ms_per_char": 1e3 * float(np.median(chunk)),
        "cell": s._sm.run.config.model.cell,
        "hidden_size": s._sm.run.config.model.hidden_size,
        "num_layers": s._sm.run.config.model.num_layers,
        "backend": jax.default_backend(),
    }


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m rnnlab.stream")
    p.add_argument("--bench", metavar="WORKDIR", required=True, help="time feed() per character")
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args(argv)
    result = bench(args.bench, repeats=args.repeats)
    print(
        " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
