"""Gate saturation: the fraction of sigmoid gates above 0.99 or below 0.01.

Cell-agnostic by construction: a *gate* is the output of every ``sigmoid`` (the ``logistic``
primitive that ``jax.nn.sigmoid`` lowers to) evaluated inside the cell's ``step``. The probe
traces ``step`` to a jaxpr and evaluates it with a small interpreter that records those outputs
(descending into ``jit``/``custom_jvp``-style sub-jaxprs; sigmoids inside a loop within a step
are not seen). So LSTM (forget, input, output gates), GRU (reset, update), minGRU/minLSTM gates
are all covered without any per-cell code; a cell without sigmoids (tanh/ReLU Elman, Jordan
with tanh, LRU, IndRNN) reports no gates. Gates are named ``sigmoid_k`` in evaluation order
(for this repo's LSTM: 0 = forget, 1 = input, 2 = output).

The step runs on all ``B*T`` (previous carry, projected input) pairs at once, taken from one
engine pass with ``return_states``: no time loop. Shapes: ``B`` batch, ``T`` time, ``D`` input.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.extend.core as jcore
import jax.numpy as jnp

from rnnlab.engine import unroll

_CALLS = ("pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call")


def _eval(jaxpr, consts, args, record: list):
    env = {}
    read = lambda v: v.val if isinstance(v, jcore.Literal) else env[v]
    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        sub = next((p for p in eqn.params.values() if isinstance(p, jcore.ClosedJaxpr)), None)
        if eqn.primitive.name in _CALLS and sub is not None:
            outs = _eval(
                sub.jaxpr, sub.consts, invals[len(invals) - len(sub.jaxpr.invars) :], record
            )
        else:
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
            if eqn.primitive.name == "logistic":
                record.append(outs[0])
        for v, x in zip(eqn.outvars, outs):
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def gate_values(cell: nn.Module, params, carry, xp_t: jax.Array) -> list[jax.Array]:
    """Every sigmoid output inside one ``step(carry, xp_t)``, in evaluation order."""
    closed = jax.make_jaxpr(lambda c, x: cell.apply(params, c, x, method="step"))(carry, xp_t)
    record: list = []
    _eval(closed.jaxpr, closed.consts, jax.tree.leaves((carry, xp_t)), record)
    return record


def cell_saturation(
    cell: nn.Module, params, xs: jax.Array, carry=None, *, low: float = 0.01, high: float = 0.99
) -> dict[str, dict[str, float]]:
    """Saturation of every gate over ``xs [B, T, D]``.

    Returns:
      ``{"sigmoid_k": {"high": frac > high, "low": frac < low, "saturated": their sum,
      "mean": mean gate value}, ..., "all": {...} over every gate}``; empty when the cell has
      no sigmoid gates.
    """
    stats = _gate_stats(cell, params, xs, carry, low, high)  # [n_gates + 1, 3] or None
    if stats is None:
        return {}
    stats = jax.device_get(stats)
    names = [f"sigmoid_{i}" for i in range(len(stats) - 1)] + ["all"]
    return {
        n: {"high": float(h), "low": float(lo), "saturated": float(h + lo), "mean": float(m)}
        for n, (h, lo, m) in zip(names, stats)
    }


@partial(jax.jit, static_argnames=("cell", "low", "high"))
def _gate_stats(cell, params, xs, carry, low, high):
    B, T, D = xs.shape
    zero = cell.initialize_carry(None, (B, D)) if carry is None else carry
    _, _, states = unroll(cell, params, xs, zero, return_states=True)
    prev = jax.tree.map(
        lambda z, s: jnp.concatenate([z[:, None], s[:, :-1]], axis=1).reshape(
            (B * T,) + z.shape[1:]
        ),
        zero,
        states,
    )  # the carry before each step, [B*T, ...]
    xp = cell.apply(params, xs, method="project")
    gates = gate_values(cell, params, prev, xp.reshape((B * T,) + xp.shape[2:]))
    if not gates:
        return None
    gates.append(jnp.concatenate([g.ravel() for g in gates]))
    return jnp.stack(
        [jnp.stack([jnp.mean(g > high), jnp.mean(g < low), jnp.mean(g)]) for g in gates]
    )
