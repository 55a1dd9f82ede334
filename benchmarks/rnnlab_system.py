"""rnnlab in the harness: the char-LM step on the engine (:class:`rnnlab.RNN`), jitted once.

``BenchLM`` is :func:`rnnlab.models.CharLM` with one layer (embed -> RNN -> dense), written out
so the harness can switch the engine's knobs (``backward``, ``remat``, ``unroll``, ``dtype``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from benchmarks.common import Spec, batch
from rnnlab import RNN, Embedded, explain


class BenchLM(nn.Module):
    spec: Spec
    backward: str = "auto"
    remat: bool | str = False  # False | True (per step) | "chunked"
    unroll: int = 1

    @nn.compact
    def __call__(self, tokens, carry=None, perturbation=None):
        """``tokens [B, T]`` -> ``(logits [B, T, V], final carry list)``."""
        s = self.spec
        dtype = None if s.dtype == "float32" else jnp.dtype(s.dtype)
        embed = nn.Embed(s.vocab, s.embed, dtype=dtype)
        x = Embedded(tokens, embed.embedding.astype(dtype or embed.embedding.dtype))  # see Embedded
        mixed = {"matmul_dtype": s.matmul_dtype} if s.matmul_dtype != "float32" else None
        out = RNN(
            s.cell,
            s.hidden,
            cell_options=mixed,
            backward=self.backward,
            remat=self.remat,
            unroll=self.unroll,
            dtype=dtype,
        )(x, initial_carry=carry, perturbation=perturbation)
        logits = nn.Dense(s.vocab, dtype=dtype)(out.outputs)
        return logits.astype(jnp.float32), out.final_carry


def _print_plan(spec, model, inputs) -> None:
    """The engine's plan of the timed model, to stderr (stdout carries the timings)."""
    for line in explain(model, inputs):
        print(f"plan ({spec.cell} H={spec.hidden}): {line}", file=sys.stderr, flush=True)


class RnnlabSystem:
    """One rnnlab configuration: ``train_step``, ``forward``, ``generate``, compile, memory."""

    def __init__(
        self, spec: Spec, *, backward: str = "auto", remat: bool | str = False, seed: int = 0
    ):
        if spec.layers != 1 or spec.stream:  # the main job's step: JobSystem
            raise ValueError(f"BenchLM is one layer, no carried state; got {spec}")
        self.spec = spec
        self.model = BenchLM(spec, backward=backward, remat=remat)
        x, y = batch(spec, seed)
        self.x, self.y = jnp.asarray(x), jnp.asarray(y)
        self.params = self.model.init(jax.random.PRNGKey(seed), self.x[:, :2])
        _print_plan(spec, self.model, self.x)
        self.tx = optax.chain(optax.clip_by_global_norm(spec.clip), optax.adam(spec.learning_rate))
        self.opt_state = self.tx.init(self.params)
        train = jax.jit(self.step_fn(), donate_argnums=(0, 1))
        self._train = train.lower(self.params, self.opt_state, self.x, self.y).compile()
        self._forward = jax.jit(lambda p, x: self.model.apply(p, x)[0])
        self._probe = None
        self._generate: dict[int, Any] = {}

    # ------------------------------------------------------------------ the jitted functions

    def loss(self, params, x, y, perturbation=None):
        logits, _ = self.model.apply(params, x, perturbation=perturbation)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step_fn(self):
        def step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(self.loss)(params, x, y)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return step

    def train_step(self) -> None:
        self.params, self.opt_state, loss = self._train(self.params, self.opt_state, self.x, self.y)
        loss.block_until_ready()

    def forward(self) -> None:
        self._forward(self.params, self.x).block_until_ready()

    def zero_perturbation(self, T: int | None = None):
        """Zeros shaped like the carry at every step: one entry per layer (here one)."""
        B, T = self.spec.batch, T or self.spec.steps
        zeros = jnp.zeros((B, T, self.spec.hidden), jnp.float32)
        return [(zeros, zeros) if self.spec.cell == "lstm" else zeros]

    def probe(self) -> None:
        """``dL/dh_t`` for all t in one backward pass: the gradient wrt a zero perturbation."""
        if self._probe is None:
            grad = jax.grad(self.loss, argnums=3)
            self._probe = jax.jit(grad)
            self._eps = self.zero_perturbation()
        out = self._probe(self.params, self.x, self.y, self._eps)
        jax.block_until_ready(out)

    def generate(self, length: int) -> None:
        """``length`` characters from a batch of one: one compiled scan (as rnnlab.sample)."""
        if length not in self._generate:

            def gen(params, key):
                _, carry = self.model.apply(params, jnp.zeros((1, 1), jnp.int32))
                carry = jax.tree.map(jnp.zeros_like, carry)

                def body(state, t):
                    carry, x = state
                    logits, carry = self.model.apply(params, x[:, None], carry)
                    x = jax.random.categorical(jax.random.fold_in(key, t), logits[:, 0])
                    return (carry, x.astype(jnp.int32)), x

                _, xs = jax.lax.scan(body, (carry, jnp.zeros((1,), jnp.int32)), jnp.arange(length))
                return xs

            self._generate[length] = jax.jit(gen)
        self._generate[length](self.params, jax.random.PRNGKey(0)).block_until_ready()

    # ------------------------------------------------------------- compile time and memory

    def _lowered(self, T: int):
        x, y = (
            jnp.zeros((self.spec.batch, T), jnp.int32),
            jnp.zeros((self.spec.batch, T), jnp.int32),
        )
        return jax.jit(self.step_fn()).lower(self.params, self.opt_state, x, y)

    def compile_seconds(self, T: int) -> float:
        """Trace + lower + compile the train step at sequence length ``T`` (no cache)."""
        t0 = time.perf_counter()
        self._lowered(T).compile()
        return time.perf_counter() - t0

    def peak_bytes(self, T: int) -> int | None:
        """XLA's compiled memory analysis of the train step at ``T``: args + outputs + temps."""
        same = T == self.spec.steps  # the executable train_step runs: no second compile
        stats = (self._train if same else self._lowered(T).compile()).memory_analysis()
        if stats is None:
            return None
        total = stats.argument_size_in_bytes + stats.output_size_in_bytes
        return int(total + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


class JobSystem:
    """The main job's train step, as ``rnnlab run char-rnn`` runs it, on a fixed random batch.

    The experiment's config (``experiments/char_rnn.py``; the spec's sizes put in), the model of
    :func:`rnnlab.models.build` and the jitted update of :func:`rnnlab.steps.jitted_steps` with
    the carry kept from step to step (truncated BPTT over streams, no reset), the measurements
    (loss, gradient and parameter norms, update ratio) included. ``spec`` comes from
    :func:`benchmarks.common.job_spec`.
    """

    def __init__(self, spec: Spec, experiment: str = "char-rnn", seed: int = 0):
        from rnnlab import models, registry
        from rnnlab.steps import jitted_steps

        config = registry.load(experiment).get_config()
        m = config.model
        m.cell, m.hidden_size, m.num_layers, m.embed_dim = (
            spec.cell,
            spec.hidden,
            spec.layers,
            spec.embed,
        )
        config.optim.learning_rate, config.optim.clip_value = spec.learning_rate, spec.clip
        V = spec.vocab
        model_spec = dict(architecture="sequence", out_features=V, vocab_size=V, readout="all")
        model = models.build(m, dict(model_spec, loss="xent"))
        init, self._step, _ = jitted_steps(model, config.optim, 1000, True, 1)
        x, y = batch(spec, seed)
        self.batch = {"inputs": jnp.asarray(x), "targets": jnp.asarray(y)}
        self.keys = jax.random.PRNGKey(seed)[None]
        self.state = init(self.keys, self.batch)
        _print_plan(spec, model, self.batch)
        self.reset = jnp.asarray(False)
        self.spec = spec

    def train_step(self) -> None:
        self.state, m = self._step(self.state, self.batch, self.reset, self.keys)
        jax.block_until_ready(m)
