"""The reference loop: ``jax.lax.scan`` over ``cell.step``, differentiated by autodiff.

Every other loop is tested against this one. It takes any cell and every option (masking,
reverse, the perturbation hook, returned states, per-step remat, forward-mode autodiff).
Shapes: ``T`` time, ``B`` batch, ``G`` projected input, ``O`` output.
"""

from __future__ import annotations

import jax

from rnnlab.engine.loops import common


def run(cell, params, carry, feed: common.Feed, plan):
    """``(final carry, ys [B, T, O], states [T, B, ...] or None)`` for ``feed.kind == "xp"``."""
    if feed.kind != "xp":
        raise ValueError(f"the autodiff loop reads projected inputs ('xp'), got {feed.kind!r}")

    def step(carry, inp):
        new, y = cell.apply(params, carry, inp["xp"], method="step")
        new, y = common.finish_step(
            cell, params, carry, new, y, inp["xp"], inp.get("eps"), inp.get("valid")
        )
        return new, (y, new if plan.states else None)

    if plan.remat is True:  # recompute each step's internals in the backward pass
        step = jax.checkpoint(step)
    streams = {"xp": feed.stream, "eps": feed.eps, "valid": feed.valid}
    streams = {k: v for k, v in streams.items() if v is not None}
    ahead = ("xp",) if plan.read_ahead else ()
    carry, (ys, states) = common.scan_ahead(step, carry, streams, ahead=ahead, unroll=plan.unroll)
    return carry, common.time_major(ys), states
