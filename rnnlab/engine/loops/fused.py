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
inside the loop (the ``"x"`` feed), by one vjp of the projection over all ``[T*B, D]`` rows
here. With the ``"ids"`` feed each step gathers ``xp_t = table[ids_t]`` from the projected
embedding table (again in the backward scan), and the table's gradient is a scatter-add of the
``T*B`` rows of ``dxp`` into ``[V, G]``.

A cell opts in with three methods, the fused-backward contract (``docs/engine.md``; see
``rnnlab/cells/lstm.py`` or ``examples/peephole_lstm.py``), such that
``step(carry, xp_t) == gates(carry, xp_t, recurrent_state(carry) @ W_h + b_h)``:

* ``recurrent_kernel() -> (W_h [H, G], b_h [G] or None)`` -- the only trainable parameters the
  recurrence reads (``gates`` must read none);
* ``recurrent_state(carry) -> h [..., H]`` -- the part of the carry that multiplies ``W_h``;
* ``gates(carry, xp_t, hr_t) -> (carry, y_t)`` -- the elementwise rest of the step.

A cell may also define a ``dense_recurrence`` property that is False for configurations the
methods do not cover (GRU with ``convention="cho"``), and ``read_ahead = False`` when its gate
math gains nothing from the read-ahead scan (LSTM: XLA already gives its inputs their own
kernels, and the read-ahead adds a copy per step). The plan (:mod:`rnnlab.engine.plan`) sends a
layer here; the autodiff loop stays the reference the tests compare against.

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

import jax
import jax.numpy as jnp

from rnnlab import cells
from rnnlab.engine.inputs import take_rows
from rnnlab.engine.loops import common


def run(cell, params, carry, feed: common.Feed, plan):
    """``(final carry, ys [B, T, O], states [T, B, ...] or None)`` for any feed kind.

    ``plan.remat``: keep only the carries for the backward pass (recompute ``hr_t`` there);
    ``plan.read_ahead``: the gate math reads its streams one step early; ``plan.unroll``:
    forwarded to both scans.
    """
    w, b = cell.apply(params, method="recurrent_kernel")
    return_states, remat, unroll = plan.states, plan.remat is True, plan.unroll
    mode = feed.kind  # what the scan reads per step
    in_loop = mode == "x"  # project x_t inside the loop (see the module docstring)
    xp = feed.stream  # [T, B] ids, [T, B, D] or [T, B, G]
    table = feed.table  # ids mode: the projected embedding table [V, G]
    valid, eps = feed.valid, feed.eps

    def xp_of(p, x):  # the projected input xp_t [.., G] from what a step reads
        return cell.apply(p, x, method="project") if in_loop else x

    def gather(tab):  # ids mode: a step's rows of the projected table (scan_ahead's load)
        return lambda inp: inp | {"xp": take_rows(tab, inp["xp"])} if "xp" in inp else inp

    # the streams the gate math reads (see common.scan_ahead), where the plan says so
    ahead = ("xp", "hr", "xp_t") if plan.read_ahead else ()

    def h_of(p, c):  # [..., H]: the state that multiplies W_h
        return cell.apply(p, c, method="recurrent_state")

    def local(p, c, x, hr, e, v):
        """One step after the recurrent matmul: gates, perturbation, masking."""
        new, y = cell.apply(p, c, x, hr, method="gates")
        return common.finish_step(cell, p, c, new, y, x, e, v)

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
        cT, (ys, states, hr, xps) = common.scan_ahead(
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

        # The gates may read trainable parameters of their own (peepholes: element-wise weights):
        # those leaves of p are differentiated per step and summed in the backward scan.
        leaves, treedef = jax.tree.flatten(p)
        read = _read_by_gates(cell, leaves, treedef, c0, xp_of(p, xp[0]) if mode != "ids"
                              else take_rows(tab, xp[0]), h_prev[0], w)  # fmt: skip

        def with_read(sub):  # p with the gates' leaves taken from ``sub``
            full = list(leaves)
            for i, leaf in zip(read, sub):
                full[i] = leaf
            return jax.tree.unflatten(treedef, full)

        def body(state, inp):
            dc, d_read = state
            if "d_state" in inp:  # cotangent of the returned state after this step
                dc = jax.tree.map(jnp.add, dc, inp["d_state"])
            hr_t = inp["hr"] if "hr" in inp else recurrent(inp["h_prev"], w, b)
            e_t, v_t = inp.get("eps"), inp.get("valid")
            f = lambda sub, c, x, hr_, e: local(with_read(sub), c, x, hr_, e, v_t)
            xp_t = inp["xp_t"] if "xp_t" in inp else xp_of(p, inp["xp"])  # saved or remade
            sub = [leaves[i] for i in read]
            _, vjp = jax.vjp(f, sub, inp["prev"], xp_t, hr_t, e_t)
            d_sub, dc_prev, dxp_t, dhr_t, de_t = vjp((dc, inp["dy"]))
            d_read = jax.tree.map(jnp.add, d_read, d_sub)
            dh = cells.recurrent_matmul(dhr_t, w_t, mm_dtype)  # [B, H] through hr_t = h W_h
            dh = dh.astype(inp["h_prev"].dtype)
            _, vjp_h = jax.vjp(lambda c: h_of(p, c), inp["prev"])
            (dc_h,) = vjp_h(dh)
            dc_prev = jax.tree.map(jnp.add, dc_prev, dc_h)
            # gates that read xp_t + hr_t (LSTM, Elman) give one cotangent for both: stack it once
            same[:] = [dxp_t is dhr_t]
            return (dc_prev, d_read), (dxp_t, None if same[0] else dhr_t, de_t)

        step_in = {"prev": prev, "h_prev": h_prev, "dy": d_ys}
        if xps is None:  # the step's input, unless the forward stacked xp_t (then unused here)
            step_in["xp"] = xp
        optional = {"hr": hr, "xp_t": xps, "eps": eps, "valid": valid, "d_state": d_states}
        step_in.update({k: v for k, v in optional.items() if v is not None})
        same = []
        load = gather(tab) if mode == "ids" else None
        d_read0 = [jnp.zeros_like(leaves[i]) for i in read]
        (d_c0, d_read), (d_xp, d_hr, d_eps) = common.scan_ahead(
            body, (d_cT, d_read0), step_in, ahead=ahead, reverse=True, load=load, unroll=unroll
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
        if read:  # add the gates' own parameter gradients
            d_leaves = [jnp.zeros_like(a) for a in leaves] if d_p is None else jax.tree.leaves(d_p)
            for i, d in zip(read, d_read):
                d_leaves[i] = d_leaves[i] + d.astype(d_leaves[i].dtype)
            d_p = jax.tree.unflatten(treedef, d_leaves)
        return d_p, d_w.astype(w.dtype), d_b, d_tab, d_c0, d_xp, d_eps, None

    run.defvjp(run_fwd, run_bwd)
    cT, ys, states = run(params, w, b, table, carry, xp, eps, valid)
    return cT, common.time_major(ys), states


def _read_by_gates(cell, leaves, treedef, carry, xp_t, h, w) -> list[int]:
    """The indices of the parameter leaves ``cell.gates`` reads (from its jaxpr, abstractly):
    none for the built-in cells, the peephole weights for a peephole LSTM."""
    hr = jax.eval_shape(lambda h_, w_: h_ @ w_, h, w)
    spec = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)

    def gates(leaves_, c, x, hr_):
        return cell.apply(jax.tree.unflatten(treedef, leaves_), c, x, hr_, method="gates")

    args = jax.tree.map(spec, (list(leaves), carry, xp_t, hr))
    jaxpr = jax.make_jaxpr(gates)(*args).jaxpr
    used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    return [i for i, v in enumerate(jaxpr.invars[: len(leaves)]) if id(v) in used]
