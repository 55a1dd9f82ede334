"""minGRU, Feng et al. 2024, "Were RNNs All We Needed?" (arXiv:2410.01201).

A GRU with the state removed from its gates and candidate, so the recurrence is *linear* in the
state and runs with a parallel (associative) scan. Shapes: x_t [B, D], h_t [B, H].

    z_t  = sigmoid(W_z x_t + b_z)                  update gate
    h~_t = g(W_h x_t + b_h)                        candidate (g = identity, or the paper's
                                                   log-space-friendly g, ``candidate="g"``)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t        y_t = h_t

Linear form (what :mod:`rnnlab.engine.loops.associative` feeds ``jax.lax.associative_scan``):
``h_t = a_t * h_{t-1} + b_t`` with ``a_t = 1 - z_t`` and ``b_t = z_t * h~_t``.

``candidate="g"``: ``g(v) = v + 0.5`` for ``v >= 0`` and ``sigmoid(v)`` otherwise (the paper's
positive activation for its log-space scan; continuous at 0, where both equal 0.5).

Init: both projections are one fused ``Dense(2H)`` (LeCun normal, zero bias) hoisted out of the
scan; ``gate_bias`` shifts ``b_z`` (negative values make the state remember longer at init:
``a = 1 - sigmoid(gate_bias)``). There is no recurrent matrix: ``dh_t/dh_{t-1} = diag(1 - z_t)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

CANDIDATES = ("identity", "g")


def g(v: jax.Array) -> jax.Array:
    """The paper's positive candidate activation: ``v + 0.5`` if ``v >= 0`` else ``sigmoid(v)``."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


class Cell(nn.Module):
    hidden_size: int
    candidate: str = "identity"  # identity | g (the paper's positive activation)
    gate_bias: float = 0.0  # initial b_z
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.candidate not in CANDIDATES:
            raise ValueError(
                f"mingru candidate must be one of {CANDIDATES}, got {self.candidate!r}"
            )
        super().__post_init__()

    def _bias_init(self, key, shape, dtype=jnp.float32):
        H = self.hidden_size
        return jnp.zeros(shape, dtype).at[:H].set(self.gate_bias)

    def setup(self):
        self.input = nn.Dense(
            2 * self.hidden_size,
            bias_init=self._bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 2H]``: gate and candidate pre-activations ``[W_z x + b_z, W_h x + b_h]``."""
        return self.input(x)

    def linear_coeffs(self, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[..., 2H] -> (a, b)`` each ``[..., H]``: ``a = 1 - z``, ``b = z * h~``."""
        (xp,) = promote_dtype(xp, dtype=self.dtype)
        zp, hp = jnp.split(xp, 2, axis=-1)
        z = jax.nn.sigmoid(zp)
        cand = g(hp) if self.candidate == "g" else hp
        return 1.0 - z, z * cand

    def readout(self, h: jax.Array, xp: jax.Array) -> jax.Array:
        """``y_t = h_t``."""
        return h

    def step(self, carry: jax.Array, xp_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(h_{t-1} [B, H], xp_t [B, 2H]) -> (h_t, h_t)``."""
        a, b = self.linear_coeffs(xp_t)
        (h,) = promote_dtype(carry, dtype=self.dtype)
        h = a * h + b
        return h, h

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        return jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype or self.param_dtype)
