"""Gated recurrent unit, Cho et al. 2014, "Learning phrase representations using RNN
encoder-decoder for statistical machine translation".

Shapes: x_t [B, D], h_t [B, H]; gate order r, z, n as in PyTorch/cuDNN.

``convention="pytorch"`` (default; PyTorch and cuDNN): the reset gate multiplies the recurrent
matmul's output, which has its own bias b_hn:

    r = sigmoid(W_xr x + b_r + W_hr h_{t-1})
    z = sigmoid(W_xz x + b_z + W_hz h_{t-1})
    n = tanh(W_xn x + b_n + r * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

``convention="cho"`` (the paper): the reset gate multiplies the state before the matmul,
``n = tanh(W_xn x + b_n + W_hn (r * h_{t-1}))`` (no b_hn; one extra small matmul per step).

W_h [H, 3H] is orthogonal per gate block. The engine hoists ``W_x x_t + b`` (:meth:`project`).
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

CONVENTIONS = ("pytorch", "cho")


class NativeGRU:
    """The glue between this cell (``convention="pytorch"``) and the native GRU kernel
    (:mod:`rnnlab.engine.loops.native` documents the adapter contract): carry ``h``,
    ``W_h [H, 3H]`` and ``b_h = [0, 0, b_hn]``."""

    kernel = "gru"
    gates = "r, z, n; n = tanh(xp_n + r * (h W_hn + b_hn)) (PyTorch/cuDNN); carry h"

    def forward(self, cell, w, b, xp, ids, carry, eps, *, save, extra):
        H = w.shape[0]
        ys, acts, h_prev_t = kernels.gru_forward(xp, ids, w, b[2 * H :], carry, save=save, eps=eps)
        return ys[:, -1], ys, None, (h_prev_t, (ys, acts))

    def backward(self, cell, w, b, carry, eps, rest, d_cT, d_ys, d_stacks, ids, vocab):
        ys, acts = rest
        return kernels.gru_backward(
            w, acts, ys, carry, d_ys, d_cT, ids=ids, vocab=vocab, perturbed=eps is not None
        )  # (d_xp, d_hr, d_h0, d_table, d_eps): d_xp and d_hr differ in the n block

    def final(self, carry, ys, stacks, valid):
        return last_valid(ys, carry, valid, time_axis=1)


class Cell(nn.Module):
    hidden_size: int
    convention: str = "pytorch"  # pytorch (cuDNN) | cho (reset before the matmul)
    recurrent_init: str = "orthogonal"
    recurrent_scale: float = 1.0
    dtype: Any = None
    param_dtype: Any = jnp.float32
    matmul_dtype: Any = None  # operands of h @ W_h, e.g. "bfloat16" (cells.recurrent_matmul)

    def __post_init__(self):
        cells.matmul_dtype(self.matmul_dtype)
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"gru convention must be one of {CONVENTIONS}, got {self.convention!r}"
            )
        initializers.recurrent(self.recurrent_init)
        super().__post_init__()

    def setup(self):
        H = self.hidden_size
        self.input = nn.Dense(3 * H, dtype=self.dtype, param_dtype=self.param_dtype)
        self.w_h = self.param(
            "w_h",
            initializers.recurrent(self.recurrent_init, self.recurrent_scale, n_blocks=3),
            (H, 3 * H),
            self.param_dtype,
        )
        if self.convention == "pytorch":
            self.b_hn = self.param("b_hn", nn.initializers.zeros, (H,), self.param_dtype)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 3H]``: ``W_x x + b`` for r, z, n."""
        return self.input(x)

    def step(self, carry: jax.Array, xp_t: jax.Array):
        """``(h [B, H], xp_t [B, 3H]) -> (h, h)``."""
        H = self.hidden_size
        h, w_h, xp_t = promote_dtype(carry, self.w_h, xp_t, dtype=self.dtype)
        xr, xz, xn = jnp.split(xp_t, 3, axis=-1)
        if self.convention == "pytorch":
            (b_hn,) = promote_dtype(self.b_hn, dtype=self.dtype)
            hr_t = cells.recurrent_matmul(h, w_h, self.matmul_dtype)  # one fused [H, 3H] matmul
            hr, hz, hn = jnp.split(hr_t, 3, axis=-1)
            r = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            b_hn = jnp.broadcast_to(b_hn, hn.shape)  # explicit: no implicit rank promotion
            n = jnp.tanh(xn + r * (hn + b_hn))
        else:
            mm = lambda a, w: cells.recurrent_matmul(a, w, self.matmul_dtype)
            hr, hz = jnp.split(mm(h, w_h[:, : 2 * H]), 2, axis=-1)
            r = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + mm(r * h, w_h[:, 2 * H :]))
        h = (1.0 - z) * n + z * h
        return h, h

    # The fused-backward contract (rnnlab.engine.loops.fused; docs/engine.md), for the
    # pytorch convention only: step(carry, xp_t) == gates(carry, xp_t, carry @ W_h + b_h).
    @property
    def native(self) -> NativeGRU | None:
        """The native CPU kernel's adapter for this cell's time loop (pytorch convention)."""
        return NativeGRU() if self.convention == "pytorch" else None

    @property
    def dense_recurrence(self) -> bool:
        """True when the step is ``gates(h, xp_t, h @ W_h + b_h)`` (not for ``cho``)."""
        return self.convention == "pytorch"

    def recurrent_kernel(self) -> tuple[jax.Array, jax.Array]:
        """``(W_h [H, 3H], b_h [3H] = [0, 0, b_hn])``, in the computation dtype."""
        if self.convention != "pytorch":
            raise ValueError("gru recurrent_kernel exists for convention='pytorch' only")
        w_h, b_hn = promote_dtype(self.w_h, self.b_hn, dtype=self.dtype)
        b_h = jnp.concatenate([jnp.zeros((2 * self.hidden_size,), b_hn.dtype), b_hn])
        return w_h, b_h

    def recurrent_state(self, carry: jax.Array) -> jax.Array:
        """The part of the carry that multiplies ``W_h``: ``h [..., H]``."""
        return carry

    def gates(self, carry: jax.Array, xp_t: jax.Array, hr_t: jax.Array):
        """The step given ``hr_t = h_{t-1} @ W_h + [0, 0, b_hn]`` ``[B, 3H]``: ``(h, h)``."""
        h, xp_t, hr_t = promote_dtype(carry, xp_t, hr_t, dtype=self.dtype)
        xr, xz, xn = jnp.split(xp_t, 3, axis=-1)
        hr, hz, hn = jnp.split(hr_t, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1.0 - z) * n + z * h
        return h, h

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        return jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype or self.param_dtype)
