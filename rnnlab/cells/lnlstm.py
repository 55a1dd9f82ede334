"""Layer-normalized LSTM, Ba, Kiros & Hinton 2016, "Layer Normalization" (arXiv:1607.06450), Sec. 3.1.

Recurrence (shapes: x_t [B, D], c_t, h_t [B, H]; gate order i, f, g, o as in :mod:`.lstm`):

    [i, f, g, o] = LN(W_x x_t; a_x, b) + LN(W_h h_{t-1}; a_h, 0)     W_x [D, 4H], W_h [H, 4H]
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(LN(c_t; a_c, b_c)),        carry = (c_t, h_t),  y_t = h_t

with ``LN(z; a, b) = a * (z - mean(z)) / sqrt(var(z) + eps) + b`` over the last axis of one
row (the whole 4H gate vector for the two gate terms, as in the paper; H for the cell), gains
``a`` [4H] / [H] (initialized to 1) and biases learned. The input and recurrent terms are
normalized *separately*, so neither can swamp the other. Only one gate bias ``b`` [4H] exists
(the input LayerNorm's; a second bias on the recurrent term would be the same parameter twice);
it starts at ``forget_bias`` on the forget gate, zero elsewhere, as in :mod:`.lstm`. ``W_h`` is
orthogonal per gate block.

The input term is row-wise, so the engine hoists it (:meth:`project`: ``LN(W_x x) `` for all t
in one matmul, or the embedding table's rows once). :meth:`step` does ``h @ W_h``, its
LayerNorm and the gates.

Loops: the cell declares ``recurrent_kernel``/``recurrent_state``/``gates`` (the regularizers
use them: the recurrent dropout mask on ``h_{t-1}`` where it enters ``W_h``, weight-drop's
``W_h``) but sets ``dense_recurrence = False``, so the layer runs the autodiff loop: with the
fused backward, whose gates' parameter gradients now exist, the loss of
``tests/test_fused.py``'s masked+perturbed case differed from the autodiff reference by 2e-6
relative (its tolerance is 1e-6; the LayerNorms amplify rounding), not yet looked into.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from rnnlab import cells, initializers

EPSILON = 1e-5  # LayerNorm's variance floor (PyTorch/Flax default)


class Cell(nn.Module):
    hidden_size: int
    forget_bias: float = 1.0  # initial b_f (the input LayerNorm's bias on the forget gate)
    recurrent_init: str = "orthogonal"  # per gate block: orthogonal | identity | gaussian
    recurrent_scale: float = 1.0
    dtype: Any = None
    param_dtype: Any = jnp.float32
    matmul_dtype: Any = None  # operands of h @ W_h, e.g. "bfloat16" (cells.recurrent_matmul)

    # the fused loop's loss differs by 2e-6 relative (see the module docstring): autodiff only
    dense_recurrence = False

    def __post_init__(self):
        initializers.recurrent(self.recurrent_init)
        cells.matmul_dtype(self.matmul_dtype)
        super().__post_init__()

    def _bias_init(self, key, shape, dtype=jnp.float32):
        H = self.hidden_size
        b = jnp.zeros((4, H), jnp.float32).at[1].set(self.forget_bias)
        return b.reshape(shape).astype(dtype)

    def setup(self):
        H = self.hidden_size
        common = dict(epsilon=EPSILON, dtype=self.dtype, param_dtype=self.param_dtype)
        self.input = nn.Dense(4 * H, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        self.w_h = self.param(
            "w_h",
            initializers.recurrent(self.recurrent_init, self.recurrent_scale, n_blocks=4),
            (H, 4 * H),
            self.param_dtype,
        )
        self.ln_x = nn.LayerNorm(bias_init=self._bias_init, **common)  # a_x, b [4H]
        self.ln_h = nn.LayerNorm(use_bias=False, **common)  # a_h [4H]
        self.ln_c = nn.LayerNorm(**common)  # a_c, b_c [H]

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 4H]``: ``LN(W_x x; a_x, b)``, row by row."""
        return self.ln_x(self.input(x))

    def step(self, carry, xp_t: jax.Array):
        """``((c, h) [B, H] each, xp_t [B, 4H]) -> ((c, h), h)``."""
        w_h, _ = self.recurrent_kernel()
        h = promote_dtype(carry[1], dtype=self.dtype)[0]
        return self.gates(carry, xp_t, cells.recurrent_matmul(h, w_h, self.matmul_dtype))

    def recurrent_kernel(self) -> tuple[jax.Array, None]:
        """``(W_h [H, 4H], None)``: the recurrent matrix, in the computation dtype."""
        (w_h,) = promote_dtype(self.w_h, dtype=self.dtype)
        return w_h, None

    def recurrent_state(self, carry):
        """The part of the carry that multiplies ``W_h``: ``h`` of ``(c, h)``."""
        return carry[1]

    def gates(self, carry, xp_t: jax.Array, hr_t: jax.Array):
        """The step given ``hr_t = h_{t-1} @ W_h [B, 4H]``: ``((c, h), h)``."""
        c, xp_t, hr_t = promote_dtype(carry[0], xp_t, hr_t, dtype=self.dtype)
        i, f, g, o = jnp.split(xp_t + self.ln_h(hr_t), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(self.ln_c(c))
        return (c, h), h

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape):
        shape = (*input_shape[:-1], self.hidden_size)
        dtype = self.dtype or self.param_dtype
        return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)
