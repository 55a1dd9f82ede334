"""Initializers that matter for gradient flow in recurrent networks.

Every function returns a Flax-style initializer ``init(key, shape, dtype) -> Array``.

* ``orthogonal`` per gate block (Saxe et al. 2013): for a fused recurrent matrix of shape
  ``[H, k*H]`` each ``[H, H]`` block is drawn orthogonal on its own. (Flax's OptimizedLSTMCell
  draws one orthogonal ``[H, 4H]`` matrix, whose square blocks are *not* orthogonal.)
* ``identity`` (IRNN, Le, Jaitly & Hinton 2015): ``W_hh = scale * I``.
* ``gaussian`` scaled to a spectral radius: ``W ~ N(0, 1/H)``, then rescaled so that
  ``max |eig(W)| = scale`` exactly (not only asymptotically, as the circular law gives).
* ``chrono`` (Tallec & Ollivier 2018): forget bias ``b_f ~ log U[1, T_max - 1]``, ``b_i = -b_f``.
"""

from __future__ import annotations

import difflib

import jax
import jax.numpy as jnp
import numpy as np

RECURRENT_INITS = ("orthogonal", "identity", "gaussian")


def _blockwise(block_init, n_blocks: int):
    def init(key, shape, dtype=jnp.float32):
        rows, cols = shape
        if cols != n_blocks * rows:
            raise ValueError(f"expected a [H, {n_blocks}*H] matrix, got shape {shape}")
        keys = jax.random.split(key, n_blocks)
        blocks = [block_init(k, (rows, rows), dtype) for k in keys]
        return jnp.concatenate(blocks, axis=1)

    return init


def orthogonal(scale: float = 1.0, n_blocks: int = 1):
    """Orthogonal ``[H, H]`` blocks times ``scale`` (every singular value equals ``scale``)."""
    return _blockwise(jax.nn.initializers.orthogonal(scale), n_blocks)


def identity(scale: float = 1.0, n_blocks: int = 1):
    """``scale * I`` per block (IRNN)."""
    return _blockwise(lambda k, s, d: scale * jnp.eye(s[0], dtype=d), n_blocks)


def gaussian(spectral_radius: float = 1.0, n_blocks: int = 1):
    """``N(0, 1/H)`` per block, rescaled to an exact spectral radius ``max|eig| = radius``."""

    def block(key, shape, dtype):
        w = jax.random.normal(key, shape, jnp.float32) / np.sqrt(shape[0])
        # eigvals runs on the host (numpy) through a callback, so the initializer also traces
        # (Flax re-runs param initializers under jax.eval_shape in apply to check shapes).
        radius = lambda m: np.max(np.abs(np.linalg.eigvals(np.asarray(m, np.float64))))
        rho = jax.pure_callback(
            lambda m: np.asarray(radius(m), np.float32), jax.ShapeDtypeStruct((), jnp.float32), w
        )
        return (w * (spectral_radius / rho)).astype(dtype)

    return _blockwise(block, n_blocks)


def recurrent(kind: str, scale: float = 1.0, n_blocks: int = 1):
    """The recurrent-matrix initializer named ``kind`` (one of :data:`RECURRENT_INITS`)."""
    if kind == "orthogonal":
        return orthogonal(scale, n_blocks)
    if kind == "identity":
        return identity(scale, n_blocks)
    if kind == "gaussian":
        return gaussian(scale, n_blocks)
    close = difflib.get_close_matches(str(kind), RECURRENT_INITS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown recurrent_init {kind!r}.{hint} Expected one of {RECURRENT_INITS}.")


def chrono_forget_bias(t_max: float):
    """``b_f ~ log U[1, T_max - 1]`` (Tallec & Ollivier 2018), for one ``[H]`` bias vector."""
    if t_max <= 2:
        raise ValueError(f"chrono init needs t_max > 2 (the dependency length), got {t_max}")

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32, 1.0, t_max - 1.0)
        return jnp.log(u).astype(dtype)

    return init
