"""The fast backward pass for dense-recurrence cells: a ``jax.custom_vjp`` over the time scan.

Shape legend: ``T`` time, ``B`` batch, ``H`` hidden, ``G`` gate width (4H LSTM, 3H GRU, H Elman).

Autodiff of ``lax.scan`` computes, at every step of the backward scan, the weight gradient
``dW_h += h_{t-1}^T dhr_t`` -- a ``[H, B] x [B, G]`` matmul with a tiny inner dimension ``B``,
``T`` times. Here the backward scan produces only the per-step gradients of the recurrent
pre-activation ``hr_t = h_{t-1} @ W_h + b_h`` (and of the projected inputs ``xp_t``), and the
weight gradient is ONE matmul over all ``T*B`` rows after the scan:

    dW_h = sum_t h_{t-1}^T dhr_t = H_prev^T [H, T*B] @ dHR [T*B, G],    db_h = sum_{t,b} dhr_t

The input-projection gradients (``dW_x``, ``db``) follow from ``dxp``, also outside the scan: by
the ordinary autodiff of the hoisted projection, or, when the engine projects narrow inputs
inside the loop (``inputs["x"]``, see :func:`scan`), by one vjp of the projection over all
``[T*B, D]`` rows here.

A cell opts in with three methods (see ``rnnlab/cells/lstm.py``), such that
``step(carry, xp_t) == gates(carry, xp_t, recurrent_state(carry) @ W_h + b_h)``:

* ``recurrent_kernel() -> (W_h [H, G], b_h [G] or None)`` -- the only trainable parameters the
  recurrence reads (``gates`` must read none);
* ``recurrent_state(carry) -> h [..., H]`` -- the part of the carry that multiplies ``W_h``;
* ``gates(carry, xp_t, hr_t) -> (carry, y_t)`` -- the elementwise rest of the step.

A cell may also define a ``dense_recurrence`` property that is False for configurations the
methods do not cover (GRU with ``convention="cho"``), and ``read_ahead = False`` when its gate
math gains nothing from :func:`scan_ahead` (LSTM: XLA already gives its inputs their own kernels,
and the read-ahead adds a copy per step). :func:`supports` tells; the engine
(:func:`rnnlab.unroll`) dispatches here with ``backward="auto"`` (or ``"fused"``) and keeps the
plain autodiff scan (``backward="autodiff"``) as the reference the tests compare against.

A cell's ``matmul_dtype`` (e.g. bfloat16: see :func:`rnnlab.cells.recurrent_matmul`) sets the
operands of the two per-step matmuls, ``h_{t-1} W_h`` and ``dhr_t W_h^T``; they accumulate, and
the gates and carries stay, in the computation dtype. The weight gradient keeps the computation
dtype: as one large matmul it ran no faster with bf16 operands on the CPU measured
(``python benchmarks/matmul_shapes.py``), and it sums ``T*B`` products.

Masking (``valid``), additive carry perturbation (``eps``, for ``dL/dh_t`` probes) and
``return_states`` live inside the differentiated local step, so they are exact. ``remat=True``
saves only the carries in the forward pass and recomputes ``hr_t`` inside the backward scan (one
extra ``[B, H] x [H, G]`` matmul per step). Forward-mode autodiff (``jax.jvp``, ``jacfwd``)
does not pass through a ``custom_vjp``: use ``backward="autodiff"`` for it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab import cells, native

REQUIRED = ("recurrent_kernel", "recurrent_state", "gates")


def supports(cell: nn.Module) -> bool:
    """Whether ``cell`` has the dense-recurrence methods (and says they apply)."""
    if not all(callable(getattr(type(cell), m, None)) for m in REQUIRED):
        return False
    return bool(getattr(cell, "dense_recurrence", True))


#: Backends on which :func:`scan_ahead` reads each step's inputs one step ahead. CPU: XLA fuses
#: the dynamic-slice (or gather) of a stacked input into the elementwise kernel that reads it,
#: and that kernel then runs several times slower (a GRU-512 step's gate math, B=32: ~20 us ->
#: ~140 us). GPU/TPU: not measured; a plain ``lax.scan`` there.
READ_AHEAD = {"cpu": True}


def reads_ahead(cell: nn.Module) -> bool:
    """Whether the engine's scans read ``cell``'s gate inputs one step early (``read_ahead``)."""
    return bool(getattr(cell, "read_ahead", True))


def take_rows(table, ids: jax.Array):
    """``table[ids]`` along axis 0, per leaf; ids outside ``[0, V)`` are clipped to the nearest
    row (the :class:`rnnlab.unroll.Embedded` contract). ``mode="clip"``, not jnp.take's NaN
    fill: the fill's select made the gate kernel XLA fused it into 100 us a step slower."""
    return jax.tree.map(lambda t: jnp.take(t, ids, axis=0, mode="clip"), table)


def scan_ahead(f, init, xs: dict, *, ahead=(), reverse=False, unroll=1, load=None):
    """``jax.lax.scan(f, init, xs)`` over a dict of streams, those named in ``ahead`` read one
    step early.

    Step ``t`` slices the ``ahead`` streams at ``t + 1`` (``t - 1`` in reverse) and carries the
    slices to the next step, so each is its own small copy kernel and the gate math in ``f``
    reads plain arrays (see :data:`READ_AHEAD`; on other backends this is ``lax.scan``).
    ``load(slices)`` (optional) turns a dict of slices into what ``f`` reads, e.g. gathers rows
    by token id. It sees the ``ahead`` streams one step early and the others in their step, so
    it must handle any subset of the streams. Same results as ``lax.scan``.
    """
    load = load or (lambda x: x)
    early = {k: v for k, v in xs.items() if k in ahead}
    T = jax.tree.leaves(xs)[0].shape[0]
    if not early or T < 2 or not READ_AHEAD.get(jax.default_backend(), False):
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


def scan(
    cell: nn.Module,
    params,
    carry,
    inputs: dict[str, Any],
    *,
    return_states: bool = False,
    remat: bool = False,
    unroll: int = 1,
    batch_major: bool = False,
):
    """The engine's time scan with the fused backward; same contract as its ``lax.scan``.

    Args:
      cell: an unbound cell for which :func:`supports` is True.
      params: the cell's variables ``{"params": ...}``.
      carry: initial carry, a pytree of ``[B, ...]``.
      inputs: time-major ``{"xp": [T, B, G], "valid": [T, B] bool (optional),
        "eps": carry-shaped pytree of [T, B, ...] (optional)}``; or ``"x": [T, B, D]`` in place
        of ``"xp"``: the input projection then runs inside the loop, one ``[B, D] x [D, G]``
        matmul per step. The training forward stacks each ``xp_t`` for the backward scan
        (with ``remat``, the backward scan recomputes it), and the projection's weight gradient
        is one matmul over all ``T*B`` rows after the backward scan. That spares the separate
        projection and bias passes over a ``[T, B, G]`` buffer whose slices are then read cold,
        step by step, when ``D << G``. Or ``"ids": [T, B]`` token ids with ``"table": [V, G]``,
        the projected embedding table (:class:`rnnlab.unroll.Embedded`): each step gathers
        ``xp_t = table[ids_t]`` (again in the backward scan), and the table's gradient is a
        scatter-add of the ``T*B`` rows of ``dxp`` into ``[V, G]``.
      return_states: also return the carry after every step.
      remat: keep only the carries for the backward pass (recompute ``hr_t`` there).
      unroll: forwarded to both scans.
      batch_major: return ``ys`` as ``[B, T, O]`` (the native kernels write that layout, so
        the engine skips a transpose).

    Returns:
      ``(final_carry, (ys [T, B, O] or [B, T, O], states or None))``.
    """
    if not supports(cell):
        raise ValueError(
            f"{type(cell).__module__}.Cell does not support the fused backward: it needs "
            f"methods {REQUIRED} (and dense_recurrence True); use backward='autodiff'"
        )
    w, b = cell.apply(params, method="recurrent_kernel")
    if takes_native(cell, w, b, carry, inputs, return_states=return_states, remat=remat):
        cT, ys = _native(cell, params, w, b, carry, inputs)  # ys [B, T, H]
        return cT, (ys if batch_major else jnp.swapaxes(ys, 0, 1), None)
    mode = next(k for k in ("ids", "x", "xp") if k in inputs)  # what the scan reads per step
    in_loop = mode == "x"  # project x_t inside the loop (see ``inputs``)
    xp = inputs[mode]  # [T, B] ids, [T, B, D] or [T, B, G]
    table = inputs.get("table")  # ids mode: the projected embedding table [V, G]
    valid, eps = inputs.get("valid"), inputs.get("eps")

    def xp_of(p, x):  # the projected input xp_t [.., G] from what a step reads
        return cell.apply(p, x, method="project") if in_loop else x

    def gather(tab):  # ids mode: a step's rows of the projected table (scan_ahead's load)
        return lambda inp: inp | {"xp": take_rows(tab, inp["xp"])} if "xp" in inp else inp

    # the streams the gate math reads (see scan_ahead), unless the cell says not to
    ahead = ("xp", "hr", "xp_t") if reads_ahead(cell) else ()

    def h_of(p, c):  # [..., H]: the state that multiplies W_h
        return cell.apply(p, c, method="recurrent_state")

    def local(p, c, x, hr, e, v):
        """One step after the recurrent matmul: gates, perturbation, masking."""
        new, y = cell.apply(p, c, x, hr, method="gates")
        if e is not None:  # as the engine's step: h_t + eps_t feeds y_t and h_{t+1}
            raw, new = new, jax.tree.map(jnp.add, new, e)
            y = cells.output_after_perturbation(cell, p, new, x, y, raw)
        if v is not None:
            keep = lambda n, o: jnp.where(v.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
            new = jax.tree.map(keep, new, c)
            y = keep(y, jnp.zeros_like(y))
        return new, y

    mm_dtype = cells.matmul_dtype(getattr(cell, "matmul_dtype", None))  # None: as computed

    def recurrent(h, w, b):  # hr = h @ W_h + b_h, h [..., H]
        hr = cells.recurrent_matmul(h, w, mm_dtype)
        return hr if b is None else hr + b.reshape((1,) * (hr.ndim - 1) + b.shape)

    def forward(p, w, b, tab, c0, xp, eps, valid, *, save: bool):
        """The scan; ``save``: also stack what the backward pass reads (states, hr, and the
        projected inputs when they are made in the loop; with ``remat`` only the states)."""

        leaf = []  # the index of y_t among the carry's leaves, when y_t is one (found by identity)

        def body(c, inp):
            hr = recurrent(h_of(p, c), w, b)  # [B, G]
            xp_t = xp_of(p, inp["xp"])  # [B, G]
            new, y = local(p, c, xp_t, hr, inp.get("eps"), inp.get("valid"))
            keep = save and not remat  # stack hr_t (and xp_t, if made here) for the backward
            if not (save or return_states):
                return new, (y, None, None, None)
            # y_t is usually a leaf of the carry (LSTM: h of (c, h)): stack it once, not twice
            leaf[:] = [i for i, a in enumerate(jax.tree.leaves(new)) if a is y][:1]
            kept = (hr, xp_t if in_loop else None) if keep else (None, None)
            return new, (None if leaf else y, new, *kept)

        step_in = {"xp": xp, "eps": eps, "valid": valid}
        step_in = {k: v for k, v in step_in.items() if v is not None}
        load = gather(tab) if mode == "ids" else None
        cT, (ys, states, hr, xps) = scan_ahead(
            body, c0, step_in, ahead=ahead, load=load, unroll=unroll
        )
        if leaf:
            ys = jax.tree.leaves(states)[leaf[0]]
        return cT, (ys, states, hr, xps)

    @jax.custom_vjp
    def run(p, w, b, tab, c0, xp, eps, valid):
        cT, (ys, states, _, _) = forward(p, w, b, tab, c0, xp, eps, valid, save=False)
        return cT, ys, states

    def run_fwd(p, w, b, tab, c0, xp, eps, valid):
        cT, (ys, states, hr, xps) = forward(p, w, b, tab, c0, xp, eps, valid, save=True)
        out = (cT, ys, states if return_states else None)
        return out, (p, w, b, tab, c0, xp, eps, valid, states, hr, xps)

    def run_bwd(res, cts):
        p, w, b, tab, c0, xp, eps, valid, states, hr, xps = res
        d_cT, d_ys, d_states = cts
        # carry *before* step t: [c0, c_0, ..., c_{T-2}]  (leaves [T, B, ...])
        prev = jax.tree.map(lambda a0, a: jnp.concatenate([a0[None], a[:-1]]), c0, states)
        h_prev = h_of(p, prev)  # [T, B, H]
        w_t = w.T if mm_dtype is None else w.T.astype(mm_dtype)  # [G, H], once, before the loop

        def body(dc, inp):
            if "d_state" in inp:  # cotangent of the returned state after this step
                dc = jax.tree.map(jnp.add, dc, inp["d_state"])
            hr_t = inp["hr"] if "hr" in inp else recurrent(inp["h_prev"], w, b)
            e_t, v_t = inp.get("eps"), inp.get("valid")
            f = lambda c, x, hr_, e: local(p, c, x, hr_, e, v_t)
            xp_t = inp["xp_t"] if "xp_t" in inp else xp_of(p, inp["xp"])  # saved or remade
            _, vjp = jax.vjp(f, inp["prev"], xp_t, hr_t, e_t)
            dc_prev, dxp_t, dhr_t, de_t = vjp((dc, inp["dy"]))
            dh = cells.recurrent_matmul(dhr_t, w_t, mm_dtype)  # [B, H] through hr_t = h W_h
            dh = dh.astype(inp["h_prev"].dtype)
            _, vjp_h = jax.vjp(lambda c: h_of(p, c), inp["prev"])
            (dc_h,) = vjp_h(dh)
            dc_prev = jax.tree.map(jnp.add, dc_prev, dc_h)
            # gates that read xp_t + hr_t (LSTM, Elman) give one cotangent for both: stack it once
            same[:] = [dxp_t is dhr_t]
            return dc_prev, (dxp_t, None if same[0] else dhr_t, de_t)

        step_in = {"prev": prev, "h_prev": h_prev, "dy": d_ys}
        if xps is None:  # the step's input, unless the forward stacked xp_t (then unused here)
            step_in["xp"] = xp
        optional = {"hr": hr, "xp_t": xps, "eps": eps, "valid": valid, "d_state": d_states}
        step_in.update({k: v for k, v in optional.items() if v is not None})
        same = []
        load = gather(tab) if mode == "ids" else None
        d_c0, (d_xp, d_hr, d_eps) = scan_ahead(
            body, d_cT, step_in, ahead=ahead, reverse=True, load=load, unroll=unroll
        )
        if same[0]:
            d_hr = d_xp
        # The weight gradients: one matmul over all T*B rows (the point of this module).
        T, B, G = d_hr.shape
        rows = lambda a: a.reshape(T * B, a.shape[-1])
        acc = jnp.promote_types(w.dtype, jnp.float32)  # bf16 weights: accumulate in f32
        d_w = jnp.dot(rows(h_prev).T, rows(d_hr), preferred_element_type=acc)
        d_b = None if b is None else jnp.sum(d_hr, axis=(0, 1)).astype(b.dtype)
        d_p, d_tab = None, None
        if in_loop:  # the projection's gradients, over all T*B rows at once
            _, vjp_p = jax.vjp(lambda p_, x_: xp_of(p_, rows(x_)), p, xp)  # [T*B, D] x [D, G]
            d_p, d_xp = vjp_p(rows(d_xp))
        if mode == "ids":  # the table's gradient: scatter-add each token's cotangent to its row
            scatter = lambda t, d: jnp.zeros_like(t).at[xp.reshape(T * B)].add(rows(d))
            d_tab, d_xp = jax.tree.map(scatter, tab, d_xp), None
        return d_p, d_w.astype(w.dtype), d_b, d_tab, d_c0, d_xp, d_eps, None

    run.defvjp(run_fwd, run_bwd)
    cT, ys, states = run(params, w, b, table, carry, xp, eps, valid)
    return cT, (jnp.swapaxes(ys, 0, 1) if batch_major else ys, states)


# ------------------------------------------- the native time loop (rnnlab.native, CPU)

#: Backends on which :func:`scan` runs a cell's time loop as the native kernel of
#: :mod:`rnnlab.native` when it applies (:func:`takes_native`); elsewhere, the XLA scan above.
NATIVE = {"cpu": True}
#: The kernel packs ``W_h`` once per call; below this many rows ``T*B`` (sampling: T = B = 1)
#: the packing outweighs the loop, and the XLA scan runs (LSTM-512 sampling, batch 1: 6,453
#: chars/s through the kernel against 19,903 without; ``python benchmarks/harness.py``).
NATIVE_MIN_ROWS = 64


def takes_native(cell, w, b, carry, inputs, *, return_states=False, remat=False) -> bool:
    """Whether :func:`scan` runs ``cell`` with a native kernel: a cell whose own class names one
    (``native`` in :data:`rnnlab.native.CELLS`) in float32 without ``matmul_dtype``, returned
    states or per-step remat, at least :data:`NATIVE_MIN_ROWS` rows
    ``T*B``, on a backend in :data:`NATIVE` where :func:`rnnlab.native.usable` holds.

    A subclass does not inherit the kernel: it may have changed the gate math the kernel
    hard-codes, so it runs the XLA scan unless it sets ``native`` itself.

    With more than one device (data parallelism over a mesh, :mod:`rnnlab.devices`) the XLA
    scan runs too: XLA's SPMD partitioner cannot split a custom call, so it would gather the
    whole batch onto every device and each would compute all of it."""
    if "native" not in vars(type(cell)) or jax.device_count() > 1:
        return False
    kind = cell.native
    if kind not in native.CELLS or not NATIVE.get(jax.default_backend(), False):
        return False
    if return_states or remat or getattr(cell, "matmul_dtype", None):
        return False
    mode = next(k for k in ("ids", "x", "xp") if k in inputs)
    T, B = jax.tree.leaves(inputs[mode])[0].shape[:2]
    if T * B < NATIVE_MIN_ROWS:
        return False
    streams = [inputs[k] for k in ("xp", "x", "table", "eps") if k in inputs]
    dtypes = [a.dtype for a in jax.tree.leaves((w, b, carry, streams))]
    return native.usable(w.shape[0], *dtypes)


def _native(cell, params, w, b, carry, inputs):
    """:func:`scan` by the kernels of :mod:`rnnlab.native`, returning ``(final carry, ys
    [B, T, H])``: the same custom VJP as the XLA scan, with the loop in C++. The forward also
    saves the gates' activations and ``h_{t-1}^T`` ``[H, T*B]``; the backward gives ``d_xp``
    and ``d_hr`` ``[T, B, G]`` (the cotangents of ``xp_t`` and ``hr_t``) and, for token
    inputs, the table's gradient; the weight gradient ``dW_h = h_{t-1}^T d_hr`` is one XLA
    matmul over all ``T*B`` rows.

    Masking (``valid``) is a prefix per sequence (``t < length``: the engine right-pads, also
    in reverse and in chunks), so the kernels run every step unmasked, which leaves the valid
    steps exact, and the mask is applied after: ``y_t = 0`` past the end, and the final carry
    read at each sequence's last valid step (the initial carry for an empty one)."""
    kind = cell.native
    mode = next(k for k in ("ids", "x", "xp") if k in inputs)
    stream, table, eps = inputs[mode], inputs.get("table"), inputs.get("eps")
    valid = inputs.get("valid")  # [T, B] bool, a prefix per sequence
    with_cs = kind == "lstm" and valid is not None  # the masked final c reads c_t for all t
    project = lambda p, x: cell.apply(p, x, method="project")
    H = w.shape[0]

    def kernel_inputs(p, tab, x):  # (xp or table, ids) as the kernel reads them
        if mode == "ids":
            return tab, x
        if mode == "x":  # one [T*B, D] x [D, G] matmul, not one per step
            T, B, D = x.shape
            return project(p, x.reshape(T * B, D)).reshape(T, B, -1), None
        return x, None

    def forward(p, w, b, tab, carry, x, e, save):  # -> (final carry, ys [B, T, H], residuals)
        if kind == "lstm":
            c0, h0 = carry
            ys, cs, acts, h_prev_t = native.lstm_forward(
                *kernel_inputs(p, tab, x), w, c0, h0, save=save, eps=e
            )
            return (cs[-1], ys[:, -1]), ys, (cs, acts, h_prev_t)
        if kind == "elman":  # the backward reads phi' off ys (or off h_raw, when perturbed)
            relu = cell.activation == "relu"
            ys, h_prev_t, h_raw = native.elman_forward(
                *kernel_inputs(p, tab, x), w, carry, save=save, eps=e, relu=relu
            )
            return ys[:, -1], ys, (ys, h_prev_t, None if e is None else h_raw)
        ys, acts, h_prev_t = native.gru_forward(
            *kernel_inputs(p, tab, x), w, b[2 * H :], carry, save=save, eps=e
        )
        return ys[:, -1], ys, (ys, acts, h_prev_t)

    @jax.custom_vjp
    def run(p, w, b, tab, carry, x, e):
        cT, ys, saved = forward(p, w, b, tab, carry, x, e, save=False)
        return cT, ys, saved[0] if with_cs else None

    def run_fwd(p, w, b, tab, carry, x, e):
        cT, ys, saved = forward(p, w, b, tab, carry, x, e, save=True)
        return (cT, ys, saved[0] if with_cs else None), (p, w, b, tab, carry, x, e, saved)

    def run_bwd(res, cts):
        p, w, b, tab, carry, x, e, saved = res
        d_cT, d_ys, d_cs = cts
        ids = x if mode == "ids" else None  # the kernel sums the table's gradient by id
        vocab = tab.shape[0] if mode == "ids" else 0
        if kind == "lstm":
            cs, acts, h_prev_t = saved
            eps_c = None if e is None else e[0]
            d_pre, d_c0, d_h0, d_tab, d_e = native.lstm_backward(
                w, acts, cs, carry[0], d_ys, *d_cT, ids=ids, vocab=vocab, eps_c=eps_c, d_cs=d_cs
            )
            d_carry, d_xp, d_hr = (d_c0, d_h0), d_pre, d_pre  # LSTM: xp_t + hr_t, one cotangent
        elif kind == "elman":
            ys, h_prev_t, h_raw = saved
            relu = cell.activation == "relu"
            d_pre, d_carry, d_tab, d_e = native.elman_backward(
                w, ys, d_ys, d_cT, ids=ids, vocab=vocab, h_raw=h_raw, relu=relu
            )
            d_xp = d_hr = d_pre
        else:
            ys, acts, h_prev_t = saved
            d_xp, d_hr, d_carry, d_tab, d_e = native.gru_backward(
                w, acts, ys, carry, d_ys, d_cT, ids=ids, vocab=vocab, perturbed=e is not None
            )
        d_e = None if e is None else d_e
        T, B, G = d_hr.shape
        rows = lambda a: a.reshape(T * B, a.shape[-1])
        d_w = jnp.dot(h_prev_t, rows(d_hr))  # [H, T*B] x [T*B, G]: one matmul, all rows
        d_b = None if b is None else jnp.sum(d_hr, axis=(0, 1))
        d_p, d_x = None, d_xp
        if mode == "x":  # the projection's gradients, over all T*B rows at once
            _, vjp_p = jax.vjp(lambda p_, x_: project(p_, rows(x_)), p, x)
            d_p, d_x = vjp_p(rows(d_xp))
        if mode == "ids":
            d_x = None
        else:
            d_tab = None
        return d_p, d_w, d_b, d_tab, d_carry, d_x, d_e

    run.defvjp(run_fwd, run_bwd)
    cT, ys, cs = run(params, w, b, table, carry, stream, eps)
    if valid is None:
        return cT, ys
    B, T = ys.shape[:2]
    lengths = jnp.sum(valid, axis=0)  # [B]
    last = jnp.clip(lengths - 1, 0, T - 1)
    ended = lambda final, first: jnp.where((lengths > 0)[:, None], final, first)
    h_last = ended(ys[jnp.arange(B), last], carry[1] if kind == "lstm" else carry)
    if kind == "lstm":
        cT = (ended(cs[last, jnp.arange(B)], carry[0]), h_last)
    else:
        cT = h_last
    return cT, jnp.where(jnp.swapaxes(valid, 0, 1)[..., None], ys, 0.0)
