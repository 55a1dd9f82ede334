"""Linear Recurrent Unit, Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences" (ICML; arXiv:2303.06349).

A complex diagonal linear recurrence with a real readout. Shapes: u_t [B, D] (input),
x_t [B, N] complex (N = ``hidden_size``), y_t [B, O] real (O = ``out_features``, default N):

    lambda = exp(-exp(nu_log) + i exp(theta_log))          [N] complex, |lambda| < 1 always
    gamma  = exp(gamma_log)                                 [N], init sqrt(1 - |lambda|^2)
    x_t    = lambda * x_{t-1} + gamma * (B u_t)             B [N, D] complex
    y_t    = Re(C x_t) + D u_t                              C complex (stored [N, O]), D skip

Linear form: ``x_t = a_t * x_{t-1} + b_t`` with complex ``a_t = lambda`` (the same for every t)
and ``b_t = gamma * (B u_t)``; :meth:`linear_coeffs` returns them as complex arrays and
:meth:`readout` maps ``x_t`` to the real ``y_t``.

The carry is real-packed: ``[B, 2N] = [Re x, Im x]`` (so every carry, state and perturbation the
engine and probes see is a real array); :meth:`unpack_carry` / :meth:`pack_carry` convert
between the carry and the complex state ``x``. The engine's associative path uses them.

Initialization (the paper's Sec. 3, and its reference code):

* ring init: ``|lambda| = sqrt(u1 (r_max^2 - r_min^2) + r_min^2)``, ``arg lambda = max_phase u2``
  with ``u1, u2 ~ U[0, 1]``, stored as ``nu_log = log(-log|lambda|)``,
  ``theta_log = log(arg lambda)`` (the exponential parametrization keeps ``|lambda| < 1`` under
  any gradient step);
* gamma normalization: ``gamma_log = log sqrt(1 - |lambda|^2)`` so ``E|x_t|^2`` matches
  ``E|B u|^2`` at init for white-noise inputs, however close ``|lambda|`` is to 1; learned;
* ``B = (B_re + i B_im)`` with entries ``N(0, 1/(2D))``; ``C`` entries ``N(0, 1/N)``;
* skip ``D``: ``"diagonal"`` is the paper's element-wise ``D * u`` (``D ~ N(0, 1)``; needs
  ``D == O``); ``"dense"`` (default, any input width) a ``[D, O]`` matrix (LeCun normal);
  ``"none"`` drops it.

Complex arithmetic runs in complex64 (complex128 for float64 params); outputs and carry are real.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

SKIPS = ("dense", "diagonal", "none")


class _Diagonal(nn.Module):
    """``D * u``, one weight per feature (the paper's skip); the input width must equal O."""

    features: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, u):
        if u.shape[-1] != self.features:
            raise ValueError(
                f"lru skip='diagonal' needs input width == out_features ({self.features}), "
                f"got {u.shape[-1]}; use skip='dense'"
            )
        d = self.param("d", nn.initializers.normal(1.0), (self.features,), self.param_dtype)
        return u * d.reshape((1,) * (u.ndim - 1) + d.shape)


class Cell(nn.Module):
    hidden_size: int  # N, the complex state size
    out_features: int | None = None  # O (default N)
    r_min: float = 0.0  # ring init: |lambda| in [r_min, r_max]
    r_max: float = 1.0
    max_phase: float = 2 * math.pi  # arg lambda in [0, max_phase]
    skip: str = "dense"  # dense | diagonal | none
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if not 0.0 <= self.r_min < self.r_max <= 1.0:
            raise ValueError(
                f"lru needs 0 <= r_min < r_max <= 1, got r_min={self.r_min}, r_max={self.r_max}"
            )
        if self.skip not in SKIPS:
            raise ValueError(f"lru skip must be one of {SKIPS}, got {self.skip!r}")
        super().__post_init__()

    @property
    def output_size(self) -> int:
        return self.out_features or self.hidden_size

    def setup(self):
        N, O, pd = self.hidden_size, self.output_size, self.param_dtype

        def nu_init(key, shape, dtype=pd):
            u1 = jax.random.uniform(key, shape)
            r2 = u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2
            r2 = jnp.clip(r2, 1e-12, 1.0 - 1e-7)  # |lambda| in (0, 1): nu_log stays finite
            return jnp.log(-0.5 * jnp.log(r2)).astype(dtype)

        def theta_init(key, shape, dtype=pd):
            u2 = jax.random.uniform(key, shape, minval=1e-6)  # log(0) guard
            return jnp.log(self.max_phase * u2).astype(dtype)

        self.nu_log = self.param("nu_log", nu_init, (N,))
        self.theta_log = self.param("theta_log", theta_init, (N,))
        # gamma from the lambda drawn just above (its init sees the already-created params).
        modulus = lambda: jnp.exp(-jnp.exp(self.nu_log))
        self.gamma_log = self.param(
            "gamma_log", lambda key: jnp.log(jnp.sqrt(1.0 - modulus() ** 2)).astype(pd)
        )
        # B u packed as [Re(Bu), Im(Bu)]: one real [D, 2N] matmul, entries N(0, 1/(2D)).
        self.input = nn.Dense(
            2 * N,
            use_bias=False,
            kernel_init=nn.initializers.variance_scaling(0.5, "fan_in", "normal"),
            dtype=self.dtype,
            param_dtype=pd,
        )
        c_init = nn.initializers.normal(1.0 / math.sqrt(N))
        self.c_re = self.param("c_re", c_init, (N, O), pd)
        self.c_im = self.param("c_im", c_init, (N, O), pd)
        if self.skip == "dense":
            self.skip_proj = nn.Dense(O, use_bias=False, dtype=self.dtype, param_dtype=pd)
        elif self.skip == "diagonal":
            self.skip_proj = _Diagonal(O, param_dtype=pd)

    # ------------------------------------------------------------------ carry <-> state

    def unpack_carry(self, carry: jax.Array) -> jax.Array:
        """Real-packed ``[..., 2N]`` -> complex state ``[..., N]``."""
        N = self.hidden_size
        carry = carry.astype(jnp.promote_types(carry.dtype, jnp.float32))
        return jax.lax.complex(carry[..., :N], carry[..., N:])

    def pack_carry(self, x: jax.Array) -> jax.Array:
        """Complex state ``[..., N]`` -> real-packed ``[..., 2N]``."""
        return jnp.concatenate([x.real, x.imag], axis=-1)

    # ------------------------------------------------------------------------- the cell

    def project(self, u: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 2N + O]``: ``[Re(B u), Im(B u), D u]`` (skip term zero if none)."""
        bu = self.input(u)
        if self.skip == "none":
            du = jnp.zeros((*u.shape[:-1], self.output_size), bu.dtype)
        else:
            du = self.skip_proj(u)
        return jnp.concatenate([bu, du.astype(bu.dtype)], axis=-1)

    def linear_coeffs(self, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[..., 2N + O] -> (a, b)`` complex ``[..., N]``: ``a = lambda``, ``b = gamma B u``."""
        N = self.hidden_size
        nu_log, theta_log, gamma_log, xp = promote_dtype(
            self.nu_log, self.theta_log, self.gamma_log, xp, dtype=self.dtype
        )
        real = jnp.promote_types(xp.dtype, jnp.float32)  # no complex bfloat16: >= complex64
        nu_log, theta_log, gamma_log, xp = (
            v.astype(real) for v in (nu_log, theta_log, gamma_log, xp)
        )
        lam = jnp.exp(jax.lax.complex(-jnp.exp(nu_log), jnp.exp(theta_log)))  # [N]
        bu = jax.lax.complex(xp[..., :N], xp[..., N : 2 * N])
        b = jnp.exp(gamma_log).reshape((1,) * (bu.ndim - 1) + (N,)) * bu
        return jnp.broadcast_to(lam, b.shape), b

    def readout(self, x: jax.Array, xp: jax.Array) -> jax.Array:
        """``(x [..., N] complex, xp [..., 2N + O]) -> y = Re(C x) + D u`` real ``[..., O]``."""
        N = self.hidden_size
        c_re, c_im, xp = promote_dtype(self.c_re, self.c_im, xp, dtype=self.dtype)
        re, im = x.real.astype(xp.dtype), x.imag.astype(xp.dtype)
        return re @ c_re - im @ c_im + xp[..., 2 * N :]  # Re((C_re + i C_im) x)

    def step(self, carry: jax.Array, xp_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(carry [B, 2N], xp_t [B, 2N + O]) -> (carry, y_t [B, O])``."""
        a, b = self.linear_coeffs(xp_t)
        x = a * self.unpack_carry(carry) + b
        y = self.readout(x, xp_t)
        carry_dtype = self.dtype or jnp.result_type(carry, y)  # the initial carry's dtype
        return self.pack_carry(x).astype(carry_dtype), y

    def output(self, carry: jax.Array, xp_t: jax.Array) -> jax.Array:
        """``y_t`` from the (real-packed) new carry: ``Re(C x_t) + D u_t``."""
        return self.readout(self.unpack_carry(carry), xp_t)

    def __call__(self, carry, u_t):
        return self.step(carry, self.project(u_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        shape = (*input_shape[:-1], 2 * self.hidden_size)
        return jnp.zeros(shape, self.dtype or self.param_dtype)
