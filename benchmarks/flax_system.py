"""Flax nnx peer: ``nnx.RNN(nnx.OptimizedLSTMCell)`` / ``nnx.RNN(nnx.GRUCell)``, as users write it.

The model is split once (``nnx.split``) and the step is a pure ``jax.jit`` function of the
parameter state (the low-overhead nnx pattern), with the same Optax chain as rnnlab.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.common import Spec, batch

CELLS = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}


class FlaxLM(nnx.Module):
    def __init__(self, spec: Spec, rngs: nnx.Rngs):
        dtype = None if spec.dtype == "float32" else jnp.dtype(spec.dtype)
        if spec.matmul_dtype == "bfloat16":  # flax's only bf16 knob: everything in bf16
            dtype = jnp.bfloat16
        self.embed = nnx.Embed(spec.vocab, spec.embed, dtype=dtype, rngs=rngs)
        self.cell = CELLS[spec.cell](spec.embed, spec.hidden, dtype=dtype, rngs=rngs)
        self.rnn = nnx.RNN(self.cell, rngs=False)
        self.head = nnx.Linear(spec.hidden, spec.vocab, dtype=dtype, rngs=rngs)

    def __call__(self, tokens):
        """``tokens [B, T]`` -> ``logits [B, T, V]`` (zero initial carry)."""
        x = self.embed(tokens)
        carry = self.cell.initialize_carry((x.shape[0], x.shape[-1]), nnx.Rngs(0))
        return self.head(self.rnn(x, initial_carry=carry)).astype(jnp.float32)


class FlaxSystem:
    def __init__(self, spec: Spec, seed: int = 0):
        if spec.layers != 1 or spec.stream:
            raise ValueError(f"the flax peer is one layer, no carried state; got {spec}")
        self.spec = spec
        model = FlaxLM(spec, nnx.Rngs(seed))
        self.graphdef, self.params = nnx.split(model, nnx.Param)
        x, y = batch(spec, seed)
        self.x, self.y = jnp.asarray(x), jnp.asarray(y)
        self.tx = optax.chain(optax.clip_by_global_norm(spec.clip), optax.adam(spec.learning_rate))
        self.opt_state = self.tx.init(self.params)
        self._train = jax.jit(self.step_fn(), donate_argnums=(0, 1))
        self._forward = jax.jit(lambda p, x: nnx.merge(self.graphdef, p)(x))
        self._generate = {}

    def loss(self, params, x, y):
        logits = nnx.merge(self.graphdef, params)(x)
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

    def generate(self, length: int) -> None:
        """``length`` characters, batch 1: one compiled scan over the cell's step."""
        if length not in self._generate:

            def gen(params, key):
                model = nnx.merge(self.graphdef, params)
                carry = model.cell.initialize_carry((1, self.spec.embed), nnx.Rngs(0))

                def body(state, t):
                    carry, x = state
                    carry, h = model.cell(carry, model.embed(x))
                    x = jax.random.categorical(jax.random.fold_in(key, t), model.head(h))
                    return (carry, x.astype(jnp.int32)), x

                _, xs = jax.lax.scan(body, (carry, jnp.zeros((1,), jnp.int32)), jnp.arange(length))
                return xs

            self._generate[length] = jax.jit(gen)
        self._generate[length](self.params, jax.random.PRNGKey(0)).block_until_ready()

    def compile_seconds(self, T: int) -> float:
        x = jnp.zeros((self.spec.batch, T), jnp.int32)
        t0 = time.perf_counter()
        jax.jit(self.step_fn()).lower(self.params, self.opt_state, x, x).compile()
        return time.perf_counter() - t0
