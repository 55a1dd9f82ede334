"""The parallel loop for cells linear in their state: ``jax.lax.associative_scan``.

A cell that declares its linear form (``linear_coeffs(xp) -> (a, b)`` and ``readout(h, xp)``)
satisfies ``h_t = a_t * h_{t-1} + b_t``; composing steps is associative,
``(a1, b1) o (a2, b2) = (a2 a1, a2 b1 + b2)``, so all ``h_t`` come from a scan of depth
``O(log T)``. Same results as the sequential loop to float rounding.
Shapes: ``T`` time, ``B`` batch, ``G`` projected input, ``H`` linear state, ``O`` output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.engine.loops import common


def _compose(left, right):
    """``(a1, b1) o (a2, b2) = (a2 a1, a2 b1 + b2)``: step 1 then step 2 of ``h = a h + b``."""
    (a1, b1), (a2, b2) = left, right
    return a2 * a1, a2 * b1 + b2


def run(cell, params, carry, feed: common.Feed, plan):
    """``(final carry, ys [B, T, O], states [T, B, ...] or None)`` for ``feed.kind == "xp"``.

    ``(a, b) = cell.linear_coeffs(xp)`` ``[T, B, H]``; the initial carry folds into
    ``b_0 += a_0 h_0``; a perturbation adds to ``b_t`` (so ``y_t`` and later states see it); a
    masked step gets ``a = 1, b = 0`` (the state is frozen) and a zero output. Cells whose
    carry is not the linear state itself (LRU: complex state, real-packed carry) convert with
    ``unpack_carry`` / ``pack_carry``.
    """
    if feed.kind != "xp":
        raise ValueError(f"the associative scan reads projected inputs ('xp'), got {feed.kind!r}")
    unpack = getattr(cell, "unpack_carry", lambda c: c)
    pack = getattr(cell, "pack_carry", lambda h: h)
    xp = feed.stream  # [T, B, G]
    a, b = cell.apply(params, xp, method="linear_coeffs")  # [T, B, H] each
    h0 = unpack(carry).astype(b.dtype)
    if feed.eps is not None:
        b = b + unpack(feed.eps).astype(b.dtype)
    if feed.valid is not None:
        valid = feed.valid[..., None]  # [T, B, 1]
        a = jnp.where(valid, a, jnp.ones_like(a))
        b = jnp.where(valid, b, jnp.zeros_like(b))
    b = b.at[0].add(a[0] * h0)
    _, hs = jax.lax.associative_scan(_compose, (a, b), axis=0)  # hs[t] = h_t, [T, B, H]
    # y_t reads the perturbed state h_t (= a_t h_{t-1} + b_t + eps_t), as the sequential scan does.
    ys = cell.apply(params, hs, xp, method="readout")  # [T, B, O]
    if feed.valid is not None:
        ys = jnp.where(valid, ys, jnp.zeros_like(ys))
    like = lambda h: jax.tree.map(lambda v, c: v.astype(c.dtype), pack(h), carry)
    return like(hs[-1]), common.time_major(ys), like(hs) if plan.states else None
