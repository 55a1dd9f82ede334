"""One layer, one direction: :func:`unroll` plans the layer (:mod:`.plan`), makes the input feed
and runs the planned loop (:mod:`.loops`).

Shape legend: ``B`` batch, ``T`` time, ``D`` input features, ``G`` projected features (4H for
an LSTM), ``H`` hidden, ``O`` cell output. The API is batch-major (``[B, T, D]``); the loops run
time-major.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.engine import plan as plan_lib
from rnnlab.engine.inputs import (
    Embedded,
    as_inputs,
    check_inputs,
    input_dtype,
    input_shape,
    take_rows,
)
from rnnlab.engine.loops import LOOPS, common
from rnnlab.engine.loops.common import Carry, reverse_sequences, time_major


def layer_plan(
    cell, params, xs, carry=None, perturbation=None, *, options, chunk=None, where=""
) -> plan_lib.Plan:
    """The :class:`~rnnlab.engine.plan.Plan` of ``cell`` on ``xs`` (abstractly: nothing runs)."""
    B, T, D = input_shape(xs)
    dtype = input_dtype(xs)
    probe = jax.ShapeDtypeStruct((1, D), dtype)
    projected = jax.eval_shape(lambda p, x: cell.apply(p, x, method="project"), params, probe)
    dtypes = [dtype, *(a.dtype for a in jax.tree.leaves(projected))]
    dtypes += [a.dtype for a in jax.tree.leaves((carry, perturbation))]
    if carry is None:
        dtypes += [a.dtype for a in jax.tree.leaves(cell.initialize_carry(None, (1, D)))]
    if callable(getattr(type(cell), "recurrent_kernel", None)):  # the native rules read these
        try:
            kernel = jax.eval_shape(lambda p: cell.apply(p, method="recurrent_kernel"), params)
            dtypes += [a.dtype for a in jax.tree.leaves(kernel)]
        except ValueError:  # not for this configuration (GRU cho): the plan's rules say so
            pass
    vocab = int(np.shape(xs.table)[0]) if isinstance(xs, Embedded) else None
    widths = tuple(a.shape[-1] for a in jax.tree.leaves(projected))
    return plan_lib.plan(
        cell, (B, T, D), dtype, vocab=vocab, options=options, dtypes=tuple(dtypes),
        widths=widths, chunk=chunk, where=where,
    )  # fmt: skip


def make_feed(cell, params, xs, plan, valid, eps) -> common.Feed:
    """The time-major :class:`~rnnlab.engine.loops.common.Feed` the plan names."""
    project = lambda x: cell.apply(params, x, method="project")
    if plan.feed in ("tokens", "gathered"):
        table = project(xs.table)  # [V, G]: the table's V rows, projected once
        ids = time_major(xs.ids)  # [T, B]
        if plan.feed == "tokens":  # the fused loops gather xp_t = table[ids_t] in the loop
            return common.Feed("ids", ids, table, valid, eps)
        return common.Feed("xp", take_rows(table, ids), None, valid, eps)  # [T, B, G]
    if plan.feed == "in_loop":
        return common.Feed("x", time_major(xs), None, valid, eps)
    B, T, D = xs.shape
    # Transposes of big arrays are slow on XLA:CPU (~10 ms for [32, 100, 512] float32), so
    # transpose the narrower of x [.., D] and xp [.., G].
    if plan.feed == "rows":
        rows = project(time_major(xs).reshape(T * B, D))
        xp = jax.tree.map(lambda a: a.reshape(T, B, a.shape[-1]), rows)
    else:
        xp = jax.tree.map(time_major, project(xs))  # [T, B, G]
    return common.Feed("xp", xp, None, valid, eps)


def run_plan(cell, params, xs, carry, plan, *, seq_lengths, reverse, perturbation):
    """Run ``plan`` on ``xs``: ``(final carry, ys [B, T, O], states [B, T, ...] or None)``."""
    B, T, D = input_shape(xs)
    if isinstance(xs, Embedded) and plan.embed_first:
        xs = take_rows(xs.table, xs.ids)  # embed, then project the rows as usual
    carry = common.initial_carry(cell, carry, B, D)
    if reverse:  # the projection acts per step, so reversing its input is the same
        rev = lambda a: reverse_sequences(a, seq_lengths)
        xs = Embedded(rev(xs.ids), xs.table) if isinstance(xs, Embedded) else rev(xs)
        if perturbation is not None:
            perturbation = jax.tree.map(rev, perturbation)
    eps = None if perturbation is None else jax.tree.map(time_major, perturbation)
    feed = make_feed(cell, params, xs, plan, common.valid_mask(seq_lengths, T), eps)
    carry, ys, states = LOOPS[plan.loop](cell, params, carry, feed, plan)
    if states is not None:
        states = jax.tree.map(time_major, states)
    if reverse:
        ys = reverse_sequences(ys, seq_lengths)
        if states is not None:
            states = jax.tree.map(lambda s: reverse_sequences(s, seq_lengths), states)
    return carry, ys, states


def unroll(
    cell,
    params,
    xs: jax.Array,
    carry: Carry | None = None,
    *,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    perturbation: Carry | None = None,
    return_states: bool = False,
    remat: bool | str = False,
    unroll: int = 1,
    backward: str = "auto",
    scan: str = "auto",
    where: str = "",
) -> tuple[Carry, jax.Array, Carry | None]:
    """Run one cell over a batch of sequences, by the loop its plan names.

    Args:
      cell: an unbound cell module (the contract in :mod:`rnnlab.cells`, docs/engine.md).
      params: the cell's variables, ``{"params": ...}``.
      xs: ``[B, T, D]`` inputs, or :class:`Embedded` token ids ``[B, T]`` into a table ``[V, D]``.
      carry: initial carry (pytree of ``[B, ...]``); zeros when ``None``.
      seq_lengths: ``[B]`` int, valid length of each (right-padded) sequence: each sequence's
        carry is frozen after its end and its padded outputs are zero.
      reverse: run from each sequence's last valid step to its first.
      perturbation: carry-shaped pytree with leaves ``[B, T, ...]`` added to the carry after step
        ``t`` (in original time order). Pass zeros and differentiate to get ``dL/dh_t``.
      return_states: also return the carry after every step (leaves ``[B, T, ...]``).
      remat: ``True``: rematerialize each step in the backward pass; ``"chunked"``: checkpoint
        chunks of ~sqrt(T) steps *including the input projection*, so only the inputs and
        ~sqrt(T) carries are kept (the most memory saved).
      unroll: forwarded to ``jax.lax.scan``.
      backward: ``"autodiff"`` (differentiate the scan: the reference), ``"fused"`` (one
        matmul over all T*B rows for the weight gradient, in XLA or a native kernel; cells
        with the fused contract only), or ``"auto"`` (the plan's choice). Forward-mode
        autodiff (``jax.jvp``) needs ``"autodiff"``.
      scan: ``"sequential"``, ``"associative"`` (cells linear in their state) or ``"auto"``.
      where: the label of the plan (e.g. ``"layer 0 forward"``, for :func:`rnnlab.explain`).

    Returns:
      ``(final_carry, ys [B, T, O], states or None)``, all in original time order.
    """
    check_inputs(xs, seq_lengths, where="unroll")
    xs = as_inputs(xs)
    seq_lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
    options = plan_lib.Options(backward, scan, remat, unroll, return_states)
    kw = dict(seq_lengths=seq_lengths, reverse=reverse, perturbation=perturbation)
    if remat == "chunked":
        K = _chunk(input_shape(xs)[1])
        p = layer_plan(cell, params, xs, carry, perturbation, options=options, chunk=K, where=where)
        return _unroll_chunked(cell, params, xs, carry, plan_lib.record(p), K, **kw)
    p = layer_plan(cell, params, xs, carry, perturbation, options=options, where=where)
    return run_plan(cell, params, xs, carry, plan_lib.record(p), **kw)


def _chunk(T: int) -> int:
    """``K ~ sqrt(T)``: the divisor of ``T`` nearest ``sqrt(T)`` when one lies within a factor 2
    of it, so no padded step is computed (T = 2000: 40-step chunks); else ``ceil(sqrt(T))``."""
    root = np.sqrt(T)
    divisors = [k for k in range(int(np.ceil(root / 2)), int(2 * root) + 1) if T % k == 0]
    return min(divisors, key=lambda k: abs(k - root)) if divisors else int(np.ceil(root))


def _unroll_chunked(cell, params, xs, carry, plan, K, *, seq_lengths, reverse, perturbation):
    """``remat="chunked"``: the plan's loop over chunks of ``K`` steps, each chunk (projection +
    loop) under ``jax.checkpoint``; ``T`` is padded to ``n*K`` with masked steps if need be."""
    B, T, D = input_shape(xs)
    n = -(-T // K)
    carry = common.initial_carry(cell, carry, B, D)
    table = xs.table if isinstance(xs, Embedded) else None
    xs = xs.ids if table is not None else xs  # chunk the ids; each chunk gathers its own rows
    if reverse:
        xs = reverse_sequences(xs, seq_lengths)
        if perturbation is not None:
            perturbation = jax.tree.map(lambda e: reverse_sequences(e, seq_lengths), perturbation)
    masked = seq_lengths is not None or n * K != T
    lengths = jnp.full((B,), T) if seq_lengths is None else seq_lengths

    def chunks(a):  # [B, T, ...] -> [n, B, K, ...], zero-padded
        a = jnp.pad(a, [(0, 0), (0, n * K - T)] + [(0, 0)] * (a.ndim - 2))
        return jnp.moveaxis(a.reshape((B, n, K) + a.shape[2:]), 1, 0)

    inputs = {"x": chunks(xs), "start": jnp.arange(n) * K}
    if perturbation is not None:
        inputs["eps"] = jax.tree.map(chunks, perturbation)

    @jax.checkpoint
    def body(carry, inp):
        length = jnp.clip(lengths - inp["start"], 0, K) if masked else None
        x = inp["x"] if table is None else Embedded(inp["x"], table)
        carry, ys, states = run_plan(
            cell, params, x, carry, plan, seq_lengths=length, reverse=False,
            perturbation=inp.get("eps"),
        )  # fmt: skip
        return carry, (ys, states)

    carry, outs = jax.lax.scan(body, carry, inputs)
    unchunk = lambda a: jnp.moveaxis(a, 0, 1).reshape((B, n * K) + a.shape[3:])[:, :T]
    ys, states = jax.tree.map(unchunk, outs)
    if reverse:
        ys = reverse_sequences(ys, seq_lengths)
        if states is not None:
            states = jax.tree.map(lambda s: reverse_sequences(s, seq_lengths), states)
    return carry, ys, states
