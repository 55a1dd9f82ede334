"""Elman network (simple RNN), Elman 1990 "Finding structure in time".

Recurrence (shapes: x_t [B, D], h_t [B, H]):

    h_t = phi(W_x x_t + b + W_h h_{t-1}),    phi in {tanh, relu},    y_t = h_t

Options that matter for gradient flow (``recurrent_init``):

* ``"orthogonal"`` (default; Saxe et al. 2013): every singular value of W_h equals
  ``recurrent_scale``;
* ``"identity"``: IRNN (Le, Jaitly & Hinton 2015, "A simple way to initialize recurrent networks
  of rectified linear units"): W_h = scale * I, b = 0, input weights ~ N(0, 0.001^2); use with
  ``activation="relu"``;
* ``"gaussian"``: W_h ~ N(0, 1/H) rescaled to spectral radius ``recurrent_scale`` exactly; the
  classic knob for the vanishing (< 1) / exploding (> 1) transition (Pascanu et al. 2013).

The engine hoists ``W_x x_t + b`` out of the scan (:meth:`project`); :meth:`step` does only
``W_h h``. PyTorch's two biases (b_ih + b_hh) fold into the single ``b``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from rnnlab import cells, initializers
from rnnlab.engine import kernels
from rnnlab.engine.loops.common import last_valid

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class NativeElman:
    """The glue between this cell and the native Elman kernel (:mod:`rnnlab.engine.loops.native`
    documents the adapter contract): carry ``h``, ``W_h [H, H]``, no recurrent bias; the kernel's
    backward reads ``phi'`` off ``h_t`` (tanh: ``1 - h^2``; relu: ``h > 0``)."""

    kernel = "elman"
    gates = "h_t = phi(xp_t + h W_h), phi = tanh or relu (the cell's activation); carry h"

    def forward(self, cell, w, b, xp, ids, carry, eps, *, save, extra):
        relu = cell.activation == "relu"
        ys, h_prev_t, h_raw = kernels.elman_forward(
            xp, ids, w, carry, save=save, eps=eps, relu=relu
        )
        return ys[:, -1], ys, None, (h_prev_t, (ys, None if eps is None else h_raw))

    def backward(self, cell, w, b, carry, eps, rest, d_cT, d_ys, d_stacks, ids, vocab):
        ys, h_raw = rest
        relu = cell.activation == "relu"
        d_pre, d_h0, d_tab, d_e = kernels.elman_backward(
            w, ys, d_ys, d_cT, ids=ids, vocab=vocab, h_raw=h_raw, relu=relu
        )
        return d_pre, d_pre, d_h0, d_tab, d_e

    def final(self, carry, ys, stacks, valid):
        return last_valid(ys, carry, valid, time_axis=1)


class Cell(nn.Module):
    hidden_size: int
    activation: str = "tanh"  # tanh | relu
    recurrent_init: str = "orthogonal"  # orthogonal | identity | gaussian
    recurrent_scale: float = 1.0  # singular values (orthogonal), diagonal (identity), radius
    dtype: Any = None  # computation dtype; None promotes inputs and params
    param_dtype: Any = jnp.float32
    matmul_dtype: Any = None  # operands of h @ W_h, e.g. "bfloat16" (cells.recurrent_matmul)

    def __post_init__(self):
        cells.matmul_dtype(self.matmul_dtype)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"elman activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        initializers.recurrent(self.recurrent_init)  # validates the name early
        super().__post_init__()

    def setup(self):
        irnn = self.recurrent_init == "identity"
        self.input = nn.Dense(
            self.hidden_size,
            kernel_init=nn.initializers.normal(1e-3) if irnn else nn.initializers.lecun_normal(),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        self.w_h = self.param(
            "w_h",
            initializers.recurrent(self.recurrent_init, self.recurrent_scale),
            (self.hidden_size, self.hidden_size),
            self.param_dtype,
        )

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., H]``: ``W_x x + b``."""
        return self.input(x)

    def step(self, carry: jax.Array, xp_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``h_{t-1} [B, H], xp_t [B, H] -> (h_t, h_t)``."""
        h, w_h, xp_t = promote_dtype(carry, self.w_h, xp_t, dtype=self.dtype)
        h = ACTIVATIONS[self.activation](xp_t + cells.recurrent_matmul(h, w_h, self.matmul_dtype))
        return h, h

    # The native CPU kernel for this cell's time loop, where the plan takes it
    # (rnnlab.engine.plan): tanh or relu, both read off h_t in its backward.
    native = NativeElman()

    # The fused-backward contract (rnnlab.engine.loops.fused; docs/engine.md):
    # step(carry, xp_t) == gates(carry, xp_t, recurrent_state(carry) @ W_h + b_h).
    def recurrent_kernel(self) -> tuple[jax.Array, None]:
        """``(W_h [H, H], b_h=None)``: the recurrent matrix, in the computation dtype."""
        (w_h,) = promote_dtype(self.w_h, dtype=self.dtype)
        return w_h, None

    def recurrent_state(self, carry: jax.Array) -> jax.Array:
        """The part of the carry that multiplies ``W_h``: ``h [..., H]``."""
        return carry

    def gates(self, carry: jax.Array, xp_t: jax.Array, hr_t: jax.Array):
        """``h_t = phi(xp_t + hr_t)`` with ``hr_t = h_{t-1} @ W_h``; returns ``(h_t, h_t)``."""
        xp_t, hr_t = promote_dtype(xp_t, hr_t, dtype=self.dtype)
        h = ACTIVATIONS[self.activation](xp_t + hr_t)
        return h, h

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        return jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype or self.param_dtype)
