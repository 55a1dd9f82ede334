"""minLSTM, Feng et al. 2024, "Were RNNs All We Needed?" (arXiv:2410.01201).

An LSTM with the state removed from its gates, no output gate and no cell/hidden split, so the
recurrence is *linear* in the state and runs with a parallel (associative) scan.
Shapes: x_t [B, D], h_t [B, H].

    f_t  = sigmoid(W_f x_t + b_f),   i_t = sigmoid(W_i x_t + b_i)
    f'_t = f_t / (f_t + i_t),        i'_t = i_t / (f_t + i_t)      (time-independent scale)
    h~_t = W_h x_t + b_h
    h_t  = f'_t * h_{t-1} + i'_t * h~_t                             y_t = h_t

Linear form: ``h_t = a_t * h_{t-1} + b_t`` with ``a_t = f'_t`` and ``b_t = i'_t * h~_t``.
``normalize=False`` keeps the raw gates (``a = f``, ``b = i * h~``), the paper's un-normalized
variant. The normalization is computed stably as ``f' = sigmoid(s_f - s_i')`` with
``s = log sigmoid(.)`` (never divides small numbers by small numbers).

Init: the three projections are one fused ``Dense(3H)`` (LeCun normal) hoisted out of the scan;
``forget_bias`` is the initial ``b_f`` (Gers et al. 2000's trick; larger = longer memory).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype


class Cell(nn.Module):
    hidden_size: int
    forget_bias: float = 1.0  # initial b_f
    normalize: bool = True  # f' = f / (f + i), i' = i / (f + i)
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def _bias_init(self, key, shape, dtype=jnp.float32):
        H = self.hidden_size
        return jnp.zeros(shape, dtype).at[:H].set(self.forget_bias)

    def setup(self):
        self.input = nn.Dense(
            3 * self.hidden_size,
            bias_init=self._bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 3H]``: ``[W_f x + b_f, W_i x + b_i, W_h x + b_h]``."""
        return self.input(x)

    def linear_coeffs(self, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[..., 3H] -> (a, b)`` each ``[..., H]``: ``a = f'``, ``b = i' * h~``."""
        (xp,) = promote_dtype(xp, dtype=self.dtype)
        fp, ip, cand = jnp.split(xp, 3, axis=-1)
        if not self.normalize:
            return jax.nn.sigmoid(fp), jax.nn.sigmoid(ip) * cand
        # f / (f + i) = 1 / (1 + i/f) = sigmoid(log f - log i), in log space for stability.
        d = jax.nn.log_sigmoid(fp) - jax.nn.log_sigmoid(ip)
        return jax.nn.sigmoid(d), jax.nn.sigmoid(-d) * cand

    def readout(self, h: jax.Array, xp: jax.Array) -> jax.Array:
        """``y_t = h_t``."""
        return h

    def step(self, carry: jax.Array, xp_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(h_{t-1} [B, H], xp_t [B, 3H]) -> (h_t, h_t)``."""
        a, b = self.linear_coeffs(xp_t)
        (h,) = promote_dtype(carry, dtype=self.dtype)
        h = a * h + b
        return h, h

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        return jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype or self.param_dtype)
