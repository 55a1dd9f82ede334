"""Real-Gated Linear Recurrent Unit (RG-LRU), De et al. 2024, "Griffin: Mixing Gated Linear
Recurrences with Local Attention for Efficient Language Models" (arXiv:2402.19427), the
recurrence of Hawk. Reference code: google-deepmind/recurrentgemma (``jax/layers.py``, RGLRU).

Shapes: x_t [B, D] (cell input), h_t [B, H] (H = ``hidden_size``), y_t = h_t::

    v_t = W_v x_t                                   [B, H]  the recurrence's input (Hawk: the
                                                            conv branch; here a projection so
                                                            the cell takes any width D)
    r_t = sigmoid(W_a x_t + b_a)                    recurrence gate
    i_t = sigmoid(W_x x_t + b_x)                    input gate
    log a_t = c * r_t * log a,  log a = log sigmoid(L) = -softplus(-L),  c = 8
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * v_t)

``log a_t`` is computed as ``-c r_t softplus(-L)`` (never ``log`` of a sigmoid that rounds to
1), and ``1 - a_t^2 = -expm1(2 log a_t)``; the square root's derivative is bounded at 1000 as in
recurrentgemma (``sqrt_bound_derivative``), so ``a_t -> 1`` gives no infinite gradient.

Linear form: ``a_t`` as above and ``b_t = sqrt(1 - a_t^2) * i_t * v_t``; the engine may run it
with ``jax.lax.associative_scan``.

Initialization: ``L`` so that ``a^c`` (the decay per step at ``r_t = 1``) is uniform on the ring
``[r_min, r_max] = [0.9, 0.999]`` in the paper's sense (``|a^c|^2`` uniform between the
squares, as recurrentgemma's ``rnn_real_param_init`` draws it); note recurrentgemma's code
draws ``a`` itself on that ring (``a^c`` then lies in ``[0.43, 0.992]``); ``ring="a"`` selects
that. The three projections are one fused ``Dense(3H)`` (LeCun normal, zero biases), hoisted
out of the scan.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

C = 8.0  # the paper's fixed scale of the gate exponent
RINGS = ("ac", "a")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bound_derivative(x: jax.Array, max_gradient: float) -> jax.Array:
    """``sqrt(x)`` whose derivative is capped at ``max_gradient`` (recurrentgemma's)."""
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
    return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
    return (g / (2.0 * jnp.sqrt(jnp.maximum(x, 1.0 / (4.0 * max_gradient**2)))),)


sqrt_bound_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


class Cell(nn.Module):
    hidden_size: int
    r_min: float = 0.9  # init: the ring [r_min, r_max] for a^c (or a, ring="a")
    r_max: float = 0.999
    ring: str = "ac"  # ac (the paper's text) | a (recurrentgemma's code)
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if not 0.0 < self.r_min < self.r_max < 1.0:
            raise ValueError(
                f"rglru needs 0 < r_min < r_max < 1, got r_min={self.r_min}, r_max={self.r_max}"
            )
        if self.ring not in RINGS:
            raise ValueError(f"rglru ring must be one of {RINGS}, got {self.ring!r}")
        super().__post_init__()

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def _lambda_init(self, key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape)
        log_r = 0.5 * jnp.log(u * (self.r_max**2 - self.r_min**2) + self.r_min**2)  # log radius
        log_a = log_r / C if self.ring == "ac" else log_r  # log a  (< 0)
        # a = sigmoid(L)  <=>  softplus(-L) = -log a  <=>  L = -log(expm1(-log a))
        return (-jnp.log(jnp.expm1(-log_a))).astype(dtype)

    def setup(self):
        H = self.hidden_size
        self.input = nn.Dense(3 * H, dtype=self.dtype, param_dtype=self.param_dtype)
        self.lam = self.param("lam", self._lambda_init, (H,), self.param_dtype)

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 3H]``: ``[W_a x + b_a, W_x x + b_x, W_v x + b_v]``."""
        return self.input(x)

    def linear_coeffs(self, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[..., 3H] -> (a, b)`` each ``[..., H]``: ``a_t``, ``sqrt(1 - a_t^2) i_t v_t``."""
        lam, xp = promote_dtype(self.lam, xp, dtype=self.dtype)
        ra, ix, v = jnp.split(xp, 3, axis=-1)
        r, i = jax.nn.sigmoid(ra), jax.nn.sigmoid(ix)
        log_a = -C * r * jax.nn.softplus(-lam).reshape((1,) * (r.ndim - 1) + lam.shape)
        a = jnp.exp(log_a)
        multiplier = sqrt_bound_derivative(-jnp.expm1(2.0 * log_a), 1000.0)
        return a, multiplier * (i * v)

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
