"""State norms ``||h_t||`` over time: does the state blow up, die out, or settle?

For every step ``t`` the norm of the whole carry (all leaves; complex leaves by modulus) of each
sequence, averaged over the batch. A tanh state lives in ``[-1, 1]^H`` so ``||h_t|| <= sqrt(H)``;
a ReLU (IRNN) or linear state can grow without bound. Shapes: ``B`` batch, ``T`` time.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.engine import unroll
from rnnlab.probes import _carry


def _norms(states, names) -> dict[str, jax.Array]:
    per_leaf = {
        n: jnp.sqrt(jnp.square(jnp.abs(s)).reshape(s.shape[:2] + (-1,)).sum(-1))
        for n, s in zip(names, jax.tree.leaves(states))
    }  # each [B, T]
    total = jnp.sqrt(sum(jnp.square(v) for v in per_leaf.values()))
    out = {"total": total.mean(axis=0)}
    if len(per_leaf) > 1:
        out.update({n: v.mean(axis=0) for n, v in per_leaf.items()})
    return out


@partial(jax.jit, static_argnames=("cell",))
def cell_state_norms(cell: nn.Module, params, xs: jax.Array, carry=None) -> dict[str, jax.Array]:
    """``{"total": [T], leaf: [T] ...}``: batch means of ``||carry_t||`` for ``xs [B, T, D]``."""
    B, _, D = xs.shape
    zero = cell.initialize_carry(None, (B, D))
    _, _, states = unroll(cell, params, xs, carry, return_states=True)
    return _norms(states, _carry.leaf_names(zero))


def model_state_norms(model, params, batch: dict) -> dict[str, dict[str, jax.Array]]:
    """Per layer of a SequenceModel: ``{"layer_0": {"total": [T], ...}, ...}``."""
    params = _carry.wrap(params)
    inputs = jnp.asarray(batch["inputs"])
    _, _, states = model.apply(params, inputs, return_states=True)
    return {
        f"layer_{i}": _norms(s, _carry.leaf_names(jax.tree.map(lambda a: a[:, 0], s)))
        for i, s in enumerate(states)
    }
