"""The selective state-space model (S6) of Mamba, Gu & Dao 2023, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces" (arXiv:2312.00752), Algorithm 2. Reference code:
state-spaces/mamba (``mamba_ssm/modules/mamba_simple.py``, ``selective_scan_ref``).

Per channel h = 1..H (H = ``hidden_size``) a diagonal state of size N (``state_size``, 16).
Shapes: x_t [B, D] (cell input), u_t [B, H], Delta_t [B, H], B_t, C_t [B, N],
state s_t [B, H, N] (the carry is it flattened, [B, H*N]), y_t [B, H]::

    u_t     = W_u x_t + b_u                          the channels' input (in the Mamba block:
                                                     SiLU(conv(in_proj x)); a projection here,
                                                     so the cell takes any width D)
    Delta_t = softplus(W_dt (W_r x_t) + b_dt)        [B, H], low rank R = ceil(H / 16)
    B_t     = W_B x_t,   C_t = W_C x_t               [B, N], shared by the channels
    A       = -exp(A_log)                            [H, N], S4D-real init A_hn = -(n + 1)
    A_bar   = exp(Delta_t A)                         zero-order hold, [B, H, N]
    B_bar u = Delta_t B_t u_t                        (the paper's Euler simplification of ZOH)
    s_t     = A_bar * s_{t-1} + B_bar u              element-wise, [B, H, N]
    y_t     = sum_n C_t[n] s_t[:, :, n] + D * u_t    D [H] (init 1)

Because Delta, B and C depend on the input, the recurrence is *selective* (time-varying), yet
still linear in the state: ``a_t = exp(Delta_t A)``, ``b_t = Delta_t B_t u_t`` (flattened to
[B, H*N]) feed the engine's associative scan; :meth:`readout` contracts with ``C_t``.

Initialization (as the reference): ``b_dt = softplus^{-1}(dt)`` with ``dt`` log-uniform in
``[dt_min, dt_max] = [0.001, 0.1]`` (floored at 1e-4), ``W_dt ~ U(+-R^{-1/2})``, ``A_log =
log(n + 1)``, ``D = 1``; ``W_u``, ``W_r``, ``W_B``, ``W_C`` LeCun normal. All input-side
products are one fused ``Dense`` hoisted out of the scan (:meth:`project`).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype


class Cell(nn.Module):
    hidden_size: int  # H channels
    state_size: int = 16  # N per channel
    dt_rank: int | None = None  # R (None: ceil(H / 16); the reference: ceil(d_model / 16))
    dt_min: float = 0.001
    dt_max: float = 0.1
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.state_size < 1:
            raise ValueError(f"mamba state_size must be >= 1, got {self.state_size}")
        if self.dt_rank is not None and self.dt_rank < 1:
            raise ValueError(f"mamba dt_rank must be >= 1 or None, got {self.dt_rank}")
        if not 0.0 < self.dt_min < self.dt_max:
            raise ValueError(
                f"mamba needs 0 < dt_min < dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}"
            )
        super().__post_init__()

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def _dt_bias_init(self, key, shape, dtype=jnp.float32):
        lo, hi = math.log(self.dt_min), math.log(self.dt_max)
        dt = jnp.maximum(jnp.exp(jax.random.uniform(key, shape) * (hi - lo) + lo), 1e-4)
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)  # softplus^{-1}(dt)

    @property
    def rank(self) -> int:
        return self.dt_rank or math.ceil(self.hidden_size / 16)

    def setup(self):
        H, N, R, pd = self.hidden_size, self.state_size, self.rank, self.param_dtype
        self.u_proj = nn.Dense(H, dtype=self.dtype, param_dtype=pd)
        self.x_proj = nn.Dense(R + 2 * N, use_bias=False, dtype=self.dtype, param_dtype=pd)
        std = R**-0.5
        self.dt_proj = nn.Dense(
            H,
            kernel_init=lambda k, s, d=pd: jax.random.uniform(k, s, d, -std, std),
            bias_init=self._dt_bias_init,
            dtype=self.dtype,
            param_dtype=pd,
        )
        a_init = lambda key, shape, d=jnp.float32: jnp.broadcast_to(
            jnp.log(jnp.arange(1, N + 1, dtype=jnp.float32)), shape
        ).astype(d)
        self.A_log = self.param("A_log", a_init, (H, N), pd)
        self.D = self.param("D", nn.initializers.ones, (H,), pd)

    def project(self, x: jax.Array) -> jax.Array:
        """``[..., D] -> [..., 2H + 2N]``: ``[u, Delta pre-activation, B, C]``."""
        u = self.u_proj(x)
        rbc = self.x_proj(x)
        dt = self.dt_proj(rbc[..., : self.rank])
        return jnp.concatenate([u, dt.astype(u.dtype), rbc[..., self.rank :].astype(u.dtype)], -1)

    def _split(self, xp):
        H, N = self.hidden_size, self.state_size
        return xp[..., :H], xp[..., H : 2 * H], xp[..., 2 * H : 2 * H + N], xp[..., 2 * H + N :]

    def linear_coeffs(self, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[..., 2H + 2N] -> (a, b)`` each ``[..., H*N]``: ``exp(Delta A)``, ``Delta B u``."""
        a_log, xp = promote_dtype(self.A_log, xp, dtype=self.dtype)
        u, dtp, b_in, _ = self._split(xp)
        delta = jax.nn.softplus(dtp)[..., :, None]  # [..., H, 1]
        A = -jnp.exp(a_log).reshape((1,) * (xp.ndim - 1) + a_log.shape)  # [1.., H, N]
        a = jnp.exp(delta * A)
        b = delta * b_in[..., None, :] * u[..., :, None]  # [..., H, N]
        flat = (*xp.shape[:-1], self.hidden_size * self.state_size)
        return a.reshape(flat), b.reshape(flat)

    def readout(self, s: jax.Array, xp: jax.Array) -> jax.Array:
        """``(s [..., H*N], xp) -> y = sum_n C[n] s[.., :, n] + D u`` ``[..., H]``."""
        d, s, xp = promote_dtype(self.D, s, xp, dtype=self.dtype)
        u, _, _, c = self._split(xp)
        s = s.reshape((*s.shape[:-1], self.hidden_size, self.state_size))
        return jnp.sum(s * c[..., None, :], axis=-1) + d.reshape((1,) * (u.ndim - 1) + d.shape) * u

    def step(self, carry: jax.Array, xp_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(s_{t-1} [B, H*N], xp_t [B, 2H + 2N]) -> (s_t, y_t [B, H])``."""
        a, b = self.linear_coeffs(xp_t)
        (s,) = promote_dtype(carry, dtype=self.dtype)
        s = a * s + b
        return s, self.readout(s, xp_t)

    def output(self, carry: jax.Array, xp_t: jax.Array) -> jax.Array:
        """``y_t`` from the (perturbed) new state: the perturbation hook's rule."""
        return self.readout(carry, xp_t)

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape) -> jax.Array:
        shape = (*input_shape[:-1], self.hidden_size * self.state_size)
        return jnp.zeros(shape, self.dtype or self.param_dtype)
