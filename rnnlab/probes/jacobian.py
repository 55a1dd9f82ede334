"""Singular values of the Jacobian products ``dh_T/dh_t`` along a trajectory.

With the step map ``h_t = F(h_{t-1}, x_t)`` on the whole state (``N`` real coordinates: all carry
leaves), the step Jacobian is ``J_t = dF/dh (h_{t-1}, x_t)`` ``[N, N]`` and the long-range
Jacobian is the product ``P_t = dh_{T-1}/dh_t = J_{T-1} ... J_{t+1}`` (``P_{T-1} = I``).
Its singular values say how perturbations (forward) and gradients (backward: ``P_t^T``) at step
``t`` are stretched over the lag ``T-1-t``: all of them << 1 is vanishing, any >> 1 exploding.

The step Jacobians come from the cell's own ``step`` (``jax.jacfwd``, vectorized over ``t``);
the products run in one ``jax.lax.scan`` from the end. Cost ``O(T N^3)``: meant for ``N`` up to a
few hundred. Products of many contracting maps underflow float32 near ``1e-38``; the probe runs
in the params' dtype, so use modest ``T`` or float64 (``jax_enable_x64``) for extreme lags.
Shapes: ``T`` time, ``D`` input, ``N`` state.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.engine import unroll
from rnnlab.probes import _carry


@partial(jax.jit, static_argnames=("cell",))
def step_jacobians(cell: nn.Module, params, xs: jax.Array, carry=None) -> jax.Array:
    """``J_t = d h_t / d h_{t-1}`` for one sequence ``xs [T, D]``: ``[T, N, N]``."""
    T, D = xs.shape
    zero = cell.initialize_carry(None, (1, D)) if carry is None else carry
    lay = _carry.layout(zero)
    _, _, states = unroll(cell, params, xs[None], zero, return_states=True)
    h = _carry.flatten(states, lead=2)[0]  # [T, N]
    h_prev = jnp.concatenate([_carry.flatten(zero), h[:-1]], axis=0)  # [T, N]
    xp = cell.apply(params, xs, method="project")  # [T, G]
    f = _carry.step_fn(cell, params, lay)
    one = lambda hp, x: jax.jacfwd(lambda v: f(v[None], x[None])[0])(hp)  # [N, N]
    return jax.vmap(one)(h_prev, xp)


@jax.jit
def product_singular_values(jacobians: jax.Array) -> jax.Array:
    """``[T, N, N]`` step Jacobians -> ``[T, N]`` singular values of ``P_t = J_{T-1}...J_{t+1}``,
    descending; row ``T-1`` is the identity's (all ones), row ``t`` has lag ``T-1-t``."""
    N = jacobians.shape[-1]

    def back(P, J):  # P = J_{T-1} ... J_{t+1}; emit it, then absorb J_t
        return P @ J, P

    eye = jnp.eye(N, dtype=jacobians.dtype)
    _, products = jax.lax.scan(back, eye, jacobians, reverse=True)  # [T, N, N]
    return jnp.linalg.svd(products, compute_uv=False)


def cell_jacobian_spectrum(cell: nn.Module, params, xs: jax.Array, carry=None) -> jax.Array:
    """Singular values ``[T, N]`` of ``dh_{T-1}/dh_t`` for one sequence ``xs [T, D]``."""
    return product_singular_values(step_jacobians(cell, params, xs, carry))
