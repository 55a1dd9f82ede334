"""THE engine: the one ``jax.lax.scan`` over time that every model, probe and sampler uses.

Shape legend: ``B`` batch, ``T`` time, ``D`` input features, ``G`` projected features (e.g. 4H
for an LSTM), ``H`` hidden, ``O`` cell output. The public API is batch-major (``[B, T, D]``);
the scan runs time-major internally.

Two layers of API:

* :func:`unroll` -- one layer, one direction, a pure function of ``(cell, params, xs)``.
  It hoists the input projection (one ``[B*T, D] x [D, G]`` matmul before the scan), then scans
  ``cell.step`` over time. On the fused path, narrow inputs (``IN_LOOP_MAX_D``) are projected
  inside the loop instead; token inputs (:class:`Embedded`) project the embedding table once and
  gather a row per token. On CPU each step's gate inputs are read one step early
  (:func:`rnnlab.fused.scan_ahead`). Options: ``seq_lengths`` masking (each sequence's carry is frozen after
  its end and its padded outputs are zero, so the result equals running it alone), ``reverse``
  (each sequence reversed *within its own length*), an additive ``perturbation`` of the carry
  after every step (``dL/d eps_t = dL/dh_t`` for all t in one backward pass: the gradient-flow
  probes use it), ``return_states``, ``remat`` (recompute each step's internals in the backward
  pass: memory O(T * carry) instead of O(T * activations)), and ``unroll``.
* :class:`RNN` -- a Flax Linen layer stacking :func:`unroll` into ``num_layers`` layers, optionally
  bidirectional, with dropout and optional residual connections between layers, and an initial
  carry that is zeros, learned, or given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells as cell_registry
from rnnlab import fused

Carry = Any  # a pytree of [B, ...] arrays (LSTM: (c, h))


class Embedded(NamedTuple):
    """Inputs given as token ids into an embedding table: ``x[b, t] = table[ids[b, t]]``.

    Pass it to :func:`unroll` or :class:`RNN` in place of ``x [B, T, D]``
    (:class:`rnnlab.models.SequenceModel` does, for token inputs). The projection is row-wise, so
    ``project(table)[ids] == project(table[ids])``: when the vocabulary is smaller than the
    number of tokens (``V < T*B``), the layer projects the ``V`` rows of the table once
    (``[V, D] x [D, G]``) and gathers a projected row per token, instead of projecting ``T*B``
    embedded rows. The gradient is a scatter-add of the gate cotangents into ``[V, G]`` (and one
    ``[V, G]``-sized vjp back to the table and ``W_x``). For the char-LM (V=65, T*B=3200) that
    drops the ``[T*B, D] x [D, G]`` projection and both of its gradient matmuls. Otherwise the
    rows are embedded first and projected as usual.
    """

    ids: jax.Array  # [B, T] integer token ids in [0, V) (others are clipped to the nearest row)
    table: jax.Array  # [V, D] floating embedding table


class RNNOutput(NamedTuple):
    """What :class:`RNN` returns.

    Attributes:
      outputs: ``[B, T, O]`` (``[B, T, 2*O]`` when bidirectional: forward then backward);
        zero at padded steps.
      final_carry: one entry per layer: the carry after each sequence's last valid step, or a
        ``(forward, backward)`` pair when bidirectional.
      states: ``None`` unless asked for; else one entry per layer: the carry after every step,
        each leaf ``[B, T, ...]`` (a ``(forward, backward)`` pair when bidirectional).
    """

    outputs: jax.Array
    final_carry: list
    states: list | None


# ----------------------------------------------------------------------------------- checks


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _dtype(x):
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


def check_inputs(xs, seq_lengths=None, *, where: str = "rnn") -> None:
    """Validate ``xs [B, T, D]`` (or :class:`Embedded`) and ``seq_lengths [B]`` in Python."""
    if isinstance(xs, Embedded):
        ids, table = np.shape(xs.ids), np.shape(xs.table)
        if len(ids) != 2 or not jnp.issubdtype(_dtype(xs.ids), jnp.integer):
            raise ValueError(
                f"{where}: expected Embedded ids of integers with shape [B, T], "
                f"got {_dtype(xs.ids)} {ids}"
            )
        if len(table) != 2 or not jnp.issubdtype(_dtype(xs.table), jnp.floating):
            raise ValueError(
                f"{where}: expected an Embedded table of floats with shape [V, D], "
                f"got {_dtype(xs.table)} {table}"
            )
        xs = jax.ShapeDtypeStruct((*ids, table[1]), _dtype(xs.table))
    shape = np.shape(xs)
    if len(shape) != 3:
        raise ValueError(f"{where}: expected inputs of rank 3 [B, T, D], got shape {shape}")
    dtype = _dtype(xs)
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
    if not jnp.issubdtype(_dtype(seq_lengths), jnp.integer):
        raise ValueError(f"{where}: expected integer seq_lengths, got {_dtype(seq_lengths)}")
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


# ------------------------------------------------------------------------------ one layer


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


BACKWARDS = ("auto", "autodiff", "fused")
# backward="auto" takes the fused backward from this hidden size on. Measured on a 2-core CPU
# (BENCHMARKS.md, train step, B=32, T=100, D=64): fused/autodiff 0.71-0.83x at H=512-1024, 0.72x
# (LSTM) and 0.85x (GRU) at H=128. At H=64 (python benchmarks/ab.py --set 'FUSED_MIN_HIDDEN=64'
# --cell lstm --hidden 64): LSTM train 9.2 -> 8.1 ms, GRU 7.5 -> 7.6 (forward and probe faster
# for both); at H=32 the GRU's train step was 1.13x slower fused, so the bound is 64.
FUSED_MIN_HIDDEN = 64


#: With the fused backward, an input no wider than this (D <= IN_LOOP_MAX_D[backend], D < G) is
#: projected inside the loop instead of hoisted. Hoisting makes separate projection and bias passes
#: over a [T, B, G] buffer whose slices each step then reads back cold; in the loop, one small
#: [B, D] x [D, G] matmul per step makes xp_t hot (the training forward stacks it for the
#: backward). Measured on a 2-core CPU, train step B=32, T=100, in loop vs hoisted
#: (python benchmarks/ab.py --set 'IN_LOOP_MAX_D={}' ..., BENCHMARKS.md): GRU-256 D=128 33.5 vs
#: 43.6 ms, LSTM-512 D=64 96.2 vs 97.2 ms (forward 28.7 vs 36.7); at D=256 (LSTM-512) about even
#: (110.5 vs 114.4 ms, probe 69.1 vs 64.6), so the bound stays at 128.
#: Since the read-ahead scan (fused.scan_ahead) the hoisted slices no longer slow the gate math,
#: and the two are close in the train step: in loop vs hoisted GRU-256 D=128 41.6 vs 39.8 ms,
#: LSTM-512 D=64 107.3 vs 110.4; the forward still favours the loop (12.0 vs 14.1, 32.8 vs 39.4;
#: python benchmarks/ab.py --set 'IN_LOOP_MAX_D={}' --both 'FOLD_EMBEDDING=False' ...).
#: GPU/TPU: not measured; the usual hoisted projection (as cuDNN does).
IN_LOOP_MAX_D = {"cpu": 128, "gpu": 0, "tpu": 0}


#: Project an :class:`Embedded` table's rows instead of the embedded tokens when V < T*B (False:
#: embed, then project the T*B rows; the baseline of the A/B in BENCHMARKS.md).
FOLD_EMBEDDING = True


def _fused_backward(backward: str, cell: nn.Module) -> bool:
    """Whether :func:`unroll` uses :mod:`rnnlab.fused` (``backward`` validated here)."""
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if backward == "fused" and not fused.supports(cell):
        raise ValueError(
            f"backward='fused' needs a dense-recurrence cell ({', '.join(fused.REQUIRED)}); "
            f"{type(cell).__module__}.Cell has none: use 'auto' or 'autodiff'"
        )
    if backward == "auto":
        return fused.supports(cell) and getattr(cell, "hidden_size", 0) >= FUSED_MIN_HIDDEN
    return backward == "fused"


# ------------------------------------------------------- the parallel path for linear cells

SCANS = ("auto", "sequential", "associative")
#: ``scan="auto"`` picks the associative scan for linear cells from this length T on, per
#: backend. CPU: never -- measured on a 2-core CPU (minGRU and LRU, H=64, B=16, forward +
#: backward), the associative scan was 0.7-0.8x the speed of the sequential one at T = 1024
#: and 4096 and no faster at 64-256 (same O(T) work, but ~2 log T passes over memory).
#: GPU/TPU: not measured here; a log-depth scan is the usual choice there for long T.
ASSOCIATIVE_MIN_T = {"cpu": 1 << 62, "gpu": 64, "tpu": 64}


def is_linear(cell: nn.Module) -> bool:
    """Whether ``cell`` has the linear form ``h_t = a_t * h_{t-1} + b_t`` (``linear_coeffs``)."""
    return hasattr(cell, "linear_coeffs") and hasattr(cell, "readout")


def choose_scan(cell: nn.Module, T: int, scan: str = "auto") -> str:
    """``"sequential"`` or ``"associative"`` for ``cell`` over ``T`` steps (see :func:`unroll`)."""
    if scan not in SCANS:
        raise ValueError(f"scan must be one of {SCANS}, got {scan!r}")
    if scan == "associative" and not is_linear(cell):
        raise ValueError(
            "scan='associative' needs a cell linear in its state (with linear_coeffs and "
            f"readout: mingru, minlstm, lru); {type(cell).__module__}.Cell is not"
        )
    if scan != "auto":
        return scan
    threshold = ASSOCIATIVE_MIN_T.get(jax.default_backend(), ASSOCIATIVE_MIN_T["gpu"])
    return "associative" if is_linear(cell) and T >= threshold else "sequential"


def _compose(left, right):
    """``(a1, b1) o (a2, b2) = (a2 a1, a2 b1 + b2)``: step 1 then step 2 of ``h = a h + b``."""
    (a1, b1), (a2, b2) = left, right
    return a2 * a1, a2 * b1 + b2


def linear_scan(cell, params, carry, inputs: dict, return_states: bool = False):
    """The associative-scan twin of the ``lax.scan`` in :func:`unroll` (time-major ``inputs``).

    ``h_t = a_t h_{t-1} + b_t`` with ``(a, b) = cell.linear_coeffs(xp)`` ``[T, B, H]``; the
    initial carry folds into ``b_0 += a_0 h_0``; a perturbation adds to ``b_t`` (so ``y_t``
    and later states see it); a masked step
    (``valid`` false) gets ``a = 1, b = 0`` so the state is frozen, and a zero output. Cells whose
    carry is not the linear state itself (LRU: complex state, real-packed carry) convert with
    ``unpack_carry`` / ``pack_carry``. Returns ``(final_carry, (ys [T, B, O], states | None))``.
    """
    unpack = getattr(cell, "unpack_carry", lambda c: c)
    pack = getattr(cell, "pack_carry", lambda h: h)
    xp = inputs["xp"]  # [T, B, G]
    a, b_step = cell.apply(params, xp, method="linear_coeffs")  # [T, B, H] each
    h0 = unpack(carry).astype(b_step.dtype)
    b = b_step
    if "eps" in inputs:
        b = b + unpack(inputs["eps"]).astype(b.dtype)
    if "valid" in inputs:
        valid = inputs["valid"][..., None]  # [T, B, 1]
        a = jnp.where(valid, a, jnp.ones_like(a))
        b = jnp.where(valid, b, jnp.zeros_like(b))
    b = b.at[0].add(a[0] * h0)
    _, hs = jax.lax.associative_scan(_compose, (a, b), axis=0)  # hs[t] = h_t, [T, B, H]
    # y_t reads the perturbed state h_t (= a_t h_{t-1} + b_t + eps_t), as the sequential scan does.
    ys = cell.apply(params, hs, xp, method="readout")  # [T, B, O]
    if "valid" in inputs:
        ys = jnp.where(valid, ys, jnp.zeros_like(ys))
    like = lambda h: jax.tree.map(lambda v, c: v.astype(c.dtype), pack(h), carry)
    return like(hs[-1]), (ys, like(hs) if return_states else None)


def _unroll_chunked(cell, params, xs, carry, *, seq_lengths, reverse, perturbation, **kw):
    """``remat="chunked"``: :func:`unroll` over chunks of ``K ~ sqrt(T)`` steps, each chunk
    (projection + scan) under ``jax.checkpoint``. ``K`` is the divisor of ``T`` nearest
    ``sqrt(T)`` when one lies within a factor 2 of it, so no padded step is computed (T = 2000:
    40-step chunks); otherwise ``K = ceil(sqrt(T))`` and ``T`` is padded to ``n*K`` with masked
    steps."""
    B, T, D = input_shape(xs)
    root = np.sqrt(T)
    divisors = [k for k in range(int(np.ceil(root / 2)), int(2 * root) + 1) if T % k == 0]
    K = min(divisors, key=lambda k: abs(k - root)) if divisors else int(np.ceil(root))
    n = -(-T // K)
    if carry is None:
        carry = cell.initialize_carry(None, (B, D))
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
        carry, ys, states = unroll(
            cell, params, x, carry, seq_lengths=length, perturbation=inp.get("eps"), **kw
        )
        return carry, (ys, states)

    carry, outs = jax.lax.scan(body, carry, inputs)
    unchunk = lambda a: jnp.moveaxis(a, 0, 1).reshape((B, n * K) + a.shape[3:])[:, :T]
    ys, states = jax.tree.map(unchunk, outs)
    if reverse:
        ys = reverse_sequences(ys, seq_lengths)
        if states is not None:
            states = jax.tree.map(lambda s: reverse_sequences(s, seq_lengths), states)
    return carry, ys, states


def unroll(
    cell: nn.Module,
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
) -> tuple[Carry, jax.Array, Carry | None]:
    """Run one cell over a batch of sequences.

    Args:
      cell: an unbound cell module (the contract in :mod:`rnnlab.cells`).
      params: the cell's variables, ``{"params": ...}``.
      xs: ``[B, T, D]`` inputs, or :class:`Embedded` token ids ``[B, T]`` into a table ``[V, D]``.
      carry: initial carry (pytree of ``[B, ...]``); zeros when ``None``.
      seq_lengths: ``[B]`` int, valid length of each (right-padded) sequence.
      reverse: run from each sequence's last valid step to its first.
      perturbation: carry-shaped pytree with leaves ``[B, T, ...]`` added to the carry after step
        ``t`` (in original time order). Pass zeros and differentiate to get ``dL/dh_t``.
      return_states: also return the carry after every step (leaves ``[B, T, ...]``).
      remat: ``True``: rematerialize each step in the backward pass (``jax.checkpoint`` on the
        step); ``"chunked"``: checkpoint chunks of ~sqrt(T) steps *including the input
        projection*, so only the inputs and ~sqrt(T) carries are kept (the most memory saved).
      unroll: forwarded to ``jax.lax.scan``.
      backward: ``"autodiff"`` (differentiate the scan: the reference), ``"fused"`` (the
        custom VJP of :mod:`rnnlab.fused`: weight gradients as one matmul over all T*B rows;
        dense-recurrence cells only), or ``"auto"`` (fused when the cell supports it and
        ``hidden_size >= FUSED_MIN_HIDDEN``).
        Forward-mode autodiff (``jax.jvp``) needs ``"autodiff"``.
      scan: ``"sequential"`` (``jax.lax.scan`` over ``cell.step``), ``"associative"``
        (``jax.lax.associative_scan`` over the linear form, for cells with ``linear_coeffs``:
        same results to float rounding, O(log T) depth) or ``"auto"`` (associative for linear
        cells when ``T >= ASSOCIATIVE_MIN_T[backend]``). ``remat``, ``unroll`` and
        ``backward`` apply to the sequential scan only.

    Returns:
      ``(final_carry, ys [B, T, O], states or None)``, all in original time order.
    """
    check_inputs(xs, seq_lengths, where="unroll")
    xs = as_inputs(xs)
    seq_lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
    B, T, D = input_shape(xs)
    if isinstance(xs, Embedded) and (xs.table.shape[0] >= T * B or not FOLD_EMBEDDING):
        xs = fused.take_rows(xs.table, xs.ids)  # embed, then project the rows as usual
    if remat == "chunked":
        return _unroll_chunked(
            cell, params, xs, carry, seq_lengths=seq_lengths, reverse=reverse,
            perturbation=perturbation, return_states=return_states,
            unroll=unroll, backward=backward, scan=scan,
        )  # fmt: skip
    if carry is None:
        carry = cell.initialize_carry(None, (B, D))
    tokens = isinstance(xs, Embedded)
    if reverse:  # the projection acts per step, so reversing its input is the same
        rev = lambda a: reverse_sequences(a, seq_lengths)
        xs = Embedded(rev(xs.ids), xs.table) if tokens else rev(xs)
        if perturbation is not None:
            perturbation = jax.tree.map(lambda e: reverse_sequences(e, seq_lengths), perturbation)

    time_major = lambda a: jnp.swapaxes(a, 0, 1)
    # One matmul for all t (hoisting), time-major. Transposes of big arrays are slow on XLA:CPU
    # (~10 ms for [32, 100, 512] float32), so transpose the narrower of x [.., D] and xp [.., G].
    project = lambda p, x: cell.apply(p, x, method="project")
    probe = xs.table[:1] if tokens else xs[:, :1]
    widths = [a.shape[-1] for a in jax.tree.leaves(jax.eval_shape(project, params, probe))]
    path = choose_scan(cell, T, scan)
    fast = path == "sequential" and _fused_backward(backward, cell)  # fused.scan, below
    in_loop = IN_LOOP_MAX_D.get(jax.default_backend(), 0)
    if tokens:  # project the table's V rows once, then gather a projected row per token
        table = project(params, xs.table)  # [V, G]
        if fast and in_loop:  # fused.scan gathers xp_t = table[ids_t] inside its loop
            inputs = {"ids": time_major(xs.ids), "table": table}
        else:
            inputs = {"xp": fused.take_rows(table, time_major(xs.ids))}  # [T, B, G]
    elif fast and D <= in_loop and D < min(widths):
        inputs = {"x": time_major(xs)}  # fused.scan projects inside its loop (see fused.scan)
    elif D <= min(widths):
        # over [T*B, D] rows, so XLA does not transpose the [T, B, G] cotangent for dW_x
        # (LSTM-512 D=512 train step 176.4 -> 171.4 ms, GRU-512 D=256 118.9 -> 113.9, one A/B)
        rows = project(params, time_major(xs).reshape(T * B, D))
        inputs = {"xp": jax.tree.map(lambda a: a.reshape(T, B, a.shape[-1]), rows)}
    else:
        inputs = {"xp": jax.tree.map(time_major, project(params, xs))}  # [T, B, G]
    if seq_lengths is not None:
        inputs["valid"] = time_major(jnp.arange(T)[None, :] < seq_lengths[:, None])  # [T, B]
    if perturbation is not None:
        inputs["eps"] = jax.tree.map(time_major, perturbation)

    def step(carry, inp):
        new_carry, y = cell.apply(params, carry, inp["xp"], method="step")
        if "eps" in inp:  # h_t + eps_t feeds y_t and h_{t+1}: dL/d eps_t is the total dL/dh_t
            raw, new_carry = new_carry, jax.tree.map(jnp.add, new_carry, inp["eps"])
            y = cell_registry.output_after_perturbation(cell, params, new_carry, inp["xp"], y, raw)
        if "valid" in inp:
            keep = lambda new, old: jnp.where(
                inp["valid"].reshape((-1,) + (1,) * (new.ndim - 1)), new, old
            )
            new_carry = jax.tree.map(keep, new_carry, carry)
            y = keep(y, jnp.zeros_like(y))
        return new_carry, (y, new_carry if return_states else None)

    if remat:
        step = jax.checkpoint(step)
    if path == "associative":  # linear cells: h_t = a_t h_{t-1} + b_t
        carry, (ys, states) = linear_scan(cell, params, carry, inputs, return_states)
    elif fast:  # ys batch-major already (the native kernels write it so: no transpose)
        carry, (ys, states) = fused.scan(
            cell, params, carry, inputs, return_states=return_states, remat=remat,
            unroll=unroll, batch_major=True,
        )  # fmt: skip
    else:
        ahead = ("xp",) if fused.reads_ahead(cell) else ()  # see fused.scan_ahead
        carry, (ys, states) = fused.scan_ahead(step, carry, inputs, ahead=ahead, unroll=unroll)

    if not fast:
        ys = time_major(ys)  # [B, T, O]
    if states is not None:
        states = jax.tree.map(time_major, states)
    if reverse:
        ys = reverse_sequences(ys, seq_lengths)
        if states is not None:
            states = jax.tree.map(lambda s: reverse_sequences(s, seq_lengths), states)
    return carry, ys, states


# ------------------------------------------------------------------------------ the layer


def make_cell(cell: str | type, hidden_size: int, options: Mapping | None = None, **common):
    """Instantiate an unbound cell from a registry name (or a ``Cell`` class)."""
    cls = cell_registry.get(cell) if isinstance(cell, str) else cell
    options = dict(options or {})
    try:
        return cls(hidden_size=hidden_size, **options, **common, parent=None)
    except TypeError as err:
        fields = [f for f in cls.__dataclass_fields__ if f not in ("parent", "name")]
        raise ValueError(
            f"bad option for cell {getattr(cls, '__module__', cls)}: {err}. "
            f"Valid options: {', '.join(fields)}"
        ) from None


class RNN(nn.Module):
    """A stack of recurrent layers over batch-major sequences, built on :func:`unroll`.

    ``RNN("lstm", 128, num_layers=2, bidirectional=True)(x [B, T, D], seq_lengths=[B])``
    returns an :class:`RNNOutput` with ``outputs [B, T, 256]``.

    Params: ``params["layer_{l}"] = {"fwd": cell params, "bwd": ...}``; with
    ``initial_carry="learned"`` also ``params["carry0_{l}"]`` (one carry per direction, without
    the batch axis, broadcast over the batch).
    """

    cell: str | type  # registry name (rnnlab.cells.names()) or a Cell class
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between layers (not after the last), as in PyTorch
    residual: bool = False  # y_l = f_l(x_l) + x_l for layers whose input and output widths match
    initial_carry: str = "zeros"  # zeros | learned (a given carry is passed to __call__)
    remat: bool | str = False  # True (per step) | "chunked" (sqrt(T) chunks; see unroll)
    unroll: int = 1
    backward: str = "auto"  # auto | autodiff | fused (see unroll)
    scan: str = "auto"  # auto | sequential | associative (linear cells; see unroll)
    cell_options: Mapping | None = None  # the cell's own fields, e.g. {"forget_bias": 1.0}
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.initial_carry not in ("zeros", "learned"):
            raise ValueError(
                f"initial_carry must be 'zeros' or 'learned', got {self.initial_carry!r}"
            )
        self.make_cell()  # unknown cell names and options fail here, at construction
        super().__post_init__()

    def make_cell(self) -> nn.Module:
        """The unbound cell every layer and direction uses (each with its own params)."""
        return make_cell(
            self.cell,
            self.hidden_size,
            self.cell_options,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @property
    def directions(self) -> tuple[str, ...]:
        return ("fwd", "bwd") if self.bidirectional else ("fwd",)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        seq_lengths: jax.Array | None = None,
        initial_carry: Sequence | None = None,
        *,
        deterministic: bool = True,
        perturbation: Sequence | None = None,
        return_states: bool = False,
    ) -> RNNOutput:
        """Run the stack.

        Args:
          x: ``[B, T, D]``, or :class:`Embedded` token ids into an embedding table (the first
            layer then projects the table's rows, not the embedded tokens).
          seq_lengths: ``[B]`` valid lengths of right-padded sequences.
          initial_carry: one carry per layer (a ``(fwd, bwd)`` pair when bidirectional);
            overrides zeros/learned.
          deterministic: disable dropout (needs a ``"dropout"`` rng when False).
          perturbation: one carry-shaped pytree of ``[B, T, ...]`` leaves per layer (a pair
            when bidirectional), added to the carry after every step (see :func:`unroll`).
          return_states: also return every layer's carry after every step.
        """
        check_inputs(x, seq_lengths, where=f"RNN({self.cell!r})")
        x = as_inputs(x)
        seq_lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
        for name, given in (("initial_carry", initial_carry), ("perturbation", perturbation)):
            if given is not None and len(given) != self.num_layers:
                raise ValueError(
                    f"{name} must hold one entry per layer ({self.num_layers}), got {len(given)}"
                )
        cell = self.make_cell()
        B = input_shape(x)[0]
        finals, all_states = [], []
        for layer in range(self.num_layers):
            D = input_shape(x)[-1]
            dtype = (x.table if isinstance(x, Embedded) else x).dtype
            init_fn = lambda rng, D=D, dtype=dtype: {
                d: cell.init(k, cell.initialize_carry(None, (1, D)), jnp.zeros((1, D), dtype))
                for d, k in zip(self.directions, jax.random.split(rng, len(self.directions)))
            }
            if self.has_variable("params", f"layer_{layer}"):  # apply: check before Flax does
                given = self.get_variable("params", f"layer_{layer}")["fwd"]
                check_params(cell, given, D, where=f"RNN layer {layer}")
            layer_params = self.param(f"layer_{layer}", init_fn)

            carries = self._initial_carries(cell, layer, B, D, initial_carry)
            outs, layer_finals, layer_states = [], [], []
            for i, d in enumerate(self.directions):
                eps = None
                if perturbation is not None:
                    eps = perturbation[layer][i] if self.bidirectional else perturbation[layer]
                final, ys, states = unroll(
                    cell,
                    layer_params[d],
                    x,
                    carries[i],
                    seq_lengths=seq_lengths,
                    reverse=(d == "bwd"),
                    perturbation=eps,
                    return_states=return_states,
                    remat=self.remat,
                    unroll=self.unroll,
                    backward=self.backward,
                    scan=self.scan,
                )
                outs.append(ys)
                layer_finals.append(final)
                layer_states.append(states)
            y = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
            pick = lambda items: tuple(items) if self.bidirectional else items[0]
            finals.append(pick(layer_finals))
            all_states.append(pick(layer_states))
            if self.residual and layer > 0 and y.shape[-1] == x.shape[-1]:
                y = y + x
            if layer < self.num_layers - 1 and self.dropout > 0:
                y = nn.Dropout(self.dropout)(y, deterministic=deterministic)
            x = y
        return RNNOutput(x, finals, all_states if return_states else None)

    def _initial_carries(self, cell, layer, B, D, given) -> list:
        if given is not None:
            return list(given[layer]) if self.bidirectional else [given[layer]]
        zeros = cell.initialize_carry(None, (B, D))
        if self.initial_carry == "zeros":
            return [zeros for _ in self.directions]
        learned = self.param(
            f"carry0_{layer}",
            lambda rng: {
                d: jax.tree.map(lambda z: jnp.zeros(z.shape[1:], z.dtype), zeros)
                for d in self.directions
            },
        )
        return [
            jax.tree.map(lambda c, z: jnp.broadcast_to(c, z.shape), learned[d], zeros)
            for d in self.directions
        ]
