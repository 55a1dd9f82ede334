"""The step loop: the engine's time loop for recurrences fed by their own outputs.

Sampling (:mod:`rnnlab.sample`), seq2seq decoding (:mod:`rnnlab.seq2seq`) and the Lyapunov
probe cannot hoist their inputs (step ``t`` reads what step ``t - 1`` produced, or pushes a
tangent basis along), so they run ``step`` once per time step through this one function, a
``jax.lax.scan`` over time-major streams. One place, so the engine has one way to step in time
(layers run their planned loops, :mod:`rnnlab.engine.loops`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def step_loop(
    step: Callable[[Any, Any], tuple[Any, Any]],
    state,
    xs=None,
    *,
    length: int | None = None,
    unroll: int = 1,
):
    """``state_T, ys = step_loop(step, state_0, xs)`` with ``state_t, y_t = step(state_{t-1},
    xs[t])`` for ``t < T``.

    Args:
      step: ``(state, x_t) -> (state, y_t)``, a pure function (any pytrees).
      state: the initial state.
      xs: time-major streams (leaves ``[T, ...]``), or None with ``length``.
      length: ``T`` when ``xs`` is None (then ``x_t`` is the step index ``t``, an int32 scalar).
      unroll: forwarded to ``jax.lax.scan``.

    Returns:
      ``(final state, ys)``, ``ys`` leaves ``[T, ...]``.
    """
    if xs is None:
        if length is None or length < 0:
            raise ValueError(f"step_loop needs xs or a length >= 0, got length={length!r}")
        xs = jax.numpy.arange(length, dtype=jax.numpy.int32)
    return jax.lax.scan(step, state, xs, unroll=unroll)
