"""What a layer reads: batch-major inputs ``[B, T, D]`` or token ids (:class:`Embedded`), checked.

Shape legend: ``B`` batch, ``T`` time, ``D`` input features, ``V`` vocabulary, ``G`` projected
features. Every check runs in Python on shapes and dtypes (nothing is traced or compiled) and
names what was expected and what was given.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class Embedded(NamedTuple):
    """Inputs given as token ids into an embedding table: ``x[b, t] = table[ids[b, t]]``.

    Pass it to :func:`rnnlab.unroll` or :class:`rnnlab.RNN` in place of ``x [B, T, D]``
    (:class:`rnnlab.models.SequenceModel` does, for token inputs). The projection is row-wise, so
    ``project(table)[ids] == project(table[ids])``: when the vocabulary is smaller than the
    number of tokens (``V < T*B``), the layer projects the ``V`` rows of the table once
    (``[V, D] x [D, G]``) and gathers a projected row per token (the plan's "token" or
    "gathered" feed) instead of projecting ``T*B`` embedded rows. Otherwise the rows are embedded
    first and projected as usual ("embedded" feed).
    """

    ids: jax.Array  # [B, T] integer token ids in [0, V) (others are clipped to the nearest row)
    table: jax.Array  # [V, D] floating embedding table


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def dtype_of(x):
    """The dtype of an array, tracer, or (nested) list, without tracing anything."""
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype


def as_inputs(xs):
    """``xs`` as jax arrays (lists and numpy arrays are fine too), :class:`Embedded` kept."""
    return Embedded(*map(jnp.asarray, xs)) if isinstance(xs, Embedded) else jnp.asarray(xs)


def input_shape(xs) -> tuple[int, int, int]:
    """``(B, T, D)`` of ``xs [B, T, D]`` or of :class:`Embedded` ids ``[B, T]`` into ``[V, D]``."""
    if isinstance(xs, Embedded):
        return (*np.shape(xs.ids), np.shape(xs.table)[-1])
    return np.shape(xs)


def input_dtype(xs):
    """The floating dtype the layer computes its inputs in (the table's, for token ids)."""
    return dtype_of(xs.table if isinstance(xs, Embedded) else xs)


def take_rows(table, ids: jax.Array):
    """``table[ids]`` along axis 0, per leaf; ids outside ``[0, V)`` are clipped to the nearest
    row (the :class:`Embedded` contract). ``mode="clip"``, not jnp.take's NaN fill: the fill's
    select made the gate kernel XLA fused it into 100 us a step slower."""
    return jax.tree.map(lambda t: jnp.take(t, ids, axis=0, mode="clip"), table)


def check_inputs(xs, seq_lengths=None, *, where: str = "rnn") -> None:
    """Validate ``xs [B, T, D]`` (or :class:`Embedded`) and ``seq_lengths [B]`` in Python."""
    if isinstance(xs, Embedded):
        ids, table = np.shape(xs.ids), np.shape(xs.table)
        if len(ids) != 2 or not jnp.issubdtype(dtype_of(xs.ids), jnp.integer):
            raise ValueError(
                f"{where}: expected Embedded ids of integers with shape [B, T], "
                f"got {dtype_of(xs.ids)} {ids}"
            )
        if len(table) != 2 or not jnp.issubdtype(dtype_of(xs.table), jnp.floating):
            raise ValueError(
                f"{where}: expected an Embedded table of floats with shape [V, D], "
                f"got {dtype_of(xs.table)} {table}"
            )
        xs = jax.ShapeDtypeStruct((*ids, table[1]), dtype_of(xs.table))
    shape = np.shape(xs)
    if len(shape) != 3:
        raise ValueError(f"{where}: expected inputs of rank 3 [B, T, D], got shape {shape}")
    dtype = dtype_of(xs)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{where}: expected floating-point inputs (float32, bfloat16, ...), got {dtype}; "
            "embed integer tokens first (e.g. nn.Embed)"
        )
    if seq_lengths is None:
        return
    B, T = shape[:2]
    lshape = np.shape(seq_lengths)
    if lshape != (B,):
        raise ValueError(f"{where}: expected seq_lengths of shape ({B},) [B], got {lshape}")
    if not jnp.issubdtype(dtype_of(seq_lengths), jnp.integer):
        raise ValueError(f"{where}: expected integer seq_lengths, got {dtype_of(seq_lengths)}")
    if _is_concrete(seq_lengths):
        lengths = np.asarray(seq_lengths)
        bad = (lengths < 0) | (lengths > T)
        if bad.any():
            raise ValueError(
                f"{where}: seq_lengths must lie in [0, T={T}], got {lengths[bad].tolist()} "
                f"at batch index {np.flatnonzero(bad).tolist()}"
            )


def check_params(cell: nn.Module, params, feature_size: int, *, where: str = "rnn") -> None:
    """Check that ``params`` accept ``feature_size`` input features (abstractly: no compile)."""
    probe = jax.ShapeDtypeStruct((1, feature_size), jnp.float32)
    try:
        jax.eval_shape(lambda p, x: cell.apply(p, x, method="project"), params, probe)
    except Exception as err:  # Flax raises ScopeParamShapeError or a dot_general TypeError.
        raise ValueError(
            f"{where}: expected inputs with {_made_for(cell, params, feature_size)} features "
            f"(what the params were made for), got {feature_size} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None


def _made_for(cell: nn.Module, params, feature_size: int) -> str:
    """The input width ``params`` were made for: the size, in the given params, of the axis that
    has ``feature_size`` in freshly made ones (abstract shapes only); ``"?"`` if not found."""
    x = jax.ShapeDtypeStruct((1, feature_size), jnp.float32)
    fresh = jax.eval_shape(cell.init, jax.random.key(0), cell.initialize_carry(None, (1, 1)), x)
    for want, have in zip(jax.tree.leaves(fresh), jax.tree.leaves(params)):
        if want.ndim == have.ndim and want.shape != have.shape:
            for w, h in zip(want.shape, have.shape):
                if w == feature_size != h:
                    return str(h)
    return "?"
