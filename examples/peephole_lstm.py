"""Peephole LSTM, Gers & Schmidhuber 2000, "Recurrent nets that time and count" (IJCNN).

The gates also look at the cell state ("peepholes", diagonal weights p_i, p_f, p_o):

    i = sigmoid(W_xi x_t + W_hi h_{t-1} + p_i * c_{t-1} + b_i)
    f = sigmoid(W_xf x_t + W_hf h_{t-1} + p_f * c_{t-1} + b_f)
    c_t = f * c_{t-1} + i * tanh(W_xg x_t + W_hg h_{t-1} + b_g)
    o = sigmoid(W_xo x_t + W_ho h_{t-1} + p_o * c_t + b_o)
    h_t = o * tanh(c_t),                         carry = (c_t, h_t),  y_t = h_t

Shapes: x_t [B, D], c_t, h_t [B, H]; W_x [D, 4H], W_h [H, 4H] (gate order i, f, g, o), p [3, H].
Peepholes start at zero (a plain LSTM at init); W_h is orthogonal per gate block; b_f = 1.

A complete rnnlab cell in one file: register it with
``rnnlab.cells.register("peephole", "examples/peephole_lstm.py")`` and use
``rnnlab.RNN("peephole", 64)``; ``rnnlab.conformance.check_cell("peephole")`` checks it.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from rnnlab import initializers


class Cell(nn.Module):
    hidden_size: int
    forget_bias: float = 1.0
    dtype: Any = None  # computation dtype (None: promote inputs and params)
    param_dtype: Any = jnp.float32

    def setup(self):
        H = self.hidden_size
        bias = lambda key, shape, dtype: jnp.zeros(shape, dtype).at[H : 2 * H].set(self.forget_bias)
        self.input = nn.Dense(4 * H, bias_init=bias, dtype=self.dtype, param_dtype=self.param_dtype)
        self.w_h = self.param(
            "w_h", initializers.orthogonal(n_blocks=4), (H, 4 * H), self.param_dtype
        )
        self.peephole = self.param("peephole", nn.initializers.zeros, (3, H), self.param_dtype)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def project(self, x):
        """``[..., D] -> [..., 4H]``: ``W_x x + b``, hoisted out of the time loop by the engine."""
        return self.input(x)

    def step(self, carry, xp_t):
        """``((c, h) [B, H] each, xp_t [B, 4H]) -> ((c, h), h)``: one time step."""
        w_h, h = promote_dtype(self.w_h, carry[1], dtype=self.dtype)
        return self.gates(carry, xp_t, h @ w_h)

    # The fused-backward contract (docs/engine.md): step(carry, xp_t) == gates(carry, xp_t,
    # recurrent_state(carry) @ W_h + b_h). With it, backward="auto" takes the fused backward
    # from H = 64 (rnnlab explain shows it); the peepholes, read by the gates, get their
    # gradient summed over the steps of the backward scan.
    def recurrent_kernel(self):
        """``(W_h [H, 4H], b_h=None)``, in the computation dtype."""
        (w_h,) = promote_dtype(self.w_h, dtype=self.dtype)
        return w_h, None

    def recurrent_state(self, carry):
        """The part of the carry that multiplies ``W_h``: ``h`` of ``(c, h)``."""
        return carry[1]

    def gates(self, carry, xp_t, hr_t):
        """The step given ``hr_t = h_{t-1} @ W_h [B, 4H]``: ``((c, h), h)``."""
        c, p, xp_t, hr_t = promote_dtype(carry[0], self.peephole, xp_t, hr_t, dtype=self.dtype)
        p_i, p_f, p_o = (jnp.broadcast_to(w, c.shape) for w in p)  # explicit [H] -> [B, H]
        i, f, g, o = jnp.split(xp_t + hr_t, 4, axis=-1)
        c = jax.nn.sigmoid(f + p_f * c) * c + jax.nn.sigmoid(i + p_i * c) * jnp.tanh(g)
        h = jax.nn.sigmoid(o + p_o * c) * jnp.tanh(c)
        return (c, h), h

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape):
        zeros = jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype or self.param_dtype)
        return zeros, zeros
