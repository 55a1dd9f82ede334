"""Long short-term memory, Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000.

Recurrence (shapes: x_t [B, D], c_t, h_t [B, H]; gate order i, f, g, o as in PyTorch/cuDNN):

    [i, f, g, o] = W_x x_t + b + W_h h_{t-1}          W_x [D, 4H], W_h [H, 4H], b [4H]
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t),                      carry = (c_t, h_t),  y_t = h_t

Initializations that matter for gradient flow:

* W_h is orthogonal **per gate block** (each [H, H] block on its own; Saxe et al. 2013), times
  ``recurrent_scale``;
* forget-gate bias ``forget_bias`` (default 1.0; Gers et al. 2000, Jozefowicz et al. 2015);
* chrono init (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"): set
  ``chrono_tmax`` to the dependency length T_max; then b_f ~ log U[1, T_max - 1] and
  b_i = -b_f, so forget gates start with characteristic times spread over [1, T_max].

The engine hoists ``W_x x_t + b`` for all t into one matmul (:meth:`project`); :meth:`step` does
only the fused ``h @ W_h`` [H, 4H]. PyTorch's b_ih + b_hh fold into ``b``.
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


class NativeLSTM:
    """The glue between this cell and the native LSTM kernel (:mod:`rnnlab.engine.loops.native`
    documents the adapter contract): carry ``(c, h)``, ``W_h [H, 4H]`` with no recurrent bias."""

    kernel = "lstm"
    gates = "i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of xp_t + h W_h; carry (c, h)"

    def forward(self, cell, w, b, xp, ids, carry, eps, *, save, extra):
        c0, h0 = carry  # ys [B, T, H], cs [T, B, H]
        ys, cs, acts, h_prev_t = kernels.lstm_forward(xp, ids, w, c0, h0, save=save, eps=eps)
        return (cs[-1], ys[:, -1]), ys, cs if extra else None, (h_prev_t, (cs, acts))

    def backward(self, cell, w, b, carry, eps, rest, d_cT, d_ys, d_cs, ids, vocab):
        cs, acts = rest
        eps_c = None if eps is None else eps[0]
        d_pre, d_c0, d_h0, d_tab, d_e = kernels.lstm_backward(
            w, acts, cs, carry[0], d_ys, *d_cT, ids=ids, vocab=vocab, eps_c=eps_c, d_cs=d_cs
        )
        return d_pre, d_pre, (d_c0, d_h0), d_tab, d_e  # the gates read xp_t + hr_t: one cotangent

    def final(self, carry, ys, cs, valid):
        c = last_valid(cs, carry[0], valid, time_axis=0)
        return c, last_valid(ys, carry[1], valid, time_axis=1)


class Cell(nn.Module):
    hidden_size: int
    forget_bias: float = 1.0  # initial b_f (ignored when chrono_tmax is set)
    chrono_tmax: float | None = None  # chrono init: b_f ~ log U[1, T_max-1], b_i = -b_f
    recurrent_init: str = "orthogonal"  # per gate block: orthogonal | identity | gaussian
    recurrent_scale: float = 1.0
    dtype: Any = None
    param_dtype: Any = jnp.float32
    matmul_dtype: Any = None  # operands of h @ W_h, e.g. "bfloat16" (cells.recurrent_matmul)

    def __post_init__(self):
        initializers.recurrent(self.recurrent_init)
        cells.matmul_dtype(self.matmul_dtype)
        if self.chrono_tmax is not None and self.chrono_tmax <= 2:
            raise ValueError(f"lstm chrono_tmax must be > 2, got {self.chrono_tmax}")
        super().__post_init__()

    def _bias_init(self, key, shape, dtype=jnp.float32):
        H = self.hidden_size
        b = jnp.zeros((4, H), jnp.float32)
        if self.chrono_tmax is not None:
            b_f = initializers.chrono_forget_bias(self.chrono_tmax)(key, (H,))
            b = b.at[1].set(b_f).at[0].set(-b_f)
        else:
            b = b.at[1].set(self.forget_bias)
        return b.reshape(shape).astype(dtype)

    def setup(self):
        H = self.hidden_size
        self.input = nn.Dense(
            4 * H, bias_init=self._bias_init, dtype=self.dtype, param_dtype=self.param_dtype
        )
        self.w_h = self.param(
            "w_h",
            initializers.recurrent(self.recurrent_init, self.recurrent_scale, n_blocks=4),
            (H, 4 * H),
            self.param_dtype,
        )

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 4H]``: ``W_x x + b`` for all four gates."""
        return self.input(x)

    def step(self, carry, xp_t: jax.Array):
        """``((c, h) [B, H] each, xp_t [B, 4H]) -> ((c, h), h)``."""
        c, h = carry
        c, h, w_h, xp_t = promote_dtype(c, h, self.w_h, xp_t, dtype=self.dtype)
        return self.update(c, xp_t + cells.recurrent_matmul(h, w_h, self.matmul_dtype))

    def update(self, c, pre):
        """``(c [B, H], pre [B, 4H]) -> ((c, h), h)``: the elementwise part of a step."""
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    # The read-ahead scan (rnnlab.engine.loops.common.scan_ahead): XLA already gives the gate
    # inputs their own kernels (the gate math is several kernels), so reading them a step early
    # only adds a copy: train LSTM-512 80.4 ms without vs 83.6 ms with (BENCHMARKS.md).
    read_ahead = False

    # The native CPU kernel for this cell's time loop, where the plan takes it
    # (rnnlab.engine.plan); the carry (c, h) and gate order are the kernel's.
    native = NativeLSTM()

    # The fused-backward contract (rnnlab.engine.loops.fused; docs/engine.md):
    # step(carry, xp_t) == gates(carry, xp_t, recurrent_state(carry) @ W_h + b_h).
    def recurrent_kernel(self) -> tuple[jax.Array, None]:
        """``(W_h [H, 4H], b_h=None)``: the fused recurrent matrix, in the computation dtype."""
        (w_h,) = promote_dtype(self.w_h, dtype=self.dtype)
        return w_h, None

    def recurrent_state(self, carry):
        """The part of the carry that multiplies ``W_h``: ``h`` of ``(c, h)``."""
        return carry[1]

    def gates(self, carry, xp_t: jax.Array, hr_t: jax.Array):
        """The step given ``hr_t = h_{t-1} @ W_h [B, 4H]``: ``((c, h), h)``."""
        c, xp_t, hr_t = promote_dtype(carry[0], xp_t, hr_t, dtype=self.dtype)
        return self.update(c, xp_t + hr_t)

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape):
        shape = (*input_shape[:-1], self.hidden_size)
        dtype = self.dtype or self.param_dtype
        return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)
