"""Jordan network, Jordan 1986, "Serial order: a parallel distributed processing approach".

The state fed back is the previous *output* (Jordan's "state units"), not the hidden layer:

    h_t = phi(W_x x_t + b_h + U y_{t-1})         U [O, H]
    y_t = psi(W_y h_t + b_y)                       W_y [H, O],  carry = y_t

Shapes: x_t [B, D], h_t [B, H], y_t [B, O] with O = ``output_size`` (default H). ``phi`` is
``activation`` (tanh|relu), ``psi`` is ``output_activation`` (tanh|sigmoid|identity; Jordan used
logistic units). U is orthogonal (scaled by ``recurrent_scale``). The Jacobian of one step is
``dy_t/dy_{t-1} = diag(psi') W_y^T diag(phi') U^T``: gradient flow runs through both matrices.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

HIDDEN = {"tanh": jnp.tanh, "relu": jax.nn.relu}
OUTPUT = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda y: y}


class Cell(nn.Module):
    hidden_size: int
    out_features: int | None = None  # O, the width of y_t and of the carry (default H)
    activation: str = "tanh"  # phi: tanh | relu
    output_activation: str = "tanh"  # psi: tanh | sigmoid | identity
    recurrent_scale: float = 1.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.activation not in HIDDEN:
            raise ValueError(
                f"jordan activation must be one of {sorted(HIDDEN)}, got {self.activation!r}"
            )
        if self.output_activation not in OUTPUT:
            raise ValueError(
                f"jordan output_activation must be one of {sorted(OUTPUT)}, "
                f"got {self.output_activation!r}"
            )
        super().__post_init__()

    @property
    def output_size(self) -> int:
        return self.out_features or self.hidden_size

    def setup(self):
        H, O = self.hidden_size, self.output_size
        self.input = nn.Dense(H, dtype=self.dtype, param_dtype=self.param_dtype)
        self.u = self.param(
            "u", nn.initializers.orthogonal(self.recurrent_scale), (O, H), self.param_dtype
        )
        self.readout = nn.Dense(O, dtype=self.dtype, param_dtype=self.param_dtype)

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., H]``: ``W_x x + b_h``."""
        return self.input(x)

    def step(self, carry: jax.Array, xp_t: jax.Array):
        """``(y_{t-1} [B, O], xp_t [B, H]) -> (y_t, y_t)``."""
        y, u, xp_t = promote_dtype(carry, self.u, xp_t, dtype=self.dtype)
        h = HIDDEN[self.activation](xp_t + y @ u)
        y = OUTPUT[self.output_activation](self.readout(h))
        return y, y

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        return jnp.zeros((*input_shape[:-1], self.output_size), self.dtype or self.param_dtype)
