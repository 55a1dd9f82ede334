"""Lyapunov exponents of a recurrent network by the QR method (Engelken, Wolf & Abbott 2023).

Along a trajectory ``h_t = F(h_{t-1}, x_t)`` on the full state (``N`` real coordinates: every
carry leaf, so ``c`` and ``h`` for an LSTM), push an orthonormal basis ``Q_0 [N, k]`` through the
step Jacobians and re-orthonormalize:

    V_t = J_t Q_{t-1}        (k JVPs of the cell's own step; J is never formed)
    Q_t, R_t = qr(V_t)
    lambda_i = 1/(T - w) * sum_{t >= w} log |R_t[i, i]|          (nats per step)

after ``w`` warm-up steps (the basis aligns with the most expanding directions first).
``lambda_1 > 0``: perturbations grow (chaos, exploding gradients); ``< 0``: they contract
(vanishing). For a linear map with eigenvalues ``lambda`` the exponents are ``log |lambda|``
(checked in the tests). The time loop is the engine's step loop
(:func:`rnnlab.engine.step_loop`); every sequence of the batch is a
separate trajectory and the exponents are averaged over the batch.
Shapes: ``B`` batch, ``T`` time, ``D`` input, ``N`` state, ``k`` exponents.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.engine import step_loop
from rnnlab.probes import _carry


@partial(jax.jit, static_argnames=("cell", "k", "warmup", "seed"))
def cell_lyapunov(
    cell: nn.Module,
    params,
    xs: jax.Array,
    *,
    k: int | None = None,
    warmup: int = 0,
    carry=None,
    seed: int = 0,
) -> jax.Array:
    """The ``k`` largest Lyapunov exponents (descending, nats/step) along ``xs [B, T, D]``.

    Args:
      cell, params: an unbound cell and its variables.
      xs: ``[B, T, D]`` inputs driving the trajectories (zeros: the autonomous map).
      k: how many exponents (default: all ``N``).
      warmup: steps run before the averaging starts (``< T``).
      carry: initial carry (zeros when None).
      seed: for the random initial orthonormal basis.

    Returns:
      ``[k]`` exponents, batch means.
    """
    B, T, D = xs.shape
    if not 0 <= warmup < T:
        raise ValueError(f"warmup must lie in [0, T={T}), got {warmup}")
    zero = cell.initialize_carry(None, (B, D)) if carry is None else carry
    lay = _carry.layout(zero)
    N = lay.size
    k = N if k is None else k
    if not 1 <= k <= N:
        raise ValueError(f"k must lie in [1, N={N}] (the state size), got {k}")
    f = _carry.step_fn(cell, params, lay)
    xp = jnp.swapaxes(cell.apply(params, xs, method="project"), 0, 1)  # [T, B, G]
    h0 = _carry.flatten(zero)  # [B, N]
    dtype = h0.dtype
    q0, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(seed), (B, N, k), dtype))

    def body(state, inp):
        h, q = state  # [B, N], [B, N, k]
        xp_t, t = inp
        push = lambda v: jax.jvp(lambda hh: f(hh, xp_t), (h,), (v,))  # v [B, N]
        h_new, v = jax.vmap(push, in_axes=-1, out_axes=(None, -1))(q)  # [B, N], [B, N, k]
        q, r = jnp.linalg.qr(v)
        # A singular step (dead ReLU units) would give log 0 = -inf: floor |R_ii| at the
        # dtype's smallest normal number so the average stays finite (and very negative).
        diag = jnp.abs(jnp.diagonal(r, axis1=-2, axis2=-1))  # [B, k]
        logs = jnp.log(jnp.maximum(diag, jnp.finfo(diag.dtype).tiny))
        return (h_new, q), jnp.where(t >= warmup, logs, 0.0)

    _, logs = step_loop(body, (h0, q0), (xp, jnp.arange(T)))  # [T, B, k]: the engine's loop
    exps = logs.sum(axis=0) / (T - warmup)  # [B, k]
    return jnp.sort(exps.mean(axis=0))[::-1]
