"""Independently recurrent neural network (IndRNN), Li et al. 2018, "Independently Recurrent Neural
Network (IndRNN): Building a Longer and Deeper RNN" (CVPR; arXiv:1803.04831).

Each unit sees only its own past: the recurrent matrix is diagonal. Shapes: x_t [B, D],
h_t [B, H]:

    h_t = relu(W x_t + u * h_{t-1} + b)          u [H] (element-wise), y_t = h_t

Gradient flow is per unit: while unit n is active, ``dh_{T,n}/dh_{0,n} = prod_t u_n``, so
``|u_n|^T`` decides whether it vanishes or explodes. The paper's bound (Sec. 3.1): keep
``|u_n| <= gamma^(1/T)`` so the product stays below ``gamma`` (``magnitude``, 2 in the paper's
code) over ``T = max_len`` steps; and ``|u_n| >= eps^(1/T)`` for units that must remember over
the whole sequence.

Options:

* ``max_len`` (T): when set, ``u`` is kept in ``[-magnitude^(1/T), magnitude^(1/T)]`` the
  paper's way (Sec. 3.1 and its reproduction code batzner/indrnn): by a projection *after each
  optimizer step* (:meth:`project_params`, applied by :func:`rnnlab.optim.constrain`), not in
  the forward pass, so the gradient of ``u`` is the unconstrained one everywhere and a weight
  that crosses the bound is put back on it;
* ``bound``: ``"projection"`` (default, the paper's) or ``"forward_clip"`` (the lab's earlier
  behaviour, kept only for comparison: ``u`` clipped inside the step, no projection; the
  gradient is zero past the bound, so a weight that crosses it stays out there);
* ``recurrent_init``: ``"uniform"`` (default) draws ``u ~ U[0, 1]`` (``U[0, magnitude^(1/T)]``
  with ``max_len``); ``"long"`` draws ``u ~ U[(1/magnitude)^(1/T), magnitude^(1/T)]`` (the
  paper's init for the last layer on the long tasks, so every unit keeps memory over T steps;
  needs ``max_len``);
* input weights: LeCun normal, zero bias; the input projection is hoisted out of the scan.

The recurrence is not linear in the state (the relu), so it runs on the sequential scan; each
step is one element-wise multiply (no matmul), which is what makes IndRNN cheap.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

RECURRENT_INITS = ("uniform", "long")
BOUNDS = ("projection", "forward_clip")


def _lead(v: jax.Array, ndim: int) -> jax.Array:
    """``[H] -> [1, ..., 1, H]`` of rank ``ndim`` (explicit: no implicit rank promotion)."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


class Cell(nn.Module):
    hidden_size: int
    max_len: int | None = None  # T for the |u| <= magnitude^(1/T) bound (None: no bound)
    magnitude: float = 2.0  # gamma in the bound (the paper's code uses 2)
    recurrent_init: str = "uniform"  # uniform | long
    bound: str = "projection"  # projection (after each update) | forward_clip (the old way)
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.recurrent_init not in RECURRENT_INITS:
            raise ValueError(
                f"indrnn recurrent_init must be one of {RECURRENT_INITS}, "
                f"got {self.recurrent_init!r}"
            )
        if self.bound not in BOUNDS:
            raise ValueError(f"indrnn bound must be one of {BOUNDS}, got {self.bound!r}")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"indrnn max_len must be >= 1, got {self.max_len}")
        if self.magnitude <= 1.0:
            raise ValueError(f"indrnn magnitude must be > 1, got {self.magnitude}")
        if self.recurrent_init == "long" and self.max_len is None:
            raise ValueError("indrnn recurrent_init='long' needs max_len (the sequence length T)")
        super().__post_init__()

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def u_bound(self) -> float | None:
        """``magnitude^(1/T)``, or ``None`` without ``max_len``."""
        return None if self.max_len is None else self.magnitude ** (1.0 / self.max_len)

    def _u_init(self, key, shape, dtype=jnp.float32):
        high = 1.0 if self.u_bound is None else self.u_bound
        low = 1.0 / high if self.recurrent_init == "long" else 0.0
        return jax.random.uniform(key, shape, jnp.float32, low, high).astype(dtype)

    def setup(self):
        self.input = nn.Dense(self.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype)
        self.u = self.param("u", self._u_init, (self.hidden_size,), self.param_dtype)

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., H]``: ``W x + b``."""
        return self.input(x)

    def step(self, carry: jax.Array, xp_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(h_{t-1} [B, H], xp_t [B, H]) -> (h_t, h_t)``."""
        h, u, xp_t = promote_dtype(carry, self.u, xp_t, dtype=self.dtype)
        if self.u_bound is not None and self.bound == "forward_clip":
            u = jnp.clip(u, -self.u_bound, self.u_bound)
        h = jax.nn.relu(xp_t + _lead(u, h.ndim) * h)
        return h, h

    @property
    def has_constraint(self) -> bool:
        """Whether :meth:`project_params` does anything (``max_len`` set, ``bound="projection"``)."""
        return self.u_bound is not None and self.bound == "projection"

    def project_params(self, variables):
        """The constraint as a projection: ``u <- clip(u, -bound, bound)`` on the cell's
        variables ``{"params": {"u": [..., H], ...}}`` (any leading axes, e.g. seeds); the
        identity without ``max_len`` or with ``bound="forward_clip"``."""
        if not self.has_constraint:
            return variables
        params = dict(variables["params"])
        params["u"] = jnp.clip(params["u"], -self.u_bound, self.u_bound)
        return {**variables, "params": params}

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        return jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype or self.param_dtype)
