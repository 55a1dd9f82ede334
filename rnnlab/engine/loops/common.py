"""The one helper every loop uses: the input feed, masking, reverse within length, the initial
carry, the perturbation hook and the read-ahead scan.

Shape legend: ``T`` time, ``B`` batch, ``D`` input, ``G`` projected input, ``H`` hidden, ``O``
output. Loops run time-major; the layer (:func:`rnnlab.engine.run.unroll`) is batch-major.

Masking is a prefix per sequence: step ``t`` of sequence ``b`` is valid when
``t < seq_lengths[b]``; a masked step keeps the carry and outputs zero, so a padded sequence
gives what it gives alone. The perturbation hook adds ``eps_t`` to the carry after step ``t``
and reads ``y_t`` from the perturbed carry, so ``dL/d eps_t`` is the total ``dL/dh_t``
(through ``y_t`` and ``h_{t+1}``) in one backward pass: the gradient-flow probes use it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Carry = Any  # a pytree of [B, ...] arrays (LSTM: (c, h))


class Feed(NamedTuple):
    """What a loop reads per step, time-major (the plan's ``feed`` says which kind).

    Attributes:
      kind: ``"xp"`` (projected inputs ``[T, B, G]``, hoisted before the loop), ``"x"`` (raw
        inputs ``[T, B, D]``, projected inside the loop) or ``"ids"`` (token ids ``[T, B]``
        into the projected table ``[V, G]``).
      stream: the ``[T, B, ...]`` array of that kind.
      table: the projected embedding table ``[V, G]`` (``"ids"`` only), else None.
      valid: ``[T, B]`` bool, the mask (None: every step valid).
      eps: a carry-shaped pytree of ``[T, B, ...]``, the perturbation (None: none).
    """

    kind: str
    stream: jax.Array
    table: jax.Array | None = None
    valid: jax.Array | None = None
    eps: Carry | None = None

    @property
    def steps(self) -> tuple[int, int]:
        """``(T, B)``."""
        return tuple(jax.tree.leaves(self.stream)[0].shape[:2])


def time_major(a: jax.Array) -> jax.Array:
    """``[B, T, ...] <-> [T, B, ...]``."""
    return jnp.swapaxes(a, 0, 1)


def reverse_sequences(x: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
    """Reverse ``x [B, T, ...]`` along time, each sequence within its own length.

    Step ``t < L_b`` goes to ``L_b - 1 - t``; padding stays where it is. The map is an
    involution: applying it twice gives ``x`` back.
    """
    if seq_lengths is None:
        return jnp.flip(x, axis=1)
    T = x.shape[1]
    t = jnp.arange(T)[None, :]  # [1, T]
    L = seq_lengths[:, None]  # [B, 1]
    idx = jnp.where(t < L, L - 1 - t, t)  # [B, T]
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def valid_mask(seq_lengths: jax.Array | None, T: int) -> jax.Array | None:
    """``[T, B]`` bool: ``t < seq_lengths[b]`` (None without lengths)."""
    if seq_lengths is None:
        return None
    return time_major(jnp.arange(T)[None, :] < seq_lengths[:, None])


def initial_carry(cell, carry: Carry | None, B: int, D: int) -> Carry:
    """The given carry, or the cell's zeros for ``B`` sequences of ``D`` features."""
    return cell.initialize_carry(None, (B, D)) if carry is None else carry


def output_after_perturbation(cell, params, carry, xp_t, y, unperturbed):
    """``y_t`` read from the perturbed carry ``carry = unperturbed + eps_t``.

    Uses the cell's ``output(carry, xp_t)`` when it has one; otherwise ``y_t`` must be one of
    the new carry's leaves (elman, lstm, gru, jordan, ...: ``return (c, h), h``), found by
    identity at trace time, and the same leaf of the perturbed carry is returned.
    """
    if hasattr(cell, "output"):
        return cell.apply(params, carry, xp_t, method="output")
    for raw, new in zip(jax.tree.leaves(unperturbed), jax.tree.leaves(carry), strict=True):
        if raw is y:
            return new
    raise ValueError(
        f"{type(cell).__module__}.Cell: the perturbation hook needs y_t to be a leaf of the new "
        "carry, or an output(carry, xp_t) method that computes it from the carry"
    )


def finish_step(cell, params, old: Carry, new: Carry, y, xp_t, eps_t=None, valid_t=None):
    """After a step ``(old, xp_t) -> (new, y)``: the perturbation hook, then the mask.

    ``new + eps_t`` feeds ``y_t`` and ``h_{t+1}`` (``dL/d eps_t`` is the total ``dL/dh_t``); a
    masked step (``valid_t`` false) keeps ``old`` and outputs zero. Returns ``(carry, y)``.
    """
    if eps_t is not None:
        raw, new = new, jax.tree.map(jnp.add, new, eps_t)
        y = output_after_perturbation(cell, params, new, xp_t, y, raw)
    if valid_t is not None:
        keep = lambda n, o: jnp.where(valid_t.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
        new = jax.tree.map(keep, new, old)
        y = keep(y, jnp.zeros_like(y))
    return new, y


def last_valid(stack: jax.Array, first: jax.Array, valid, *, time_axis: int) -> jax.Array:
    """Each sequence's value at its last valid step: ``stack`` holds every step's value
    (``[T, B, ...]`` with ``time_axis=0`` or ``[B, T, ...]`` with 1); ``first [B, ...]`` is the
    value before step 0 (an empty sequence's answer); ``valid [T, B]`` the mask (None: step
    ``T - 1``). For loops that run every step unmasked and mask after (the native kernels)."""
    T = stack.shape[time_axis]
    if valid is None:
        return jax.lax.index_in_dim(stack, T - 1, time_axis, keepdims=False)
    B = stack.shape[1 - time_axis]
    lengths = jnp.sum(valid, axis=0)  # [B]
    last = jnp.clip(lengths - 1, 0, T - 1)
    at = stack[last, jnp.arange(B)] if time_axis == 0 else stack[jnp.arange(B), last]
    return jnp.where((lengths > 0).reshape((-1,) + (1,) * (at.ndim - 1)), at, first)


#: Backends on which :func:`scan_ahead` reads each step's inputs one step ahead. CPU: XLA fuses
#: the dynamic-slice (or gather) of a stacked input into the elementwise kernel that reads it,
#: and that kernel then runs several times slower (a GRU-512 step's gate math, B=32: ~20 us ->
#: ~140 us). GPU/TPU: not measured; a plain ``lax.scan`` there. The plan reads this table.
READ_AHEAD = {"cpu": True}


def scan_ahead(f, init, xs: dict, *, ahead=(), reverse=False, unroll=1, load=None):
    """``jax.lax.scan(f, init, xs)`` over a dict of streams, those named in ``ahead`` read one
    step early.

    Step ``t`` slices the ``ahead`` streams at ``t + 1`` (``t - 1`` in reverse) and carries the
    slices to the next step, so each is its own small copy kernel and the gate math in ``f``
    reads plain arrays (the plan's ``read_ahead``; an empty ``ahead`` is ``lax.scan``).
    ``load(slices)`` (optional) turns a dict of slices into what ``f`` reads, e.g. gathers rows
    by token id. It sees the ``ahead`` streams one step early and the others in their step, so
    it must handle any subset of the streams. Same results as ``lax.scan``.
    """
    load = load or (lambda x: x)
    early = {k: v for k, v in xs.items() if k in ahead}
    T = jax.tree.leaves(xs)[0].shape[0]
    if not early or T < 2:
        return jax.lax.scan(lambda c, x: f(c, load(x)), init, xs, reverse=reverse, unroll=unroll)
    at = lambda i: load(jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, 0, False), early))

    def body(state, inp):
        carry, x_t = state
        t = inp.pop("_t")
        next_t = jnp.clip(t - 1 if reverse else t + 1, 0, T - 1)  # the last step re-reads
        carry, y = f(carry, {**load(inp), **x_t})
        return (carry, at(next_t)), y

    rest = {k: v for k, v in xs.items() if k not in early} | {"_t": jnp.arange(T)}
    first = at(T - 1 if reverse else 0)
    (carry, _), ys = jax.lax.scan(body, (init, first), rest, reverse=reverse, unroll=unroll)
    return carry, ys
